"""`doctor`'s checks of the host: its accelerator really runs a guest (a qemu started for a
few seconds, not only /dev/kvm opening), the firmware, qemu, free memory and disk against
what the cluster asks, the cluster's subnet against the host's own networks (a home LAN,
the ranges macOS keeps), and the network mode's pieces: bridge mode's bridge, address,
forwarding, NAT, DNS, names, pod routes and NFS, as `make hostnet` makes them; user
mode's switch, each running VM's cable to it, and the tunnel."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from ..machine.target import Target
from ..model.cluster import Cluster, ImageKind, NetworkMode
from .report import Check, failed, not_applicable, ok

HOST = "host"
PROBE_SECONDS = 3.0  # how long the accelerator's probe guest may take to show it runs
MIN_QEMU = (6, 0)  # snapshot-save and the rest of the QMP jobs kubenet uses
DISK_PER_VM = 2 << 30  # what a VM's disk grows to in the first chapters, about
HOSTNET = "`make hostnet` (it asks sudo once)"


def accelerator(target: Target) -> Check:
    """Whether the accelerator runs a guest here: a guest of a few MiB started for a few
    seconds, which must print something (its firmware) without qemu dying."""
    name = f"accelerator ({target.accel})"
    if target.accel == "tcg":
        return ok(HOST, name, "software emulation: every machine runs it (slowly)")
    if not target.host.qemu_found:
        return not_applicable(HOST, name, f"{target.host.qemu} not found")
    arch = target.host.arch
    argv = [target.host.qemu, "-machine", f"{arch.machine_type()},accel={target.accel}", "-m", "64", "-nographic", "-nodefaults",
            "-no-user-config", "-serial", "stdio", "-monitor", "none", "-no-reboot"]  # fmt: skip
    if target.host.firmware and arch.value == "aarch64":
        argv += ["-bios", str(target.host.firmware.code)]
    console, complaints, alive = probe_guest(argv)
    if not alive:
        from ..run.launch import accelerator_failure

        words = complaints.strip() or console.strip() or "it ended without a word"
        fix = accelerator_failure(words, target.accel) or "see what qemu said; `accel: tcg` in cluster.yaml runs without it"
        return failed(HOST, name, f"qemu could not run a guest: {' | '.join(words.splitlines()[-2:])}", fix)
    if not console.strip() and arch.value == "x86_64":
        return failed(HOST, name, f"a guest under {target.accel} showed nothing in {PROBE_SECONDS:g} s: it does not run (KVM inside a VM without nested virtualisation does this)",
                      "set `accel: tcg` in cluster.yaml, or run with --accel tcg")  # fmt: skip
    return ok(HOST, name, "a guest runs under it")


def probe_guest(argv: list[str]) -> tuple[str, str, bool]:
    """What the guest printed on its console within PROBE_SECONDS, what qemu said on stderr,
    and whether qemu still ran then. Only the console ends the wait early: qemu's first
    complaint may come a moment before it aborts, and must not pass for a guest running."""
    try:
        guest = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as error:
        return "", f"{argv[0]}: {error.strerror}", False
    for stream in (guest.stdout, guest.stderr):
        os.set_blocking(stream.fileno(), False)
    console, complaints, deadline = b"", b"", time.monotonic() + PROBE_SECONDS
    try:
        while time.monotonic() < deadline and guest.poll() is None and not console.strip():
            console += guest.stdout.read() or b""
            complaints += guest.stderr.read() or b""
            time.sleep(0.05)
        alive = guest.poll() is None
        console += guest.stdout.read() or b""  # what came while it ended
        complaints += guest.stderr.read() or b""
    finally:
        guest.kill()
        guest.wait()
        guest.stdout.close()
        guest.stderr.close()
    return console.decode(errors="replace"), complaints.decode(errors="replace"), alive


def qemu(target: Target) -> Check:
    host = target.host
    if not host.qemu_found:
        return failed(HOST, "qemu", f"{host.qemu} not found", "`make deps` installs it (apt or Homebrew)")
    from ..machine.probe import qemu_version

    version = qemu_version(host.qemu)
    if version is not None and version < MIN_QEMU:
        return failed(HOST, "qemu", f"qemu {version[0]}.{version[1]} is older than {MIN_QEMU[0]}.{MIN_QEMU[1]}, which snapshots and readiness need", "update qemu")
    return ok(HOST, "qemu", f"{host.qemu}" + (f" {version[0]}.{version[1]}" if version else ""))


def firmware(cluster: Cluster, target: Target) -> Check:
    if cluster.image.kind != ImageKind.CLOUD:
        return not_applicable(HOST, "UEFI firmware", "image.kind: kernel boots without it")
    if target.host.firmware is None:
        return failed(HOST, "UEFI firmware", target.host.firmware_error or "none found", "`make deps` installs it (ovmf, qemu-efi-aarch64 or Homebrew's qemu)")
    return ok(HOST, "UEFI firmware", str(target.host.firmware.code))


def memory(cluster: Cluster, target: Target) -> Check:
    """The memory the stopped VMs would take, against what the host has free now."""
    from ..run.hostmemory import likely_held, memory_text
    from ..run.vmstate import is_running

    available = available_memory()
    if available is None:
        return not_applicable(HOST, "memory", "this system does not say how much is free")
    stopped = [vm for vm in cluster.local_vms if not is_running(cluster, vm)]
    wanted = likely_held(cluster, stopped, target.accel)
    if wanted > available:
        return failed(HOST, "memory", f"the stopped VMs would take about {memory_text(wanted)}; {memory_text(available)} is free",
                      "give the roles less memory in cluster.yaml (examples/cluster-8g.yaml fits 8 GiB), or stop other programs")  # fmt: skip
    return ok(HOST, "memory", f"{memory_text(available)} free" + (f"; the stopped VMs take about {memory_text(wanted)}" if stopped else ""))


def available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    return None


def disk(cluster: Cluster) -> Check:
    from ..run.hostmemory import memory_text

    from ..plumbing.fsutil import free_bytes

    place = cluster.state_dir
    while not place.exists() and place != place.parent:  # not made yet: where it will be
        place = place.parent
    free = free_bytes(place)
    wanted = DISK_PER_VM * len(cluster.local_vms)
    if free < wanted:
        return failed(HOST, "disk", f"{memory_text(free)} free where state_dir is ({place}); the VMs' disks grow to about {memory_text(wanted)}",
                      "free some space, or put state_dir on a larger file system (state_dir: in cluster.yaml)")  # fmt: skip
    return ok(HOST, "disk", f"{memory_text(free)} free where state_dir is")


def subnet(cluster: Cluster, target: Target) -> Check:
    """The cluster's subnet against the host's own networks (and, on macOS, the ranges it keeps)."""
    from ..model.network import colliding_routes

    name = f"subnet {cluster.network.subnet}"
    move = "move the cluster to a subnet of its own in cluster.yaml (network.subnet, host_address, api_address, dhcp_end), e.g. 192.168.100.0/24"
    if target.mode == NetworkMode.USER:
        return not_applicable(HOST, name, "user mode: the subnet lives on the VMs' switch alone")
    if target.host.system == "darwin":
        from ..run.launch import reserved_range

        clash = reserved_range(cluster, target)
        return failed(HOST, name, f"it overlaps {clash}", move) if clash else ok(HOST, name, "none of macOS's own ranges")
    clashes = colliding_routes(cluster.network, target.host)
    if clashes:
        return failed(HOST, name, f"it overlaps what this host already reaches: {', '.join(clashes)}", move)
    return ok(HOST, name, "no other network of this host overlaps it")


# ---- the network mode's pieces --------------------------------------------------------


def bridge_mode(cluster: Cluster, target: Target) -> list[Check]:
    """Linux, bridge mode: each piece `make hostnet` makes, looked at as the VMs use it."""
    from ..machine.probe import answers_dns, bridge_link, forwarding_on, has_host_address

    network = cluster.network
    link = bridge_link(network.bridge)
    checks = [
        ok(HOST, f"bridge {network.bridge}", "up") if link and "UP" in link.get("flags", [])
        else failed(HOST, f"bridge {network.bridge}", "missing" if link is None else "down", HOSTNET),
        ok(HOST, "host address", f"{network.host_address} on {network.bridge}") if has_host_address(network)
        else failed(HOST, "host address", f"{network.host_address} is not on {network.bridge}", HOSTNET),
        ok(HOST, "IPv4 forwarding", "on") if forwarding_on() is not False else failed(HOST, "IPv4 forwarding", "off: the VMs reach nothing beyond the host", HOSTNET),
        nat(cluster),
        ok(HOST, "DNS and DHCP", f"a server answers on {network.host_address}") if answers_dns(str(network.host_address))
        else failed(HOST, "DNS and DHCP", f"nothing answers DNS on {network.host_address} (dnsmasq stopped?): the VMs resolve no names", HOSTNET),
        hosts_block(cluster),
    ]  # fmt: skip
    if cluster.pod_routes:
        checks.append(pod_routes(cluster))
    if cluster.nfs is not None:
        checks.append(nfs(cluster))
    return checks


def nat(cluster: Cluster) -> Check:
    if os.geteuid() != 0:
        return not_applicable(HOST, "NAT", "only root may read the firewall: `sudo .venv/bin/invoke doctor` checks it")
    from ..hostside.hostnet import pieces
    from ..hostside.hostpiece import places

    piece = next(piece for piece in pieces(cluster, places(), {"added": []}) if piece.key == "nat")
    return ok(HOST, "NAT", piece.describe()) if piece.present() else failed(HOST, "NAT", f"no rule: {piece.describe()}", HOSTNET)


def hosts_block(cluster: Cluster) -> Check:
    from ..hostside.hostnet import with_hosts_block
    from ..hostside.hostpiece import places

    path = places().hosts
    try:
        text = path.read_text()
    except OSError as error:
        return not_applicable(HOST, "names in /etc/hosts", f"cannot read {path}: {error.strerror}")
    if with_hosts_block(text, cluster) == text:
        return ok(HOST, "names in /etc/hosts", f"every VM, vmhost and kubernetes, in {path}")
    return failed(HOST, "names in /etc/hosts", f"{path} lacks the cluster's names, or has old ones", HOSTNET)


def pod_routes(cluster: Cluster) -> Check:
    from ..hostside.podroutes import linux_routes, missing_routes, others_routes

    present = linux_routes()
    others = others_routes(cluster, present)
    if others:
        return failed(HOST, "pod routes", f"{others[0][0]} leads via {others[0][1]}, not to its VM", f"remove that route (`sudo ip route del {others[0][0]}`), then {HOSTNET}")
    missing = missing_routes(cluster, present)
    if missing:
        return failed(HOST, "pod routes", f"{len(missing)} missing, first {missing[0][0]} via {missing[0][1]}", HOSTNET)
    return ok(HOST, "pod routes", "every worker's pod network routed to it")


def nfs(cluster: Cluster) -> Check:
    address = str(cluster.network.host_address)
    try:
        with socket.create_connection((address, 2049), timeout=1.0):
            return ok(HOST, "NFS export", f"served on {address}")
    except OSError:
        return failed(HOST, "NFS export", f"nothing serves NFS on {address}", HOSTNET)


def user_mode(cluster: Cluster) -> list[Check]:
    """The VDE switch, and each running VM's cable to it."""
    from ..run.vde import connected_pids, plug_state, running_pid
    from ..run.vmstate import qemu_pid

    pid = running_pid(cluster)
    running = {vm.name: qemu_pid(cluster, vm) for vm in cluster.local_vms}
    if pid is None:
        if not any(running.values()):
            return [not_applicable(HOST, "VDE switch", "no VM runs: `make up` starts it")]
        return [failed(HOST, "VDE switch", "not running: the VMs reach no other VM", "`make up` starts it again; the VMs started before it are cut off: `invoke restart`")]
    checks = [ok(HOST, "VDE switch", f"running, pid {pid}")]
    plugged = connected_pids(cluster)
    for name, vm_pid in running.items():
        if vm_pid is None:
            continue
        state = plug_state(cluster, plugged, vm_pid)
        checks.append(ok(HOST, f"{name}'s cable", "connected") if state != "cut off"
                      else failed(HOST, f"{name}'s cable", "cut off: the switch restarted after the VM started", f"`invoke restart --name {name}`"))  # fmt: skip
    return checks


def tunnel(cluster: Cluster) -> list[Check]:
    if not cluster.forward:
        return []
    from ..run import tunnel as tunnels

    if tunnels.running(cluster):
        return [ok(HOST, "tunnel", tunnels.shown(cluster))]
    return [failed(HOST, "tunnel", f"not running: {tunnels.shown(cluster)}", "`invoke tunnel`")]


def outside_names(name: str) -> bool:
    """Whether this host resolves `name`, outside the cluster (within a few seconds)."""
    import threading

    answer: list[bool] = []

    def ask() -> None:
        try:
            socket.getaddrinfo(name, 443)
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(3.0)
    return bool(answer and answer[0])


def host_checks(cluster: Cluster, target: Target) -> list[Check]:
    checks = [accelerator(target), qemu(target), firmware(cluster, target), memory(cluster, target), disk(cluster), subnet(cluster, target)]
    if target.mode == NetworkMode.BRIDGE and target.host.system == "linux":
        checks += bridge_mode(cluster, target)
    if target.mode == NetworkMode.USER:
        checks += user_mode(cluster)
    return checks + tunnel(cluster)
