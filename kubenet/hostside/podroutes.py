"""The host's routes to the pods' networks of the tutorial's ch. 6 (`pod_routes: true`):
10.N.0.0/16 via VM N, for every VM but the first (the gateway runs no pods).

On Linux `hostnet` adds them beside the bridge. On macOS vmnet-shared makes its bridge
when the first VM starts and takes it, with every route through it, when the last one
stops; so there `up` adds the missing routes again once the VMs run, with route(8) as
root, as the tutorial's setuproutes.sh did.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from typing import Callable

from ..model.cluster import Cluster, NetworkMode
from ..plumbing import errors
from ..plumbing.process import run, run_attached
from .hostpiece import Piece


def pod_routes(cluster: Cluster) -> list[tuple[str, str]]:
    """(network, via) for every VM but the first."""
    return [(f"10.{vm.id}.0.0/16", str(vm.ip)) for vm in cluster.vms if vm.id > 0]


def darwin_destination(text: str) -> str | None:
    """A destination as macOS's `netstat -rn` abbreviates it ("10.1/16") in full ("10.1.0.0/16")."""
    address, _, prefix = text.partition("/")
    octets = address.split(".")
    if not prefix or not 1 <= len(octets) <= 4 or not all(octet.isdigit() for octet in octets):
        return None
    try:
        return str(IPv4Network(f"{'.'.join(octets + ['0'] * (4 - len(octets)))}/{prefix}"))
    except ValueError:
        return None


def darwin_routes(netstat: str) -> set[tuple[str, str]]:
    """(network, gateway) of each route in `netstat -rn -f inet`'s table."""
    routes = set()
    for line in netstat.splitlines():
        words = line.split()
        destination = darwin_destination(words[0]) if len(words) >= 2 else None
        if destination is not None:
            routes.add((destination, words[1]))
    return routes


def present_routes(system: str) -> set[tuple[str, str]]:
    """The routes this host has now: Linux's main table, or macOS's `netstat -rn`."""
    return linux_routes() if system == "linux" else darwin_routes(run(["netstat", "-rn", "-f", "inet"]).stdout)


def linux_routes() -> set[tuple[str, str]]:
    """(network, gateway) of each route in the main table (`ip -j route`, readable by anyone)."""
    shown = json.loads(run(["ip", "-j", "route", "show"]).stdout or "[]")
    return {(route.get("dst"), route.get("gateway")) for route in shown}


def others_routes(cluster: Cluster, present: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Routes to a pod network that lead elsewhere than kubenet's would: someone else's, never
    to be replaced or removed."""
    wanted = dict(pod_routes(cluster))
    return sorted((network, via) for network, via in present if network in wanted and via != wanted[network])


def missing_routes(cluster: Cluster, present: set[tuple[str, str]]) -> list[tuple[str, str]]:
    return [route for route in pod_routes(cluster) if route not in present]


def note(cluster: Cluster, system: str, mode: NetworkMode) -> str | None:
    """What `ls` says of the pod routes, when cluster.yaml asks for them."""
    if not cluster.pod_routes:
        return None
    if mode not in (NetworkMode.BRIDGE, NetworkMode.VMNET_SHARED):
        return f"kubenet: pod routes: the host is not on the cluster's segment in {mode} mode, so no route leads there"
    wanted = pod_routes(cluster)
    missing = missing_routes(cluster, present_routes(system))
    if not missing:
        return f"kubenet: pod routes: all {len(wanted)} in place"
    return f"kubenet: pod routes: {len(wanted) - len(missing)} of {len(wanted)} in place ({'`make hostnet`' if system == 'linux' else '`make up`'} adds them)"


def darwin_route_argv(network: str, via: str) -> list[str]:
    return ["sudo", "--", "/sbin/route", "-n", "add", "-net", network, via]


def keep_darwin_routes(cluster: Cluster, say: Callable[[str], None]) -> None:
    """Add the pod routes macOS dropped with its last VM (sudo asks here, in the foreground)."""
    missing = missing_routes(cluster, present_routes("darwin"))
    failed = [network for network, via in missing if run_attached(darwin_route_argv(network, via)) != 0]
    if missing:
        added = len(missing) - len(failed)
        say(f"kubenet: pod routes: added {added} of {len(missing)}" + (f"; not added: {' '.join(failed)}" if failed else ""))


class PodRoutes(Piece):
    """The routes to the pods' networks. A route to one of them that kubenet did not add (the
    user's, another tool's) is never replaced: hostnet refuses before it makes anything. What
    it adds it notes in its record, and `--remove` takes out exactly those."""

    key = "pod-routes"

    def describe(self) -> str:
        routes = pod_routes(self.cluster)
        return f"routes to the pods' networks, {routes[0][0]} via {routes[0][1]} to {routes[-1][0]} via {routes[-1][1]}" if routes else "no pod routes"

    def present(self) -> bool:
        return not missing_routes(self.cluster, linux_routes())

    def check(self) -> None:
        others = others_routes(self.cluster, linux_routes())
        if others:
            network, via = others[0]
            raise errors.HostError(
                f"this host already routes {network} via {via}, and not for kubenet: the pod routes would replace it",
                f"remove it yourself (`ip route del {network} via {via}`) if it is not needed, or leave pod_routes: out of {self.cluster.source}",
            )

    def add(self) -> None:
        added = self.record.setdefault("pod_routes", [])
        for network, via in missing_routes(self.cluster, linux_routes()):
            run(["ip", "route", "add", network, "via", via])
            added.append([network, via])

    def remove(self) -> None:
        present = linux_routes()
        for network, via in self.record.get("pod_routes", []):
            if (network, via) in present:  # still kubenet's: one changed since is someone else's
                run(["ip", "route", "del", network, "via", via], check=False)
