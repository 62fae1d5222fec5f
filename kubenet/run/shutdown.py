"""Stopping VMs within one timeout, and `down`, which then removes the cluster's tmux
sessions and VDE switch.

The ladder follows QEMU's own QEMUMachine (a graceful request, a wait bounded in
time, then kill, cleaning up whatever happens) with one step before it: the ACPI
power button, so the guest shuts down as on a real machine. QEMUMachine itself
goes straight to `quit`, which ends qemu at once, like pulling the plug.

A Ctrl-C stops the ladder where it is: VMs not yet killed stay running, and `down`
says which.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Callable

from ..machine.target import Target
from ..model.cluster import VM, Cluster
from ..model.paths import vm_paths
from ..plumbing import errors
from ..plumbing.parallel import for_each
from ..plumbing.process import kill, pid_alive, wait_for_exit
from ..plumbing.qmp import Monitor, QMPError
from ..store.statedir import cluster_lock
from .vmstate import forget_answers, qemu_pid

# Of the whole timeout, the power button gets all but this share (at most
# RESERVE_SECONDS), which is left for `quit` and, failing that, SIGKILL.
RESERVE_SHARE, RESERVE_SECONDS = 0.25, 5.0
INTERRUPTED = "left running: interrupted"


def qmp_request(cluster: Cluster, vm: VM, command: str, timeout: float) -> bool:
    """Send `system_powerdown` or `quit` within `timeout` seconds; whether qemu took it."""
    try:
        with Monitor(vm_paths(cluster, vm).qmp, vm.name, timeout) as monitor:
            monitor.quit(timeout) if command == "quit" else monitor.execute(command, timeout=timeout)
        return True
    except QMPError:
        return False


def power_off(cluster: Cluster, vm: VM, timeout: float, stop: threading.Event | None = None) -> str:
    """Stop the VM within `timeout` seconds; says how: 'powered off', 'quit' (ignored the
    button), 'killed', or, once `stop` is set, that it was left running."""
    stop = stop or threading.Event()
    pid = qemu_pid(cluster, vm)
    if pid is None:
        return "not running"
    started = time.monotonic()
    reserve = min(timeout * RESERVE_SHARE, RESERVE_SECONDS)
    button_deadline = started + timeout - reserve
    quit_deadline = started + timeout - reserve / 4  # the last quarter of the reserve is for the kill
    left = lambda deadline: max(0.0, deadline - time.monotonic())  # noqa: E731
    try:
        if qmp_request(cluster, vm, "system_powerdown", left(button_deadline)) and wait_for_exit(pid, left(button_deadline), stop):
            return "powered off"
        if stop.is_set():
            return INTERRUPTED
        if qmp_request(cluster, vm, "quit", left(quit_deadline)) and wait_for_exit(pid, left(quit_deadline), stop):
            return "quit"
        if stop.is_set() and pid_alive(pid):
            return INTERRUPTED
        if not pid_alive(pid):
            return "quit"
        kill(pid, signal.SIGKILL)
        wait_for_exit(pid, max(left(started + timeout), 1.0))  # the kernel reaps a killed process at once
        return "killed"
    except ProcessLookupError:
        return "powered off"
    except PermissionError:
        # Started as root and never handed to the user (kubenet before asroot.py, or `sudo invoke up`).
        return "not stopped: its qemu runs as root"
    finally:
        if not pid_alive(pid):
            try:
                forget_answers(cluster, vm)
            except OSError:
                pass  # a read-only state_dir: the markers name a qemu that is gone, so they count for nothing
            from ..prepare.disk import repair_leaks_left

            repair_leaks_left(vm_paths(cluster, vm).dir)  # its images are no qemu's now


def shut_down(cluster: Cluster, vms: list[VM], target: Target, timeout: float, cleanup: bool, say: Callable[[str], None]) -> None:
    """Power VMs off in parallel; with cleanup and every VM down, remove this cluster's
    tmux sessions (never another's) and its VDE switch. One command at a time changes
    the cluster's processes: a `down` during an `up` waits for its launch, and a second
    `down` finds the first one's work done."""
    if not cluster.state_dir.exists():
        for vm in vms:
            say(f"kubenet: {vm.name}: not running")
        return  # never set up: nothing runs, and nothing is to be made
    with cluster_lock(cluster, say):
        _shut_down(cluster, vms, target, timeout, cleanup, say)


def _shut_down(cluster: Cluster, vms: list[VM], target: Target, timeout: float, cleanup: bool, say: Callable[[str], None]) -> None:
    stop = threading.Event()
    if cluster.forward and cluster.vms and cluster.vms[0] in vms:
        from .tunnel import stop as stop_tunnel

        stop_tunnel(cluster, say)  # before its VM goes, rather than wait for its keepalive to fail

    def stop_one(vm: VM) -> str:
        how = power_off(cluster, vm, timeout, stop)
        say(f"kubenet: {vm.name}: {how}")
        return how

    try:
        for_each(vms, stop_one, stop=stop)
    except KeyboardInterrupt:
        still = [vm.name for vm in vms if qemu_pid(cluster, vm) is not None]
        say(f"kubenet: down interrupted; still running: {' '.join(still) or 'none'}")
        raise
    still = [vm.name for vm in vms if qemu_pid(cluster, vm) is not None]
    if still:
        raise errors.LaunchError(f"still running: {' '.join(still)}", "if they were started with sudo, stop them with sudo too")
    from ..store.identity import orphans, recorded

    if cleanup and all(qemu_pid(cluster, vm) is None for vm in [*cluster.local_vms, *orphans(cluster, recorded(cluster))]):
        remove_sessions(cluster, target, say)


def remove_sessions(cluster: Cluster, target: Target, say: Callable[[str], None]) -> None:
    """The cluster's tmux sessions (never another's) and its VDE switch, once no VM runs."""
    from .asroot import authorize
    from .layout import is_ours, qemu_session_name, ssh_session_name
    from .tmux import Tmux
    from .vde import stop_switch

    for tmux, session in (
        (Tmux.from_environment(sudo=target.root), qemu_session_name(cluster)),
        (Tmux.from_environment(), ssh_session_name(cluster)),
    ):
        if tmux.sudo:
            if not tmux.server_has(session):
                continue
            authorize(target, f"removing tmux session {session}, which root runs,", say)
        removed = tmux.remove_own_session(session, lambda owner: is_ours(cluster, owner))
        if removed == "removed":
            say(f"kubenet: removed tmux session {session}")
        elif removed == "foreign":
            say(f"kubenet: left tmux session {session} alone: it is not this cluster's")
    if stop_switch(cluster):
        say("kubenet: stopped the VDE switch")
