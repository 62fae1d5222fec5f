"""A running VM's state and its shutdown, through qemu's pid file and QMP socket.

Shutdown follows QEMU's own QEMUMachine: ask politely (ACPI power button),
wait with a timeout, then `quit`, then kill; clean-up always runs.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Callable

from .cluster import VM, Cluster
from .paths import vm_paths


@dataclass(frozen=True)
class VMState:
    running: bool
    pid: int | None
    ready: bool


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, but root's (a root-launched network mode)
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): kill(0) is our answer


def names_in_arguments(pid: int, marker: str) -> bool | None:
    """Whether the process's arguments include `marker`; None if they cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return marker in stream.read().decode(errors="replace").split("\0")
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False  # gone
    except OSError:
        return None
    from .run import outcome_with_output  # no /proc (macOS): ps shows the arguments joined

    code, output = outcome_with_output(["ps", "-ww", "-o", "args=", "-p", str(pid)])
    return marker in output if code == 0 else None


def is_own_process(pid: int, marker: str, fallback: Callable[[], bool]) -> bool:
    """Whether `pid` is the process we started: its arguments name `marker`, a path only it
    is given. A pid from a file may have been reused by an unrelated process since."""
    named = names_in_arguments(pid, marker)
    return fallback() if named is None else named  # unreadable: another user's process on a hardened /proc


def qemu_pid(cluster: Cluster, vm: VM) -> int | None:
    """The pid of the VM's qemu if it runs: the pid file's, once it is confirmed to be this VM's qemu."""
    from .disk import disk_in_use

    paths = vm_paths(cluster, vm)
    try:
        pid = int(paths.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not pid_alive(pid):
        return None
    return pid if is_own_process(pid, str(paths.pidfile.absolute()), lambda: disk_in_use(paths.disk)) else None


def is_running(cluster: Cluster, vm: VM) -> bool:
    return vm_state(cluster, vm).running


def vm_state(cluster: Cluster, vm: VM) -> VMState:
    """Running: the qemu `up` started (pid file), or any other that has the disk open,
    such as `invoke vm`'s, which leaves no pid file to tell its pid."""
    pid = qemu_pid(cluster, vm)
    if pid is None:
        from .disk import disk_in_use

        return VMState(running=disk_in_use(vm_paths(cluster, vm).disk), pid=None, ready=False)
    try:
        ready = int(vm_paths(cluster, vm).ready_marker.read_text().strip()) == pid
    except (OSError, ValueError):
        ready = False
    return VMState(running=True, pid=pid, ready=ready)


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


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
        os.kill(pid, signal.SIGKILL)
        wait_for_exit(pid, max(left(started + timeout), 1.0))  # the kernel reaps a killed process at once
        return "killed"
    except ProcessLookupError:
        return "powered off"
    except PermissionError:
        # Launched with sudo (vmnet, bridge): its socket and process are root's.
        return "not stopped: its qemu runs as root"
    finally:
        vm_paths(cluster, vm).ready_marker.unlink(missing_ok=True)
