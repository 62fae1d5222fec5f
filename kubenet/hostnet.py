"""The host side of bridge mode on Linux, made from cluster.yaml (`invoke hostnet`): what the
tutorial's setuphost.sh did by hand.

The pieces: the bridge with the host's address, IPv4 forwarding, NAT for the
subnet out of every other interface (nftables, else iptables), `allow <bridge>`
in qemu's bridge.conf, dnsmasq on the bridge address (DHCP by MAC, every
cluster name, the rest forwarded to the host's own resolvers), and a block of
names in /etc/hosts between markers. Each is checked first and added only if
missing; what was added (and the forwarding setting found) is recorded, and
`--remove` takes out exactly that. The record, dnsmasq's configuration and its
pid file live in /var/lib/kubenet (or $KUBENET_HOSTNET_DIR).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from . import errors
from .cluster import Cluster, NetworkMode
from .fsutil import write_atomic
from .probe import bridge_helpers, setuid_root
from .process import is_own_process, kill, run

STATE_ENV = "KUBENET_HOSTNET_DIR"


@dataclass(frozen=True)
class Places:
    root: Path = Path("/")  # where qemu's bridge helper is looked for
    hosts: Path = Path("/etc/hosts")
    bridge_conf: Path = Path("/etc/qemu/bridge.conf")
    forwarding: Path = Path("/proc/sys/net/ipv4/ip_forward")
    state: Path = Path("/var/lib/kubenet")


def places(environ: Mapping[str, str] = os.environ) -> Places:
    return Places(state=Path(environ[STATE_ENV])) if environ.get(STATE_ENV) else Places()


# ---- what the pieces contain: pure ------------------------------------------------


def hosts_lines(cluster: Cluster) -> list[str]:
    from .seed import hosts_entries

    return hosts_entries(cluster, NetworkMode.BRIDGE).splitlines()[1:]  # without its comment line


def markers(cluster: Cluster) -> tuple[str, str]:
    return f"# BEGIN kubenet {cluster.name}", f"# END kubenet {cluster.name}"


def with_hosts_block(text: str, cluster: Cluster) -> str:
    """`text` (an /etc/hosts) with the cluster's block, in place of an older one."""
    begin, end = markers(cluster)
    block = "\n".join([begin, *hosts_lines(cluster), end]) + "\n"
    rest = without_hosts_block(text, cluster)
    return rest + ("" if not rest or rest.endswith("\n") else "\n") + block


def without_hosts_block(text: str, cluster: Cluster) -> str:
    begin, end = markers(cluster)
    lines, kept, inside = text.splitlines(keepends=True), [], False
    for line in lines:
        if line.rstrip("\n") == begin:
            inside = True
        elif line.rstrip("\n") == end and inside:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def dnsmasq_conf(cluster: Cluster, names_file: Path, leases: Path) -> str:
    network = cluster.network
    first = network.subnet.network_address + 2
    lines = [
        f"# Written by kubenet for {cluster.source}; `invoke hostnet --remove` takes it out.",
        f"interface={network.bridge}",
        "bind-interfaces",  # the bridge only: never the host's other interfaces,
        "except-interface=lo",  # nor its loopback, where the host may run a resolver of its own
        f"listen-address={network.host_address}",
        f"domain={network.domain}",
        f"local=/{network.domain}/",
        "expand-hosts",
        "no-hosts",  # the cluster's names only, from addn-hosts
        f"addn-hosts={names_file}",
        f"dhcp-range={first},{network.dhcp_end},12h",
        *(f"dhcp-host={vm.mac},{vm.ip}" for vm in cluster.vms),
        "dhcp-authoritative",
        f"dhcp-leasefile={leases}",
    ]
    return "\n".join(lines) + "\n"


def nat_table(cluster: Cluster) -> str:
    return f"kubenet-{cluster.name}"


