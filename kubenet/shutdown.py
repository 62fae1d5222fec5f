"""Stopping VMs, as QEMU's own QEMUMachine does: ask politely (the ACPI power
button over QMP), wait, then `quit`, then kill, all within one timeout; and
`down`, which then removes the cluster's tmux sessions and VDE switch.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Callable

from . import errors
from .cluster import VM, Cluster
from .paths import vm_paths
from .process import kill, pid_alive, wait_for_exit
from .target import Target
from .vmstate import forget_answers, qemu_pid


def qmp_command(cluster: Cluster, vm: VM, command: str, timeout: float) -> bool:
    """Send one QMP command within `timeout` seconds in all; whether qemu took it.

    After `quit` qemu may close the socket before or instead of answering:
    qemu.qmp then raises EOFError, which means the command was taken.
    """
    import asyncio

    from qemu.qmp import QMPClient, QMPError

    async def send() -> None:
        client = QMPClient(vm.name)
        try:
            await client.connect(str(vm_paths(cluster, vm).qmp))
            await client.execute(command)
        finally:
            await client.disconnect()

    async def bounded() -> bool:
        try:
            await asyncio.wait_for(send(), max(timeout, 0.01))
            return True
        except EOFError:
            return command == "quit"
        except (OSError, QMPError, asyncio.TimeoutError):
            return False

    try:
        return asyncio.run(bounded())
    except EOFError:
        return command == "quit"


# Of the whole timeout, the power button gets all but this share (at most
# RESERVE_SECONDS), which is left for `quit` and, failing that, SIGKILL.
RESERVE_SHARE, RESERVE_SECONDS = 0.25, 5.0


def power_off(cluster: Cluster, vm: VM, timeout: float) -> str:
    """Stop the VM within `timeout` seconds; says how: 'powered off', 'quit' (ignored the button) or 'killed'."""
    pid = qemu_pid(cluster, vm)
    if pid is None:
        return "not running"
    started = time.monotonic()
    reserve = min(timeout * RESERVE_SHARE, RESERVE_SECONDS)
    button_deadline = started + timeout - reserve
    quit_deadline = started + timeout - reserve / 4  # the last quarter of the reserve is for the kill
    left = lambda deadline: max(0.0, deadline - time.monotonic())  # noqa: E731
    try:
        if qmp_command(cluster, vm, "system_powerdown", left(button_deadline)) and wait_for_exit(pid, left(button_deadline)):
            return "powered off"
        if qmp_command(cluster, vm, "quit", left(quit_deadline)) and wait_for_exit(pid, left(quit_deadline)):
            return "quit"
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
        forget_answers(cluster, vm)


def shut_down(cluster: Cluster, vms: list[VM], target: Target, timeout: float, cleanup: bool, say: Callable[[str], None]) -> None:
    """Power VMs off in parallel; with cleanup and every VM down, remove this cluster's
    tmux sessions (never another's) and its VDE switch."""
    lock = threading.Lock()

    def stop(vm: VM) -> None:
        how = power_off(cluster, vm, timeout)
        with lock:
            say(f"kubenet: {vm.name}: {how}")

    threads = [threading.Thread(target=stop, args=(vm,)) for vm in vms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    still = [vm.name for vm in vms if qemu_pid(cluster, vm) is not None]
    if still:
        raise errors.LaunchError(f"still running: {' '.join(still)}", "if they were started with sudo, stop them with sudo too")
    if cleanup and all(qemu_pid(cluster, vm) is None for vm in cluster.vms):
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
            owner = tmux.session_owner(session)
            if owner is not None and is_ours(cluster, owner):
                tmux.kill_session(session)
                say(f"kubenet: removed tmux session {session}")
            elif owner is not None:
                say(f"kubenet: left tmux session {session} alone: it is not this cluster's")
        if stop_switch(cluster):
            say("kubenet: stopped the VDE switch")
