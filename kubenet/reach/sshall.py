"""The `<cluster>-ssh` tmux session (`invoke ssh-all`): a window per role and `ssh-nodes`,
each pane an SSH connection through the cluster's ssh_config."""

from __future__ import annotations

import os
from typing import Callable

from ..model.cluster import Cluster
from ..model.paths import ssh_config_path
from ..plumbing.process import replace_process
from ..prepare.sshkeys import existing_config
from ..run.layout import check_ours, ssh_session
from ..run.tmux import TMUX_HINT, Tmux, missing_pane_groups, session_groups
from ..store.statedir import cluster_lock


def open_ssh_session(cluster: Cluster, attach: bool, say: Callable[[str], None]) -> str:
    """Open `<cluster>-ssh`, or add to it (only ever our own) the panes of VMs it lacks, then
    attach to it or switch to it.

    Returns the session's name when not attaching.
    """
    tmux = Tmux.from_environment()
    spec = ssh_session(cluster, ssh_config_path(cluster).absolute())
    window = None  # an existing session is attached as the user left it
    existing_config(cluster)
    with cluster_lock(cluster, say):  # two at once: the second finds the first's session
        owner = tmux.session_owner(spec.name)
        check_ours(cluster, spec.name, owner)
        if owner is None:
            tmux.run_groups(session_groups(spec), f"opening tmux session {spec.name}")
            window = spec.attach_window
            say(f"kubenet: opened tmux session {spec.name}")
        else:  # the session as the user left it, with the panes of VMs it lacks added
            added = missing_pane_groups(spec, tmux.panes(spec.name))
            if added:
                tmux.run_groups(added, f"adding panes to tmux session {spec.name}")
                say(f"kubenet: added {len(added)} panes to tmux session {spec.name}")
        tmux.bind_sync_key()
    if not attach:
        return spec.name
    if tmux.serves():
        tmux.run([tmux.attach_command(spec.name, window, inside_tmux=True)])  # switch-client returns at once
        return spec.name
    # from a terminal, or from a tmux session of another server: attach (nested, then)
    os.environ.pop("TMUX", None)
    replace_process(tmux.argv([tmux.attach_command(spec.name, window, inside_tmux=False)]), TMUX_HINT)
    return spec.name