def nat_ruleset(cluster: Cluster) -> str:
    network = cluster.network
    return (
        f"table ip {nat_table(cluster)} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    ip saddr {network.subnet} oifname != "{network.bridge}" masquerade\n'
        "  }\n"
        "}\n"
    )


def iptables_rule(cluster: Cluster) -> list[str]:
    network = cluster.network
    return [
        "POSTROUTING", "-s", str(network.subnet), "!", "-o", network.bridge, "-j", "MASQUERADE",
        "-m", "comment", "--comment", nat_table(cluster),
    ]  # fmt: skip


# ---- the pieces as they are on this host, and how to change them ------------------------------------


@dataclass(frozen=True)
class Piece:
    key: str
    description: str
    present: Callable[[], bool]
    add: Callable[[], None]
    remove: Callable[[], None]


def pieces(cluster: Cluster, where: Places, record: dict) -> list[Piece]:
    network = cluster.network
    bridge, address = network.bridge, f"{network.host_address}/{network.subnet.prefixlen}"
    conf, names, pid, leases = (where.state / f"dnsmasq-{cluster.name}.{suffix}" for suffix in ("conf", "hosts", "pid", "leases"))
    names_text = "\n".join(hosts_lines(cluster)) + "\n"
    nft = shutil.which("nft") is not None

    def forwarding_on() -> bool:
        return where.forwarding.read_text().strip() == "1"

    def set_forwarding(value: str) -> None:
        where.forwarding.write_text(value + "\n")

    def nat_present() -> bool:
        if nft:
            return run(["nft", "list", "table", "ip", nat_table(cluster)], check=False).code == 0
        return run(["iptables", "-t", "nat", "-C", *iptables_rule(cluster)], check=False).code == 0

    def add_nat() -> None:
        if nft:
            ruleset = where.state / f"nat-{cluster.name}.nft"
            write_atomic(ruleset, nat_ruleset(cluster).encode(), 0o644)
            run(["nft", "-f", str(ruleset)])
        else:
            run(["iptables", "-t", "nat", "-A", *iptables_rule(cluster)])

    def remove_nat() -> None:
        if nft:
            run(["nft", "delete", "table", "ip", nat_table(cluster)], check=False)
            (where.state / f"nat-{cluster.name}.nft").unlink(missing_ok=True)
        else:
            run(["iptables", "-t", "nat", "-D", *iptables_rule(cluster)], check=False)

    allow = f"allow {bridge}"

    def bridge_allowed() -> bool:
        return where.bridge_conf.is_file() and allow in where.bridge_conf.read_text().splitlines()

    def allow_bridge() -> None:
        # what did not exist is noted, so that --remove takes it away again rather than leave it empty
        record.setdefault("created", []).extend(str(path) for path in (where.bridge_conf.parent, where.bridge_conf) if not path.exists())
        where.bridge_conf.parent.mkdir(parents=True, exist_ok=True)
        text = where.bridge_conf.read_text() if where.bridge_conf.is_file() else ""
        write_in_place(where.bridge_conf, text + ("" if not text or text.endswith("\n") else "\n") + allow + "\n")

    def disallow_bridge() -> None:
        if where.bridge_conf.is_file():
            lines = where.bridge_conf.read_text().splitlines(keepends=True)
            write_in_place(where.bridge_conf, "".join(line for line in lines if line.rstrip("\n") != allow))
        created = record.get("created", [])
        if str(where.bridge_conf) in created and where.bridge_conf.is_file() and where.bridge_conf.stat().st_size == 0:
            where.bridge_conf.unlink()
        if str(where.bridge_conf.parent) in created and where.bridge_conf.parent.is_dir() and not any(where.bridge_conf.parent.iterdir()):
            where.bridge_conf.parent.rmdir()

    def dns_pid() -> int | None:
        try:
            value = int(pid.read_text().strip())
        except (OSError, ValueError):
            return None
        return value if is_own_process(value, f"--conf-file={conf}", lambda: False) else None

    def dns_running() -> bool:
        expected = dnsmasq_conf(cluster, names, leases)
        return dns_pid() is not None and conf.is_file() and conf.read_text() == expected and names.is_file() and names.read_text() == names_text

    def start_dns() -> None:
        stop_dns()
        write_atomic(names, names_text.encode(), 0o644)
        write_atomic(conf, dnsmasq_conf(cluster, names, leases).encode(), 0o644)
        run(["dnsmasq", f"--conf-file={conf}", f"--pid-file={pid}"], missing_hint="install dnsmasq (`apt install dnsmasq-base`)")

    def stop_dns() -> None:
        running = dns_pid()
        if running is not None:
            kill(running, 15)
        for path in (conf, names, pid, leases):
            path.unlink(missing_ok=True)

    def helper() -> Path | None:
        return next(iter(bridge_helpers(where.root)), None)

    def helper_setuid() -> bool:
        path = helper()
        return path is not None and setuid_root(path)

    def set_helper_setuid(on: bool) -> None:
        path = helper()
        if path is None:
            raise errors.HostError("qemu's bridge helper is not installed", "install qemu (`apt install qemu-system`)")
        mode = path.stat().st_mode & 0o7777
        path.chmod(mode | 0o4000 if on else mode & ~0o4000)

    def hosts_present() -> bool:
        text = where.hosts.read_text()
        return with_hosts_block(text, cluster) == text

    return [
        Piece("bridge", f"bridge {bridge}", lambda: bridge_link(bridge) is not None,
              lambda: run(["ip", "link", "add", bridge, "type", "bridge"]), lambda: run(["ip", "link", "delete", bridge], check=False)),
        Piece("address", f"address {address} on {bridge}", lambda: address in ipv4_addresses(bridge_link(bridge)),
              lambda: run(["ip", "addr", "add", address, "dev", bridge]), lambda: run(["ip", "addr", "del", address, "dev", bridge], check=False)),
        Piece("up", f"{bridge} up", lambda: "UP" in (bridge_link(bridge) or {}).get("flags", []),
              lambda: run(["ip", "link", "set", bridge, "up"]), lambda: None),
        Piece("forwarding", "IPv4 forwarding", forwarding_on,
              lambda: set_forwarding("1"), lambda: set_forwarding(record.get("forwarding_before", "0"))),
        Piece("nat", f"NAT for {network.subnet} out of every interface but {bridge} ({'nftables' if nft else 'iptables'})", nat_present, add_nat, remove_nat),
        Piece("bridge.conf", f"`{allow}` in {where.bridge_conf}", bridge_allowed, allow_bridge, disallow_bridge),
        # QEMU's own small privileged helper makes the VMs' taps on the allowed bridge: with it
        # setuid, qemu runs as the user, and every file and socket of a VM stays the user's.
        Piece("bridge-helper", "qemu's bridge helper setuid root (qemu itself then runs as you)", helper_setuid,
              lambda: set_helper_setuid(True), lambda: set_helper_setuid(False)),
        Piece("dns", f"dnsmasq on {network.host_address}: DHCP by MAC, the cluster's names, the rest forwarded", dns_running, start_dns, stop_dns),
        Piece("hosts", f"the cluster's names in {where.hosts}", hosts_present,
              lambda: write_in_place(where.hosts, with_hosts_block(where.hosts.read_text(), cluster)),
              lambda: write_in_place(where.hosts, without_hosts_block(where.hosts.read_text(), cluster))),
    ]  # fmt: skip


