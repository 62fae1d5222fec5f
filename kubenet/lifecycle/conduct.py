"""The cluster's life, conducted across its hosts: up and start, stop and down, restart.

This host is one of the hosts: the chosen VMs are split by the host that runs them, and
one job per host runs at once (`multihost.here_and_there`), this host's VMs started or
stopped here in the calling thread (so a Ctrl-C is heard as on one host), the others'
by kubenet there, over its one SSH connection. Around them: what a snapshot command
cut short is settled before anything starts, the cables that join the hosts' switches,
and the tunnel through the first VM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..hosts import multihost
from ..model.choose import by_host, spread
from ..model.cluster import VM, Cluster, ReadyWhen

Say = Callable[[str], None]
Pick = Callable[[Cluster], list[VM]]


@dataclass(frozen=True)
class Waiting:
    """How `up`, `start` and `restart` wait: `seconds` for every VM to be ready (None: no
    wait), for what (`until`; None: the cluster's `ready:`), on which accelerator (None: the
    usual choice); as the options that say the same to kubenet on another host."""

    seconds: float | None
    until: ReadyWhen | None = None
    accel: str | None = None

    def options(self, timeout: float) -> list[str]:
        return [
            "--timeout", f"{timeout:g}", *(["--no-wait"] if self.seconds is None else []),
            *(["--ready", str(self.until)] if self.until else []), *(["--accel", self.accel] if self.accel else []),
        ]  # fmt: skip


def start(cluster: Cluster, pick: Pick, waiting: Waiting, timeout: float, say: Say) -> None:
    """Launch the chosen VMs wherever they run, then (unless not waiting) wait until they are ready."""
    from ..machine.target import resolve_target
    from ..run.launch import up_and_wait
    from ..snapshots.snapshot import recover

    target = resolve_target(cluster, accel_option=waiting.accel)
    recover(cluster, target, say)  # a save cut short undone, a restore cut short finished, before any VM starts
    picked = pick(cluster)
    here, elsewhere = by_host(cluster, picked)
    if spread(cluster):
        multihost.start_cables(cluster, say)

    def job(host: str | None) -> object:
        if host is None:
            return up_and_wait(cluster, here, target, waiting.seconds, say, waiting.until) if here else None
        return multihost.up_hosts(cluster, {host: elsewhere[host]}, waiting.options(timeout), waiting.seconds, say)

    multihost.here_and_there([None, *elsewhere], job, "up", say)
    if cluster.forward:
        start_tunnel(cluster, picked, waiting.seconds is not None, say)


def start_tunnel(cluster: Cluster, started: list[VM], waited: bool, say: Say) -> None:
    """The tunnel, once its VM is ready; said when it cannot start yet."""
    from ..run import tunnel

    if waited and tunnel.via(cluster) in started:
        tunnel.start(cluster, say)
    elif not tunnel.running(cluster):
        say(f"kubenet: tunnel through {tunnel.via(cluster).name}: not started (`invoke tunnel` starts it once it is ready)")


def stop(cluster: Cluster, pick: Pick, seconds: float, say: Say, cleanup: bool = False, whole: bool = False) -> None:
    """Power the chosen VMs off within `seconds`, wherever they run; `cleanup`: as `down`
    (the sessions and switch go with the last VM); `whole`: the cables and every host's VMs too."""
    from ..machine.target import resolve_target
    from ..run.shutdown import shut_down

    here, elsewhere = by_host(cluster, pick(cluster))
    whole = whole and spread(cluster)
    if whole:
        multihost.stop_cables(cluster, say)  # first: a cable would plug into a host's switch again
        elsewhere = {host.name: [vm for vm in cluster.vms if vm.host == host.name] for host in cluster.placed_hosts()}
    what = "down" if cleanup else "stop"

    def job(host: str | None) -> object:
        if host is None:
            return shut_down(cluster, here, resolve_target(cluster), seconds, cleanup=cleanup, say=say) if here else None
        return multihost.down_hosts(cluster, {host: elsewhere[host]}, whole, seconds, say, what)

    try:
        multihost.here_and_there([None, *elsewhere], job, what, say)
    finally:
        if whole:
            multihost.end_connections(cluster)


def down_picks(ids: list[str]) -> Pick:
    """What `down` stops: the VMs asked for, else every VM and the orphans (VMs no longer in cluster.yaml)."""
    from ..model.choose import pick_vms
    from ..store.identity import orphans, recorded

    def pick(cluster: Cluster) -> list[VM]:
        return pick_vms(cluster, ids) + ([] if ids else orphans(cluster, recorded(cluster)))

    return pick


def seed_changed(cluster: Cluster, say: Say) -> list[VM]:
    """The running VMs whose seed changed since they booted: what `restart` restarts when not told which."""
    from ..run.vmstate import is_running
    from ..store.provision import will_reprovision

    stale = [vm for vm in cluster.local_vms if is_running(cluster, vm) and will_reprovision(cluster, vm)]
    if not stale:
        say("kubenet: no running VM's seed changed since it booted; nothing to restart (--id, --name or --role pick VMs)")
    return stale


def restart(cluster: Cluster, picked: list[VM], stop_seconds: float, waiting: Waiting, timeout: float, say: Say) -> None:
    """Power the VMs off, then start them and wait until they are ready: a seed changed since
    their last boot is applied now (cloud-init provisions them again)."""
    if picked:
        stop(cluster, lambda _: picked, stop_seconds, say)
        start(cluster, lambda _: picked, waiting, timeout, say)
