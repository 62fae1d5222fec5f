"""The host's memory a VM costs: what its qemu holds now (`invoke ls`), and what it is
likely to hold (the warning before a launch).

A VM's qemu holds the guest memory the guest has touched and, under TCG, the
translation cache (qemu.TCG_TB_SIZE_MIB, touched in full). The balloon's free page
reporting gives back what the guest freed, so a guest's own use is what stays.
"""

from __future__ import annotations

import platform

from ..model.cluster import VM, Accel, Cluster, memory_bytes

MIB = 1 << 20


def translation_cache(cluster: Cluster, accel: Accel) -> int:
    """Bytes of TCG translation cache per VM; none under a hardware accelerator."""
    from .qemu import TCG_TB_SIZE_MIB

    return (cluster.tcg_tb_size or TCG_TB_SIZE_MIB) * MIB if accel == Accel.TCG else 0


def likely_held(cluster: Cluster, vms: list[VM] | tuple[VM, ...], accel: Accel) -> int:
    """The most the VMs' qemus are likely to hold together: each guest's memory, all of it
    touched in time, and its translation cache."""
    return sum(memory_bytes(vm.memory) + translation_cache(cluster, accel) for vm in vms)


def memory_text(size: int) -> str:
    """Bytes as qemu's -m writes sizes: 412M, 1.5G."""
    return f"{size / (1 << 30):.1f}G" if size >= 1 << 30 else f"{round(size / MIB)}M"


def held_note(rows: list[dict]) -> str | None:
    """`invoke ls`'s line on what the running VMs hold of this machine, beside what they were given."""
    held = [row for row in rows if row.get("rss") is not None]
    if not held:
        return None
    configured = sum(memory_bytes(row["memory"]) for row in held)
    return f"kubenet: the running VMs' qemus hold {memory_text(sum(row['rss'] for row in held))} of this machine's memory ({memory_text(configured)} given to their guests)"


def parse_status_rss(status: str) -> int | None:
    """Bytes of resident memory from the text of /proc/<pid>/status."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            return int(fields[1]) * 1024 if len(fields) >= 2 and fields[1].isdigit() else None
    return None


def resident_bytes(pid: int) -> int | None:
    """What the process holds of the host's memory now; None if it cannot be read (gone, or
    another user's on a host that hides it)."""
    if platform.system() == "Darwin":
        from ..plumbing.errors import KubenetError
        from ..plumbing.process import run

        try:
            done = run(["ps", "-o", "rss=", "-p", str(pid)], check=False, timeout=5)
        except KubenetError:
            return None
        text = done.stdout.strip()
        return int(text) * 1024 if done.code == 0 and text.isdigit() else None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            return parse_status_rss(status.read())
    except OSError:
        return None
