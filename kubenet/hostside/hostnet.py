"""The host side of bridge mode on Linux, made from cluster.yaml (`invoke hostnet`): what the
tutorial's setuphost.sh did by hand.

The pieces: the bridge with the host's address, routes to the pods' networks
(`pod_routes: true`), IPv4 forwarding, NAT for the subnet out of every other
interface (nftables, else iptables), `allow <bridge>` in qemu's bridge.conf,
dnsmasq on the bridge address (DHCP by MAC, every cluster name, the rest
forwarded to the host's own resolvers), an NFS export (`nfs:`, in nfsexport),
and a block of names in /etc/hosts between markers. Each is checked first and added only if
missing; what was added (and the forwarding setting found) is recorded, and
`--remove` takes out exactly that. The record, dnsmasq's configuration and its
pid file live in /var/lib/kubenet (or $KUBENET_HOSTNET_DIR).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from ..machine.probe import bridge_helpers, bridge_link, has_host_address, host_address_with_prefix, setuid_root
from ..model.cluster import Cluster, NetworkMode
from ..model.network import hosts_lines
from ..plumbing import errors
from ..plumbing.fsutil import write_atomic
from ..plumbing.process import kill, own_pid, run
from .hostpiece import Piece, Places, with_block, without_block, write_in_place
from .bootunit import BootUnit
from .nfsexport import NfsExports, NfsServer
from .podroutes import PodRoutes

# ---- what the pieces contain: pure ------------------------------------------------


def with_hosts_block(text: str, cluster: Cluster) -> str:
    """`text` (an /etc/hosts) with the cluster's block, in place of an older one."""
    return with_block(text, cluster, hosts_lines(cluster, NetworkMode.BRIDGE))


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


# ---- the pieces of the bridge side: one change to the host each (see hostpiece) ----


class Bridge(Piece):
    key = "bridge"

    def describe(self) -> str:
        return f"bridge {self.network.bridge}"

    def present(self) -> bool:
        return bridge_link(self.network.bridge) is not None

    def add(self) -> None:
        run(["ip", "link", "add", self.network.bridge, "type", "bridge"])

    def remove(self) -> None:
        run(["ip", "link", "delete", self.network.bridge], check=False)


class Address(Piece):
    key = "address"

    @property
    def address(self) -> str:
        return host_address_with_prefix(self.network)

    def describe(self) -> str:
        return f"address {self.address} on {self.network.bridge}"

    def present(self) -> bool:
        return has_host_address(self.network)

    def add(self) -> None:
        run(["ip", "addr", "add", self.address, "dev", self.network.bridge])

    def remove(self) -> None:
        run(["ip", "addr", "del", self.address, "dev", self.network.bridge], check=False)


class LinkUp(Piece):
    key = "up"

    def describe(self) -> str:
        return f"{self.network.bridge} up"

    def present(self) -> bool:
        return "UP" in (bridge_link(self.network.bridge) or {}).get("flags", [])

    def add(self) -> None:
        run(["ip", "link", "set", self.network.bridge, "up"])

    def remove(self) -> None:
        pass  # the bridge goes, or stays as the user had it


class Forwarding(Piece):
    key = "forwarding"

    def describe(self) -> str:
        return "IPv4 forwarding"

    def present(self) -> bool:
        return self.where.forwarding.read_text().strip() == "1"

    def add(self) -> None:
        self.record.setdefault("forwarding_before", self.where.forwarding.read_text().strip())
        self.where.forwarding.write_text("1\n")

    def remove(self) -> None:
        self.where.forwarding.write_text(self.record.get("forwarding_before", "0") + "\n")


class Nat(Piece):
    key = "nat"
    nft = shutil.which("nft") is not None

    @property
    def ruleset(self) -> Path:
        return self.where.state / f"nat-{self.cluster.name}.nft"

    def describe(self) -> str:
        return f"NAT for {self.network.subnet} out of every interface but {self.network.bridge} ({'nftables' if self.nft else 'iptables'})"

    def present(self) -> bool:
        if self.nft:
            return run(["nft", "list", "table", "ip", nat_table(self.cluster)], check=False).code == 0
        return run(["iptables", "-t", "nat", "-C", *iptables_rule(self.cluster)], check=False).code == 0

    def add(self) -> None:
        if self.nft:
            write_atomic(self.ruleset, nat_ruleset(self.cluster).encode(), 0o644)
            run(["nft", "-f", str(self.ruleset)])
        else:
            run(["iptables", "-t", "nat", "-A", *iptables_rule(self.cluster)])

    def remove(self) -> None:
        if self.nft:
            run(["nft", "delete", "table", "ip", nat_table(self.cluster)], check=False)
            self.ruleset.unlink(missing_ok=True)
        else:
            run(["iptables", "-t", "nat", "-D", *iptables_rule(self.cluster)], check=False)


