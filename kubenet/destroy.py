"""`invoke destroy`: the whole cluster gone, as `vagrant destroy` and `multipass delete
--purge` do: every VM powered off, its tmux sessions and switch stopped, and state_dir
removed with every VM's disk, seed, keys and sockets, `known_hosts` and `ssh_config`.
The base image cache stays. Refused while state_dir holds anything kubenet did not
make: that is the user's, and destroy deletes only what is provably kubenet's. Refused
too while the cluster has snapshots, unless asked with `--snapshots`: they live inside
the disks, and a learner's saved tutorial stages are hours of work."""

from __future__ import annotations

import os
import shutil
from typing import Callable

from . import errors
from .cluster import Cluster
from .target import Target


def destroy_cluster(cluster: Cluster, target: Target, confirm: Callable[[str], bool], say: Callable[[str], None], snapshots: bool = False) -> bool:
    """True if state_dir was removed; False if there was none. `snapshots`: the cluster's
    snapshots may go with it."""
    from .identity import orphans, recorded
    from .shutdown import shut_down
    from .snaprecord import recorded_names
    from .statedir import foreign_entries

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
