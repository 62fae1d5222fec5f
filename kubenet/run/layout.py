"""The tmux sessions as data: which windows, which panes, which command in each.

Pure functions; tmux.py turns a SessionSpec into tmux commands.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..model.cluster import Cluster
from ..model.network import ssh_argv
from ..plumbing import errors

# A detached session is 80x24 unless told otherwise, where `tiled` soon fails
# with "no space for new pane"; we give it room and cap the panes per window.
SESSION_COLUMNS = 200
SESSION_ROWS = 60
MIN_PANE_COLUMNS = 40
MIN_PANE_ROWS = 8
QEMU_WINDOW = "qemu"
SSH_NODES_WINDOW = "ssh-nodes"


@dataclass(frozen=True)
class PaneSpec:
    vm: str  # the VM the pane belongs to; also its title
    command: tuple[str, ...]  # the program and its arguments, run without a shell


@dataclass(frozen=True)
class WindowSpec:
    name: str
    layout: str
    panes: tuple[PaneSpec, ...]


@dataclass(frozen=True)
class SessionSpec:
    name: str
    windows: tuple[WindowSpec, ...]
    attach_window: str | None = None  # where `attach` lands
    remain_on_exit: bool = False  # keep a dead pane's last output readable
    owner: str = ""  # the cluster's state directory: whose session this is


def session_owner(cluster: Cluster) -> str:
    """What marks a session as this cluster's: two checkouts may share a cluster name, never a state directory."""
    return os.path.realpath(cluster.state_dir)


def window_capacity(layout: str = "tiled", columns: int = SESSION_COLUMNS, rows: int = SESSION_ROWS) -> int:
    """How many panes a window holds in this layout while each keeps a usable size."""
    if layout == "even-vertical":
        return max(1, rows // MIN_PANE_ROWS)
    return max(1, (columns // MIN_PANE_COLUMNS) * (rows // MIN_PANE_ROWS))


def spill(name: str, layout: str, panes: list[PaneSpec], capacity: int | None = None, taken: set[str] | None = None) -> list[WindowSpec]:
    """`name` holds as many panes as fit; the rest go to `name-2`, `name-3`, ...; a name in
    `taken` (another window's) is never used twice: the next free number is."""
    taken = set() if taken is None else taken
    windows = []
    for index, group in enumerate(chunks(panes, capacity or window_capacity(layout))):
        candidate, number = (name if index == 0 else f"{name}-{index + 1}"), index + 1
        while candidate in taken:
            number += 1
            candidate = f"{name}-{number}"
        taken.add(candidate)
        windows.append(WindowSpec(candidate, layout, tuple(group)))
    return windows


def is_ours(cluster: Cluster, owner: str | None) -> bool:
    """Whether a session with this owner mark may be adopted or killed: only our own, or none at all."""
    return owner is None or owner == session_owner(cluster)


def check_ours(cluster: Cluster, session: str, owner: str | None) -> None:
    if not is_ours(cluster, owner):
        whose = f"the cluster whose state is in {owner}" if owner.startswith("/") else "no cluster kubenet knows of"
        raise errors.LaunchError(
            f"tmux session {session} belongs to {whose}, not to this one ({session_owner(cluster)})",
            f"give this cluster another name in {cluster.source} (name: ...), so that its sessions have their own names",
        )


def more_qemu_windows(taken: set[str], panes: list[PaneSpec]) -> list[WindowSpec]:
    """Windows for panes that fit in no existing window: qemu-2, qemu-3, ..., skipping names in use."""
    windows, number = [], 2
    for group in chunks(panes, window_capacity()):
        while f"{QEMU_WINDOW}-{number}" in taken:
            number += 1
        windows.append(WindowSpec(f"{QEMU_WINDOW}-{number}", "tiled", tuple(group)))
        number += 1
    return windows


def qemu_session_name(cluster: Cluster) -> str:
    return f"{cluster.name}-qemu"


def ssh_session_name(cluster: Cluster) -> str:
    return f"{cluster.name}-ssh"


def chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def qemu_session(cluster: Cluster, commands: dict[str, tuple[str, ...]], capacity: int | None = None) -> SessionSpec:
    """One pane per VM running its qemu, `tiled`, spilling into further windows when full."""
    panes = [PaneSpec(name, command) for name, command in commands.items()]
    windows = tuple(spill(QEMU_WINDOW, "tiled", panes, capacity))
    return SessionSpec(qemu_session_name(cluster), windows, attach_window=QEMU_WINDOW, remain_on_exit=True, owner=session_owner(cluster))


def role_window_name(cluster: Cluster, role: str) -> str:
    """`ssh-gateway` for a single machine, `ssh-controls` for a role with a count."""
    single = next(r for r in cluster.roles if r.name == role).count is None
    return f"ssh-{role}" if single else f"ssh-{role}s"


def ssh_command(ssh_config: Path, vm: str) -> tuple[str, ...]:
    """Connect, and reconnect while the connection itself fails (exit 255); a logout ends it.

    The ssh command comes as the loop's arguments ("$@", and the VM's name as $0), never as script text.
    """
    loop = 'while :; do "$@"; [ $? -eq 255 ] || break; echo "kubenet: $0 not reachable yet; retrying (Ctrl-C to stop)"; sleep 2; done'
    return ("sh", "-c", loop, vm, *ssh_argv(ssh_config, vm))


def ssh_session(cluster: Cluster, ssh_config: Path) -> SessionSpec:
    """A window per role (even-vertical), and `ssh-nodes` (tiled) with every VM of the counted roles.

    Window names are unique whatever the roles are called: a role named `node` has
    `ssh-nodes`, and the window of all nodes is then `ssh-all-nodes`."""
    windows: list[WindowSpec] = []
    taken: set[str] = set()
    for role in cluster.roles:
        vms = cluster.vms_of_role(role.name)
        if vms:
            panes = [PaneSpec(vm.name, ssh_command(ssh_config, vm.name)) for vm in vms]
            windows += spill(role_window_name(cluster, role.name), "even-vertical", panes, taken=taken)
    nodes = [vm for role in cluster.roles if role.count is not None for vm in cluster.vms_of_role(role.name)]
    if nodes:
        name = SSH_NODES_WINDOW if SSH_NODES_WINDOW not in taken else "ssh-all-nodes"
        windows += spill(name, "tiled", [PaneSpec(vm.name, ssh_command(ssh_config, vm.name)) for vm in nodes], taken=taken)
    names = [w.name for w in windows]
    attach = "ssh-controls" if "ssh-controls" in names else names[0]
    return SessionSpec(ssh_session_name(cluster), tuple(windows), attach_window=attach, owner=session_owner(cluster))