class BridgeConf(Piece):
    key = "bridge.conf"

    @property
    def allow(self) -> str:
        return f"allow {self.network.bridge}"

    def describe(self) -> str:
        return f"`{self.allow}` in {self.where.bridge_conf}"

    def present(self) -> bool:
        conf = self.where.bridge_conf
        return conf.is_file() and self.allow in conf.read_text().splitlines()

    def add(self) -> None:
        conf = self.where.bridge_conf
        # what did not exist is noted, so that removing takes it away again rather than leave it empty
        self.record.setdefault("created", []).extend(str(path) for path in (conf.parent, conf) if not path.exists())
        conf.parent.mkdir(parents=True, exist_ok=True)
        text = conf.read_text() if conf.is_file() else ""
        write_in_place(conf, text + ("" if not text or text.endswith("\n") else "\n") + self.allow + "\n")

    def remove(self) -> None:
        conf, created = self.where.bridge_conf, self.record.get("created", [])
        if conf.is_file():
            lines = conf.read_text().splitlines(keepends=True)
            write_in_place(conf, "".join(line for line in lines if line.rstrip("\n") != self.allow))
        if str(conf) in created and conf.is_file() and conf.stat().st_size == 0:
            conf.unlink()
        if str(conf.parent) in created and conf.parent.is_dir() and not any(conf.parent.iterdir()):
            conf.parent.rmdir()


class BridgeHelper(Piece):
    """QEMU's own small privileged helper makes the VMs' taps on the allowed bridge: with it
    setuid, qemu runs as the user, and every file and socket of a VM stays the user's."""

    key = "bridge-helper"

    def describe(self) -> str:
        return "qemu's bridge helper setuid root (qemu itself then runs as you)"

    def helper(self) -> Path | None:
        return next(iter(bridge_helpers(self.where.root)), None)

    def present(self) -> bool:
        path = self.helper()
        return path is not None and setuid_root(path)

    def add(self) -> None:
        self._set(True)

    def remove(self) -> None:
        self._set(False)

    def _set(self, on: bool) -> None:
        path = self.helper()
        if path is None:
            raise errors.HostError("qemu's bridge helper is not installed", "install qemu (`apt install qemu-system`)")
        mode = path.stat().st_mode & 0o7777
        path.chmod(mode | 0o4000 if on else mode & ~0o4000)


class Dns(Piece):
    key = "dns"

    def file(self, suffix: str) -> Path:
        return self.where.state / f"dnsmasq-{self.cluster.name}.{suffix}"

    @property
    def names_text(self) -> str:
        return "\n".join(hosts_lines(self.cluster, NetworkMode.BRIDGE)) + "\n"

    @property
    def conf_text(self) -> str:
        return dnsmasq_conf(self.cluster, self.file("hosts"), self.file("leases"))

    def describe(self) -> str:
        return f"dnsmasq on {self.network.host_address}: DHCP by MAC, the cluster's names, the rest forwarded"

    def pid(self) -> int | None:
        return own_pid(self.file("pid"), f"--conf-file={self.file('conf')}")

    def present(self) -> bool:
        conf, names = self.file("conf"), self.file("hosts")
        return (
            self.pid() is not None
            and conf.is_file() and conf.read_text() == self.conf_text
            and names.is_file() and names.read_text() == self.names_text
        )  # fmt: skip

    def add(self) -> None:
        self.remove()
        write_atomic(self.file("hosts"), self.names_text.encode(), 0o644)
        write_atomic(self.file("conf"), self.conf_text.encode(), 0o644)
        run(["dnsmasq", f"--conf-file={self.file('conf')}", f"--pid-file={self.file('pid')}"],
            missing_hint="install dnsmasq (`apt install dnsmasq-base`)")  # fmt: skip

    def remove(self) -> None:
        running = self.pid()
        if running is not None:
            kill(running, 15)
        for suffix in ("conf", "hosts", "pid", "leases"):
            self.file(suffix).unlink(missing_ok=True)


