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

from .cluster import Cluster, NetworkMode
from .hostpiece import Piece
from .process import run, run_attached


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
    key = "pod-routes"

    def describe(self) -> str:
        routes = pod_routes(self.cluster)
        return f"routes to the pods' networks, {routes[0][0]} via {routes[0][1]} to {routes[-1][0]} via {routes[-1][1]}" if routes else "no pod routes"

    def present(self) -> bool:
        return not missing_routes(self.cluster, linux_routes())

    def add(self) -> None:
        for net, via in pod_routes(self.cluster):
            run(["ip", "route", "replace", net, "via", via])

    def remove(self) -> None:
        for net, via in pod_routes(self.cluster):
            run(["ip", "route", "del", net, "via", via], check=False)
