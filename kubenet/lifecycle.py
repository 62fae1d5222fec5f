"""A running VM's state and its shutdown, through qemu's pid file and QMP socket.

Shutdown follows QEMU's own QEMUMachine: ask politely (ACPI power button),
wait with a timeout, then `quit`, then kill; clean-up always runs.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

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


def qemu_pid(cluster: Cluster, vm: VM) -> int | None:
    """The pid of the VM's qemu if it runs (qemu writes and keeps its pid file)."""
    try:
        pid = int(vm_paths(cluster, vm).pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


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


def qmp_command(cluster: Cluster, vm: VM, command: str, timeout: float = 5.0) -> bool:
    """Send one QMP command; False if the socket does not answer."""
    import asyncio

    from qemu.qmp import QMPClient, QMPError

    async def send() -> None:
        client = QMPClient(vm.name)
        try:
            await asyncio.wait_for(client.connect(str(vm_paths(cluster, vm).qmp)), timeout)
            await asyncio.wait_for(client.execute(command), timeout)
        finally:
            await client.disconnect()

    try:
        asyncio.run(send())
        return True
    except (OSError, QMPError, asyncio.TimeoutError, EOFError):
        return False


def power_off(cluster: Cluster, vm: VM, timeout: float) -> str:
    """Stop the VM; says how: 'powered off', 'quit' (ignored the button) or 'killed'."""
    pid = qemu_pid(cluster, vm)
    if pid is None:
        return "not running"
    try:
        if qmp_command(cluster, vm, "system_powerdown") and wait_for_exit(pid, timeout):
            return "powered off"
        if qmp_command(cluster, vm, "quit") and wait_for_exit(pid, 5.0):
            return "quit"
        os.kill(pid, signal.SIGKILL)
        wait_for_exit(pid, 5.0)
        return "killed"
    except ProcessLookupError:
        return "powered off"
    except PermissionError:
        # Launched with sudo (vmnet, bridge): its socket and process are root's.
        return "not stopped: its qemu runs as root"
    finally:
        vm_paths(cluster, vm).ready_marker.unlink(missing_ok=True)