class HostsBlock(Piece):
    key = "hosts"

    def describe(self) -> str:
        return f"the cluster's names in {self.where.hosts}"

    def present(self) -> bool:
        text = self.where.hosts.read_text()
        return with_hosts_block(text, self.cluster) == text

    def add(self) -> None:
        write_in_place(self.where.hosts, with_hosts_block(self.where.hosts.read_text(), self.cluster))

    def remove(self) -> None:
        write_in_place(self.where.hosts, without_block(self.where.hosts.read_text(), self.cluster))


# In the order they are added (and removed in reverse).
PIECES = (Bridge, Address, LinkUp, PodRoutes, Forwarding, Nat, BridgeConf, BridgeHelper, Dns, NfsServer, HostsBlock, NfsExports, BootUnit)


def pieces(cluster: Cluster, where: Places, record: dict) -> list[Piece]:
    return [piece(cluster, where, record) for piece in PIECES]


# ---- the command -------------------------------------------------------------------


# macOS's vmnet-shared brings NAT, DHCP and DNS of its own: there, only the names and the NFS export.
KEYS = {
    "linux": ("bridge", "address", "up", "pod-routes", "forwarding", "nat", "bridge.conf", "bridge-helper", "dns", "nfs", "hosts"),
    "darwin": ("hosts", "nfs-exports"),
}
# Pieces that only a key of cluster.yaml asks for.
OPTIONAL = {"pod-routes": lambda cluster: cluster.pod_routes, "nfs": lambda cluster: cluster.nfs is not None,
            "nfs-exports": lambda cluster: cluster.nfs is not None}  # fmt: skip
PERSIST = "boot-unit"  # Linux, asked with --persist: the unit that makes it all again at boot


def wanted_keys(cluster: Cluster, system: str) -> tuple[str, ...]:
    return tuple(key for key in keys_for(system) if key not in OPTIONAL or OPTIONAL[key](cluster))


def keys_for(system: str) -> tuple[str, ...]:
    if system not in KEYS:
        raise errors.HostError(f"hostnet knows Linux and macOS, not {system}")
    return KEYS[system]


def record_path(cluster: Cluster, where: Places) -> Path:
    return where.state / f"hostnet-{cluster.name}.json"


def set_up(cluster: Cluster, where: Places, dry_run: bool, say: Callable[[str], None], persist: bool = False) -> None:
    """Add what is missing of the host side; `persist` (Linux): and the unit that adds it again at boot."""
    from ..model.network import check_bridge_subnet
    from ..machine.probe import probe_host

    check_root()
    host = probe_host(firmware_needed=False)
    wanted = wanted_keys(cluster, host.system) + ((PERSIST,) if persist and host.system == "linux" else ())
    if not dry_run and "bridge" in wanted:
        check_bridge_subnet(cluster.network, host)
    where.state.mkdir(parents=True, exist_ok=True)
    path = record_path(cluster, where)
    record = json.loads(path.read_text()) if path.is_file() else {"added": []}
    missing = [piece for piece in pieces(cluster, where, record) if piece.key in wanted and not piece.present()]
    for piece in missing:
        piece.check()  # all refusals first: nothing is made when one piece would take what is not kubenet's
    if not missing:
        say("kubenet: hostnet: nothing to change; the host side is in place")
        return
    for piece in missing:
        if dry_run:
            say(f"kubenet: hostnet: would add {piece.describe()}")
            continue
        piece.add()
        if piece.key not in record["added"]:
            record["added"].append(piece.key)
        write_atomic(path, json.dumps(record).encode(), 0o644)
        say(f"kubenet: hostnet: added {piece.describe()}")


def take_down(cluster: Cluster, where: Places, dry_run: bool, say: Callable[[str], None]) -> None:
    check_root()
    path = record_path(cluster, where)
    if not path.is_file():
        say("kubenet: hostnet: nothing to remove; kubenet added nothing for this cluster")
        return
    record = json.loads(path.read_text())
    by_key = {piece.key: piece for piece in pieces(cluster, where, record)}
    for key in reversed(record["added"]):
        say(f"kubenet: hostnet: {'would remove' if dry_run else 'removed'} {by_key[key].describe()}")
        if not dry_run:
            by_key[key].remove()
    if not dry_run:
        path.unlink()


def check_root() -> None:
    if os.geteuid() != 0:
        raise errors.HostError("hostnet changes the host's network and needs root", "run `make hostnet`, which asks sudo once")
