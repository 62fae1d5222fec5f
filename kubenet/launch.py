"""Start VMs: one in the foreground (`invoke vm`: qemu replaces the task), or the
cluster in the detached tmux session `<cluster>-qemu` (`invoke up`), then wait
until they answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from . import errors
from .cluster import VM, Cluster, ImageKind, NetworkMode
from .fsutil import locked, private_dir
from .host import needs_efivars
from .layout import check_ours, qemu_session, qemu_session_name
from .paths import vm_paths
from .qemu import Management, qemu_argv
from .target import Target
from .tmux import Tmux, extend_groups, pane_command, session_groups
from .vmstate import is_running

QEMU_HINT = "install qemu (`apt install qemu-system`, `brew install qemu`) or set KUBENET_QEMU"
LAUNCH_LOCK = "launch.lock"


def management_for(cluster: Cluster, vm: VM) -> Management:
    paths = vm_paths(cluster, vm)
    return Management(qmp=paths.qmp.absolute(), pidfile=paths.pidfile.absolute(), serial_log=paths.serial_log.absolute())


def vm_argv(cluster: Cluster, vm: VM, target: Target, managed: bool = False) -> list[str]:
    """The VM's qemu command; `managed` adds what `up` adds (QMP socket, pid file, console log)."""
    return qemu_argv(cluster, vm, target.host, target.accel, target.mode, management_for(cluster, vm) if managed else None)


def missing_files(cluster: Cluster, vm: VM, target: Target) -> list[str]:
    paths = vm_paths(cluster, vm)
    needed = [paths.disk, paths.seed, *([paths.efivars] if needs_efivars(cluster, target.host) else [])]
    return [str(path) for path in needed if not path.exists()]


def check_launchable(cluster: Cluster, vms: list[VM], target: Target) -> None:
    if not target.host.qemu_found:
        raise errors.HostError(f"{target.host.qemu} not found", QEMU_HINT)
    if cluster.image.kind == ImageKind.KERNEL:
        for key in ("kernel", "initrd"):
            path = getattr(cluster.image, key)
            if not os.path.isfile(path):
                raise errors.SetupError(f"{cluster.source}: image.{key}: {path} does not exist", f"point image.{key} at your {key} file")
    for vm in vms:
        missing = missing_files(cluster, vm, target)
        if missing:
            raise errors.SetupError(f"{vm.name} is not set up: missing {', '.join(missing)}", f"run `make setup` or `invoke vmsetup --id {vm.id}`")


def prepare_network(cluster: Cluster, target: Target) -> None:
    if target.mode == NetworkMode.USER:
        from .vde import ensure_switch

        ensure_switch(cluster)


def exec_vm(cluster: Cluster, vm: VM, target: Target, managed: bool) -> None:
    from .process import replace_process

    if is_running(cluster, vm):
        raise errors.LaunchError(f"{vm.name} is already running", f"see `invoke ls`; stop it with `invoke stop --id {vm.id}`")
    argv = vm_argv(cluster, vm, target, managed)
    check_launchable(cluster, [vm], target)
    prepare_network(cluster, target)
    os.umask(0o077)  # qemu's pid file and QMP socket are private; this process becomes qemu
    replace_process(argv, QEMU_HINT)


@dataclass(frozen=True)
class LaunchResult:
    session: str
    started: list[str]
    already_running: list[str]
    sudo: bool


def launch_cluster(cluster: Cluster, vms: list[VM], target: Target, tmux: Tmux | None = None) -> LaunchResult:
    """Start every VM of `vms` that is not running, each in its pane of `<cluster>-qemu`.

    Launches of one cluster are serialised: two `up`s at once start each VM once,
    and the second sees the first's panes as running.
    """
    with locked(private_dir(cluster.state_dir) / LAUNCH_LOCK):
        return _launch_cluster(cluster, vms, target, tmux or Tmux.from_environment(sudo=target.root))


def _launch_cluster(cluster: Cluster, vms: list[VM], target: Target, tmux: Tmux) -> LaunchResult:
    session = qemu_session_name(cluster)
    # Ask tmux only if the session may exist; a fresh launch spares the query.
    panes = tmux.panes(session) if tmux.server_has(session) else []
    check_ours(cluster, session, panes[0].owner if panes else None)
    alive = {pane.vm for pane in panes if not pane.dead}
    running = [vm.name for vm in vms if vm.name in alive or is_running(cluster, vm)]
    to_start = [vm for vm in vms if vm.name not in running]
    if to_start:
        check_launchable(cluster, to_start, target)
        prepare_network(cluster, target)
        commands = {}
        for vm in to_start:
            paths = vm_paths(cluster, vm)
            private_dir(paths.dir, enforce=True)
            paths.ready_marker.unlink(missing_ok=True)
            paths.serial_log.touch(mode=0o600)  # made by us, so it stays ours even if qemu runs as root
            commands[vm.name] = pane_command(vm_argv(cluster, vm, target, managed=True))
        if panes:
            tmux.run_groups(extend_groups(session, panes, commands))
        else:
            tmux.run_groups(session_groups(qemu_session(cluster, commands)))
    return LaunchResult(session, [vm.name for vm in to_start], running, tmux.sudo)


def up(cluster: Cluster, vms: list[VM], target: Target, timeout: float | None, say: Callable[[str], None]) -> None:
    """Start what is not running, then (unless timeout is None) wait for SSH on all of `vms` and report."""
    from .readiness import summary, wait_ready

    result = launch_cluster(cluster, vms, target)
    attach = f"{'sudo ' if result.sudo else ''}tmux attach -t {result.session}"
    if result.started:
        say(f"kubenet: started {' '.join(result.started)} in tmux session {result.session} (watch: {attach})")
    if result.already_running:
        say(f"kubenet: already running: {' '.join(result.already_running)}")
    if timeout is None:
        return

    def report(readiness) -> None:
        if readiness.ready:
            say(f"kubenet: {readiness.vm} ready after {readiness.seconds:.1f} s")

    say(f"kubenet: waiting up to {timeout:.0f} s for SSH on {len(vms)} VMs")
    results = wait_ready(cluster, vms, target.mode, timeout, report)
    for line in summary(cluster, results):
        say(f"kubenet: {line}")
    if not all(r.ready for r in results):
        raise errors.LaunchError(f"{sum(not r.ready for r in results)} VMs did not become ready", "read their console logs named above")