def write_in_place(path: Path, text: str) -> None:
    """Rewrite a system file keeping its inode (it may be bind-mounted, like /etc/hosts in a container)."""
    with open(path, "r+" if path.exists() else "w") as stream:
        stream.write(text)
        stream.truncate()


def bridge_link(bridge: str) -> dict | None:
    """What `ip -j addr` says of the bridge; None when there is no such interface."""
    done = run(["ip", "-j", "addr", "show", "dev", bridge], check=False)
    return json.loads(done.stdout)[0] if done.code == 0 and done.stdout.strip() else None


def ipv4_addresses(link: dict | None) -> list[str]:
    """An interface's IPv4 addresses as address/prefix."""
    return [f"{a.get('local')}/{a.get('prefixlen')}" for a in (link or {}).get("addr_info", []) if a.get("family", "inet") == "inet"]


def host_side_gaps(cluster: Cluster, where: Places = Places()) -> list[str]:
    """What bridge mode needs of the host and does not find, as far as a user can see it
    (NAT needs root to inspect). Made by `invoke hostnet` or by hand, either will do."""
    network = cluster.network
    address = f"{network.host_address}/{network.subnet.prefixlen}"
    gaps = [] if address in ipv4_addresses(bridge_link(network.bridge)) else [f"address {address} on {network.bridge}"]
    try:
        if where.forwarding.read_text().strip() != "1":
            gaps.append("IPv4 forwarding")
    except OSError:
        pass
    if not gaps and not _answers_dns(str(network.host_address)):
        gaps.append(f"a DNS server on {network.host_address} (the VMs' only nameserver)")
    return gaps


