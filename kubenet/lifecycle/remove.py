"""Removing VMs: `invoke reset` (one VM's disk, so that the next setup makes it afresh)
and `invoke destroy`: the whole cluster gone, as `vagrant destroy` and `multipass delete
--purge` do: every VM powered off, its tmux sessions and switch stopped, and state_dir
removed with every VM's disk, seed, keys and sockets, `known_hosts` and `ssh_config`.
The base image cache stays. Refused while state_dir holds anything kubenet did not
make: that is the user's, and destroy deletes only what is provably kubenet's. Refused
too while the cluster has snapshots, unless asked with `--snapshots`: they live inside
the disks, and a learner's saved tutorial stages are hours of work."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from ..machine.target import Target
from ..model.cluster import VM, Cluster
from ..model.paths import vm_paths
from ..plumbing import errors
from ..plumbing.fsutil import locked
from ..store.identity import forget_identity


def destroy_cluster(cluster: Cluster, target: Target, confirm: Callable[[str], bool], say: Callable[[str], None], snapshots: bool = False) -> bool:
    """True if state_dir was removed; False if there was none. `snapshots`: the cluster's
    snapshots may go with it."""
    from ..store.identity import orphans, recorded
    from ..run.shutdown import shut_down
    from ..snapshots.snaprecord import recorded_names
    from ..store.statedir import foreign_entries

    state = cluster.state_dir
    if not os.path.lexists(state):
        return False
    foreign = foreign_entries(state)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise errors.KubenetError(
            f"state_dir {state} holds what kubenet did not make: {shown}; nothing was destroyed",
            "move those files elsewhere first: destroy deletes only kubenet's own",
        )
    saved = recorded_names(cluster)
    if saved and not snapshots:
        raise errors.KubenetError(
            f"cluster {cluster.name} has {len(saved)} snapshot{'s' if len(saved) > 1 else ''} ({', '.join(saved)}), which live in its disks; nothing was destroyed",
            "`invoke destroy --snapshots` to delete them with the cluster, or `invoke snapshot rm NAME` each first",
        )
    vms = [*cluster.local_vms, *orphans(cluster, recorded(cluster))]
    losing = f" and its snapshots {', '.join(saved)}" if saved else ""
    if not confirm(f"destroy cluster {cluster.name}: power off its VMs and delete {state}, every VM's disk and data{losing} with it?"):
        raise errors.KubenetError("destroy cancelled; nothing was deleted")
    shut_down(cluster, vms, target, timeout=60.0, cleanup=True, say=say)  # raises if a VM would not stop
    if foreign_entries(state):
        raise errors.KubenetError(f"state_dir {state} gained files kubenet did not make meanwhile; nothing was deleted")
    shutil.rmtree(state, onerror=_gone_is_fine)
    return True


def _gone_is_fine(function, path, exc_info) -> None:
    """A stopping switch removes its own socket directory as rmtree walks it."""
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def reset_vm(cluster: Cluster, vm: VM, confirm: Callable[[str], bool], snapshots: list[str] = ()) -> list[Path]:
    """Delete the VM's disk and UEFI variables, so the next setup makes a fresh VM; refused
    while it runs, and only once `confirm` says yes (asked naming the `snapshots` the
    disk holds a part of, which can no longer be restored).

    The host key and seed stay: the VM keeps its identity and its known_hosts line.
    """
    from ..run.vmstate import vm_state

    state = vm_state(cluster, vm)
    if state.running and state.pid is not None:
        raise errors.KubenetError(f"{vm.name} is running", f"stop it first: `invoke stop --id {vm.id}`")
    if state.running:
        raise errors.KubenetError(
            f"{vm.name} is running in a qemu that kubenet did not start (its disk is open), such as `invoke vm`'s",
            "quit that qemu first: Ctrl-A X in its console, or power the VM off from inside",
        )
    paths = vm_paths(cluster, vm)
    stores = (paths.efivars, paths.raw_efivars)
    if not paths.disk.exists() and not any(store.exists() for store in stores):
        forget_identity(cluster, vm)  # nothing to lose: an orphan without a disk is no longer listed
        return []
    losing = f", and its part of snapshots {', '.join(snapshots)}, which then can no longer be restored" if snapshots else ""
    if not confirm(f"delete {vm.name}'s disk {paths.disk} and UEFI variables, losing all its data{losing}?"):
        raise errors.KubenetError("reset cancelled; nothing was deleted")
    from ..store.provision import forget_booted
    from ..store.statedir import cluster_lock

    deleted = []
    with cluster_lock(cluster), locked(paths.lock):
        if vm_state(cluster, vm).running:  # started while we asked
            raise errors.KubenetError(f"{vm.name} started meanwhile; nothing was deleted", f"stop it first: `invoke stop --id {vm.id}`")
        for path in (paths.disk, *stores):
            if path.exists():
                path.unlink()
                deleted.append(path)
        forget_identity(cluster, vm)
        forget_booted(cluster, vm)
    return deleted


def reset(cluster: Cluster, vm: VM, confirm: Callable[[str], bool], say: Callable[[str], None]) -> None:
    """`reset` of one VM, here or on the host that runs it; says what went, and the snapshots lost."""
    if vm.host != cluster.here:
        from ..hosts.multihost import reset_there

        reset_there(cluster, vm, confirm, say)
        return
    from ..snapshots.snaprecord import holding

    snapshots = holding(cluster, vm.name)
    deleted = reset_vm(cluster, vm, confirm, snapshots)
    for path in deleted:
        say(f"kubenet: deleted {path}")
    if deleted and snapshots:
        say(f"kubenet: snapshots {', '.join(snapshots)} can no longer be restored; `invoke snapshot rm NAME` forgets one")
    if not deleted:
        say(f"kubenet: {vm.name} had no disk; nothing deleted")


def destroy(cluster: Cluster, confirm: Callable[[str], bool], say: Callable[[str], None], snapshots: bool) -> None:
    """`destroy`: the other hosts' parts first (only then this host's, whose ssh_config reaches them)."""
    from ..hosts.multihost import destroy_there
    from ..model.choose import spread
    from ..machine.target import resolve_target

    if spread(cluster) and destroy_there(cluster, confirm, say, snapshots):
        confirm = lambda question: True  # noqa: E731 (asked once, for every host)
    if destroy_cluster(cluster, resolve_target(cluster), confirm, say, snapshots):
        say(f"kubenet: destroyed cluster {cluster.name}: removed {cluster.state_dir}")
    else:
        say(f"kubenet: {cluster.state_dir} does not exist; nothing to destroy")
