"""What `invoke ls` shows: a row per VM (is it running, under which pid, does it answer),
and the notes below the table.

Listing needs the network mode (for SSH endpoints), not the accelerator, so no
qemu is asked; tmux only when the session's server exists.
"""

from __future__ import annotations

from .cluster import Cluster, NetworkMode


def listing(cluster: Cluster) -> list[dict]:
    """The rows of `invoke ls`."""
    from .layout import qemu_session_name
    from .network import needs_root, resolve_mode
    from .probe import probe_host
    from .tmux import Tmux

    host = probe_host(firmware_needed=False)
    mode = resolve_mode(cluster.network, host)
    # root's session (a network that needs root) is not read: listing never asks for root
    exits = {} if needs_root(mode, host) else Tmux.from_environment().last_words(qemu_session_name(cluster))
    return vm_rows(cluster, mode, exits)


def listing_notes(cluster: Cluster, rows: list[dict]) -> list[str]:
    """What `invoke ls` adds on stderr below its table."""
    from .layout import qemu_session_name, ssh_session_name

    notes = [f"kubenet: {row['name']}: its qemu exited: {row['exited']}" for row in rows if row["exited"]]
    running = sum(row["state"] == "running" for row in rows)
    sessions = f"{qemu_session_name(cluster)} (VMs), {ssh_session_name(cluster)} (ssh-all)"
    return [*notes, f"kubenet: {running} of {len(rows)} VMs running; tmux sessions: {sessions}"]


def vm_rows(cluster: Cluster, mode: NetworkMode, exits: dict[str, str] | None = None) -> list[dict]:
    """A row per VM; `exits` holds the last words of qemus whose pane has died."""
    from .network import ssh_endpoint
    from .vmstate import vm_state

    states = {vm.name: vm_state(cluster, vm) for vm in cluster.vms}
    return [
        {
            "id": vm.id,
            "name": vm.name,
            "role": vm.role,
            "vcpus": vm.vcpus,
            "memory": vm.memory,
            "mac": vm.mac,
            "ip": str(vm.ip),
            "ssh": str(ssh_endpoint(cluster.network, mode, vm)),
            "state": "running" if states[vm.name].running else "stopped",
            "pid": states[vm.name].pid,
            "ready": states[vm.name].ready,
            "exited": None if states[vm.name].running else (exits or {}).get(vm.name),
        }
        for vm in cluster.vms
    ]
