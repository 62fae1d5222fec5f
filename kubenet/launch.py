"""Run VMs: one in the foreground (exec), or the whole cluster in a detached tmux session."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import errors
from .cluster import VM, Cluster
from .host import Host
from .layout import QEMU_WINDOW, PaneSpec, WindowSpec, check_ours, qemu_session, qemu_session_name, spill, window_capacity
from .fsutil import locked, private_dir
from .lifecycle import is_running
from .network import needs_root, resolve_mode
from .paths import vm_paths
from .qemu import Management, qemu_argv
from .tmux import Group, Pane, Tmux, pane_command, session_groups, split_groups, sync_key_commands, window_groups


QEMU_HINT = "install qemu (`apt install qemu-system`, `brew install qemu`) or set KUBENET_QEMU"


def management_for(cluster: Cluster, vm: VM) -> Management:
    paths = vm_paths(cluster, vm)
    return Management(qmp=paths.qmp.absolute(), pidfile=paths.pidfile.absolute(), serial_log=paths.serial_log.absolute())


def missing_files(cluster: Cluster, vm: VM, host: Host) -> list[str]:
    paths = vm_paths(cluster, vm)
    needed = [paths.disk, paths.seed]
    if cluster.image.kind == "cloud" and host.firmware and host.firmware.vars_template and host.arch.value == "x86_64":
        needed.append(paths.efivars)
    return [str(path) for path in needed if not path.exists()]


def check_launchable(cluster: Cluster, vms: list[VM], host: Host) -> None:
    if not host.qemu_found:
        raise errors.HostError(
            f"{host.qemu} not found",
            QEMU_HINT,
        )
    if cluster.image.kind == "kernel":
        for key in ("kernel", "initrd"):
            path = getattr(cluster.image, key)
            if not os.path.isfile(path):
                raise errors.SetupError(
                    f"{cluster.source}: image.{key}: {path} does not exist", f"point image.{key} at your {key} file"
                )
    for vm in vms:
        missing = missing_files(cluster, vm, host)
        if missing:
            raise errors.SetupError(
                f"{vm.name} is not set up: missing {', '.join(missing)}",
                f"run `make setup` or `invoke vmsetup --id {vm.id}`",
            )


def prepare_network(cluster: Cluster, mode: str) -> None:
    if mode == "user":
        from .vde import ensure_switch

        ensure_switch(cluster)


def launch_argv(cluster: Cluster, vm: VM, host: Host, accel: str, managed: bool) -> list[str]:
    """The command to run, after making sure the VM can start with it."""
    mode = resolve_mode(cluster.network, host)
    argv = qemu_argv(cluster, vm, host, accel, mode, management_for(cluster, vm) if managed else None)
    check_launchable(cluster, [vm], host)
    prepare_network(cluster, mode)
    return argv


def exec_vm(cluster: Cluster, vm: VM, host: Host, accel: str, managed: bool) -> None:
    from .run import replace_process

    if is_running(cluster, vm):
        raise errors.LaunchError(f"{vm.name} is already running", f"see `invoke ls`; stop it with `invoke stop --id {vm.id}`")
    argv = launch_argv(cluster, vm, host, accel, managed)
    os.umask(0o077)  # qemu's pid file and QMP socket are private; this process becomes qemu
    replace_process(argv, QEMU_HINT)


@dataclass(frozen=True)
class LaunchResult:
    session: str
    started: list[str]
    already_running: list[str]
    sudo: bool


def launch_cluster(cluster: Cluster, vms: list[VM], host: Host, accel: str, tmux: Tmux | None = None) -> LaunchResult:
    """Start every VM of `vms` that is not running, each in its pane of `<cluster>-qemu`.

    Launches of one cluster are serialised: two `up`s at once start each VM once,
    and the second sees the first's panes as running.
    """
    with locked(private_dir(cluster.state_dir) / LAUNCH_LOCK):
        return _launch_cluster(cluster, vms, host, accel, tmux)


LAUNCH_LOCK = "launch.lock"


def _launch_cluster(cluster: Cluster, vms: list[VM], host: Host, accel: str, tmux: Tmux | None) -> LaunchResult:
    mode = resolve_mode(cluster.network, host)
    tmux = tmux or Tmux.from_environment(sudo=needs_root(mode, host))
    session = qemu_session_name(cluster)
    # Ask tmux only if the session exists; a fresh launch spares the query.
    panes = tmux.panes(session) if tmux.server_has(session) else []
    check_ours(cluster, session, panes[0].owner if panes else None)
    alive = {pane.vm for pane in panes if not pane.dead}
    running = [vm.name for vm in vms if vm.name in alive or is_running(cluster, vm)]
    to_start = [vm for vm in vms if vm.name not in running]
    if to_start:
        check_launchable(cluster, to_start, host)
        prepare_network(cluster, mode)
        commands = {}
        for vm in to_start:
            paths = vm_paths(cluster, vm)
            private_dir(paths.dir, enforce=True)
            paths.ready_marker.unlink(missing_ok=True)
            paths.serial_log.touch(mode=0o600)  # made by us, so it stays ours even if qemu runs as root
            commands[vm.name] = pane_command(qemu_argv(cluster, vm, host, accel, mode, management_for(cluster, vm)))
        if panes:
            tmux.run_groups(extend_groups(session, panes, commands))
        else:
            tmux.run_groups(session_groups(qemu_session(cluster, commands)))
    return LaunchResult(session, [vm.name for vm in to_start], running, tmux.sudo)


def extend_groups(session: str, panes: list[Pane], commands: dict[str, tuple[str, ...]]) -> list[Group]:
    """Restart dead panes in place and add panes for VMs that have none, never over a window's room."""
    groups: list[Group] = []
    dead = {pane.vm: pane for pane in panes if pane.dead}
    new = []
    for vm, command in commands.items():
        if vm in dead:
            groups.append([["respawn-pane", "-k", "-t", dead[vm].id, *command]])
        else:
            new.append(PaneSpec(vm, command))
    counts: dict[str, int] = {}
    for pane in panes:
        counts[pane.window_id] = counts.get(pane.window_id, 0) + 1
    for window_id, count in counts.items():
        room = max(0, window_capacity() - count)
        groups += split_groups(new[:room], "tiled", window_id)
        new = new[room:]
    names = {pane.window_name for pane in panes}
    number = 2
    for window in spill(QEMU_WINDOW, "tiled", new):
        while f"{QEMU_WINDOW}-{number}" in names:
            number += 1
        name = f"{QEMU_WINDOW}-{number}"
        names.add(name)
        create = ["new-window", "-d", "-t", f"={session}:", "-n", name, *window.panes[0].command]
        groups += window_groups(session, WindowSpec(name, "tiled", window.panes), True, create)
    return groups


def bind_sync_key(tmux: Tmux) -> None:
    """prefix + C-s toggles synchronize-panes in kubenet's sessions, unless the user bound C-s already."""
    from .tmux import SESSION_OPTION, SYNC_KEY

    bound = tmux.run([["list-keys", "-T", "prefix"]])
    mine = [line for line in bound.splitlines() if f" {SYNC_KEY} " in line]
    if not mine or any(SESSION_OPTION in line for line in mine):
        tmux.run(sync_key_commands())
