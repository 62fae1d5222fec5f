"""Wait until VMs answer SSH, all at once, and say which did and which did not.

A VM is ready when `ssh -F <state>/ssh_config <vm> true` succeeds. Before
spending an ssh process on it, each VM is polled cheaply for an SSH banner
(user-mode networking accepts connections before the guest listens, so an
open port alone means nothing).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from . import errors
from .cluster import VM, Cluster, NetworkMode
from .fsutil import write_atomic
from .vmstate import answered_before, qemu_pid
from .network import SshEndpoint, ssh_endpoint
from .paths import ssh_config_path, vm_paths

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Readiness:
    vm: str
    ready: bool
    seconds: float
    reason: str = ""


def ssh_banner(endpoint: SshEndpoint, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            return connection.recv(4) == b"SSH-"
    except OSError:
        return False


def ssh_succeeds(cluster: Cluster, vm: VM) -> tuple[bool, str]:
    from .process import run
    from .ssh import SSH_HINT, ssh_argv

    try:
        done = run(ssh_argv(ssh_config_path(cluster).absolute(), vm.name, "true", batch=True), check=False, timeout=20, missing_hint=SSH_HINT)
    except errors.LaunchError as error:  # it timed out: try again
        return False, str(error)
    said = done.stderr.strip().splitlines()
    return done.code == 0, said[-1] if said else f"ssh exit code {done.code}"


def wait_one(cluster: Cluster, vm: VM, mode: NetworkMode, deadline: float, started: float) -> Readiness:
    endpoint = ssh_endpoint(cluster.network, mode, vm)
    reason = "no SSH banner yet"
    while time.monotonic() < deadline:
        pid = qemu_pid(cluster, vm)
        if pid is None and time.monotonic() - started > 2:
            return Readiness(vm.name, False, time.monotonic() - started, "qemu is not running")
        if ssh_banner(endpoint):
            # This qemu's guest let us log in before, and its sshd still answers: no new login needed.
            if pid is not None and answered_before(cluster, vm, pid):
                return Readiness(vm.name, True, time.monotonic() - started)
            ok, said = ssh_succeeds(cluster, vm)
            if ok:
                if pid is not None:
                    write_atomic(vm_paths(cluster, vm).ready_marker, f"{pid}\n".encode())
                return Readiness(vm.name, True, time.monotonic() - started)
            reason = said
        time.sleep(POLL_SECONDS)
    return Readiness(vm.name, False, time.monotonic() - started, f"timed out ({reason})")


def wait_ready(
    cluster: Cluster, vms: list[VM], mode: NetworkMode, timeout: float, report: Callable[[Readiness], None]
) -> list[Readiness]:
    """Wait for every VM in parallel; `report` hears of each as soon as it is settled."""
    started = time.monotonic()
    deadline = started + timeout
    results: dict[str, Readiness] = {}
    lock = threading.Lock()

    def watch(vm: VM) -> None:
        result = wait_one(cluster, vm, mode, deadline, started)
        with lock:
            results[vm.name] = result
            report(result)

    threads = [threading.Thread(target=watch, args=(vm,), daemon=True) for vm in vms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[vm.name] for vm in vms]


def summary(cluster: Cluster, results: list[Readiness]) -> list[str]:
    """The closing report: who is ready, who is not and where to look."""
    ready = [r.vm for r in results if r.ready]
    lines = [f"{len(ready)} of {len(results)} VMs ready" + (f": {' '.join(ready)}" if ready else "")]
    for result in results:
        if not result.ready:
            log = vm_paths(cluster, cluster.vm_by_name(result.vm)).serial_log
            lines.append(f"{result.vm} not ready: {result.reason}; console log: {log}")
    return lines