def _answers_dns(address: str) -> bool:
    try:
        with socket.create_connection((address, 53), timeout=0.3):
            return True
    except OSError:
        return False


# ---- the command -------------------------------------------------------------------


# macOS's vmnet-shared brings NAT, DHCP and DNS of its own: there, only the names.
KEYS = {"linux": ("bridge", "address", "up", "forwarding", "nat", "bridge.conf", "bridge-helper", "dns", "hosts"), "darwin": ("hosts",)}


def keys_for(system: str) -> tuple[str, ...]:
    if system not in KEYS:
        raise errors.HostError(f"hostnet knows Linux and macOS, not {system}")
    return KEYS[system]


def record_path(cluster: Cluster, where: Places) -> Path:
    return where.state / f"hostnet-{cluster.name}.json"


def set_up(cluster: Cluster, where: Places, dry_run: bool, say: Callable[[str], None]) -> None:
    from .network import check_bridge_subnet
    from .probe import probe_host

    check_root()
    host = probe_host(firmware_needed=False)
    wanted = keys_for(host.system)
    if not dry_run and "bridge" in wanted:
        check_bridge_subnet(cluster.network, host)
    where.state.mkdir(parents=True, exist_ok=True)
    path = record_path(cluster, where)
    record = json.loads(path.read_text()) if path.is_file() else {"added": []}
    missing = [piece for piece in pieces(cluster, where, record) if piece.key in wanted and not piece.present()]
    if not missing:
        say("kubenet: hostnet: nothing to change; the host side is in place")
        return
    for piece in missing:
        if dry_run:
            say(f"kubenet: hostnet: would add {piece.description}")
            continue
        if piece.key == "forwarding" and "forwarding_before" not in record:
            record["forwarding_before"] = where.forwarding.read_text().strip()
        piece.add()
        if piece.key not in record["added"]:
            record["added"].append(piece.key)
        write_atomic(path, json.dumps(record).encode(), 0o644)
        say(f"kubenet: hostnet: added {piece.description}")


def take_down(cluster: Cluster, where: Places, dry_run: bool, say: Callable[[str], None]) -> None:
    check_root()
    path = record_path(cluster, where)
    if not path.is_file():
        say("kubenet: hostnet: nothing to remove; kubenet added nothing for this cluster")
        return
    record = json.loads(path.read_text())
    by_key = {piece.key: piece for piece in pieces(cluster, where, record)}
    for key in reversed(record["added"]):
        say(f"kubenet: hostnet: {'would remove' if dry_run else 'removed'} {by_key[key].description}")
        if not dry_run:
            by_key[key].remove()
    if not dry_run:
        path.unlink()


def check_root() -> None:
    if os.geteuid() != 0:
        raise errors.HostError("hostnet changes the host's network and needs root", "run `make hostnet`, which asks sudo once")
