"""Wait until VMs are ready, all at once, and say which are and which are not.

A VM is ready when `ssh -F <state>/ssh_config <vm> true` succeeds and, unless
only SSH is asked for, cloud-init in the guest has finished (`cloud-init
status --long` says done, or the guest has no cloud-init). Before spending an
ssh process on it, each VM is polled cheaply for an SSH banner (user-mode
networking accepts connections before the guest listens, so an open port
alone means nothing). What a running qemu's guest already passed is
remembered (markers holding the qemu's pid), so a second `up` asks again only
for the banner.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from . import errors
from .cluster import VM, Cluster, NetworkMode, ReadyWhen
from .network import SshEndpoint, ssh_endpoint
from .parallel import for_each
from .paths import ssh_config_path, vm_paths
from .vmstate import answered_before, cloud_init_done_before, qemu_pid, remember_answer, remember_cloud_init_done, run_state, vm_state

POLL_SECONDS = 0.1
STATE_POLL_SECONDS = 1.0  # how often qemu is asked whether its guest still runs
# What qemu's run state says when the guest will never answer, and what usually helps.
HALTED = {
    "internal-error": "qemu stopped the guest: internal-error (an accelerator that opens but cannot run guests does this; try --accel tcg)",
    "guest-panicked": "the guest's kernel panicked (see its console log)",
    "io-error": "qemu stopped the guest: io-error (its disk could not be written: is the file system full?)",
}
CLOUD_INIT_POLL_SECONDS = 2.0
CLOUD_INIT_FINISHED = {"done": "done", "disabled": "disabled"}
# What `cloud-init status --long` prints that is not news: the rest says why it failed.
CLOUD_INIT_ROUTINE = re.compile(r"^(status|extended_status|boot_status_code|last_update|detail):\s*|^\s*$")


@dataclass(frozen=True)
class Readiness:
    vm: str
    ready: bool
    seconds: float
    reason: str = ""
    cloud_init: str = ""  # "done", "disabled", "absent" (no cloud-init), "error"; "" when not asked


def ssh_banner(endpoint: SshEndpoint, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            return connection.recv(4) == b"SSH-"
    except OSError:
        return False


def ssh_run(cluster: Cluster, vm: VM, command: str, timeout: float = 20):
    """Run `command` on the VM in batch mode; None when ssh did not finish in time."""
    from .process import run
    from .ssh import SSH_HINT, ssh_argv

    try:
        return run(ssh_argv(ssh_config_path(cluster).absolute(), vm.name, command, batch=True), check=False, timeout=timeout, missing_hint=SSH_HINT)
    except errors.LaunchError:
        return None


def ssh_succeeds(cluster: Cluster, vm: VM) -> tuple[bool, str]:
    done = ssh_run(cluster, vm, "true")
    if done is None:
        return False, "ssh did not finish within 20 s"
    said = done.stderr.strip().splitlines()
    return done.code == 0, said[-1] if said else f"ssh exit code {done.code}"


def parse_cloud_init_status(code: int, output: str) -> tuple[str, list[str]]:
    """(state, lines that say why) from `cloud-init status --long`: state is one of
    done, disabled, error, absent (the guest has no cloud-init) or running."""
    if code == 127 or "cloud-init: not found" in output or "command not found" in output:
        return "absent", []
    match = re.search(r"^status:\s*(.+?)\s*$", output, re.MULTILINE)
    state = match.group(1) if match else "running"
    why = [line.strip() for line in output.splitlines() if not CLOUD_INIT_ROUTINE.match(line)]
    if state in CLOUD_INIT_FINISHED:
        return CLOUD_INIT_FINISHED[state], why
    if state == "error":
        return "error", why
    return "running", why


def wait_for_ssh(
    cluster: Cluster, vm: VM, mode: NetworkMode, deadline: float, started: float, why_stopped: Callable[[str], str] = lambda vm: ""
) -> Readiness:
    endpoint = ssh_endpoint(cluster.network, mode, vm)
    reason = "no SSH banner yet"
    asked = 0.0
    while time.monotonic() < deadline:
        pid = qemu_pid(cluster, vm)  # None for a qemu kubenet did not start (`invoke vm`): seen by its disk lock
        if pid is None and time.monotonic() - started > 2 and not vm_state(cluster, vm).running:
            words = why_stopped(vm.name)
            return Readiness(vm.name, False, time.monotonic() - started, "qemu is not running" + (f"; it said: {words}" if words else ""))
        if pid is not None and time.monotonic() - asked >= STATE_POLL_SECONDS:
            asked = time.monotonic()
            said = run_state(cluster, vm)
            if said in HALTED:
                return Readiness(vm.name, False, time.monotonic() - started, HALTED[said])
        if ssh_banner(endpoint):
            # This qemu's guest let us log in before, and its sshd still answers: no new login needed.
            if pid is not None and answered_before(cluster, vm, pid):
                return Readiness(vm.name, True, time.monotonic() - started)
            ok, said = ssh_succeeds(cluster, vm)
            if ok:
                if pid is not None:
                    remember_answer(cluster, vm, pid)
                return Readiness(vm.name, True, time.monotonic() - started)
            reason = said
        time.sleep(POLL_SECONDS)
    return Readiness(vm.name, False, time.monotonic() - started, f"timed out ({reason})")


def wait_for_cloud_init(cluster: Cluster, vm: VM, deadline: float, started: float) -> Readiness:
    pid = qemu_pid(cluster, vm)
    if pid is not None and cloud_init_done_before(cluster, vm, pid):
        return Readiness(vm.name, True, time.monotonic() - started, cloud_init="done")
    why: list[str] = []
    while time.monotonic() < deadline:
        done = ssh_run(cluster, vm, "cloud-init status --long", timeout=30)
        if done is not None and done.code != 255:  # 255: ssh itself failed (a reboot, say): ask again
            state, why = parse_cloud_init_status(done.code, done.stdout + done.stderr)
            if state in ("done", "disabled", "absent"):
                if pid is not None:
                    remember_cloud_init_done(cluster, vm, pid)
                return Readiness(vm.name, True, time.monotonic() - started, cloud_init=state)
            if state == "error":
                return Readiness(vm.name, False, time.monotonic() - started, "cloud-init failed: " + " | ".join(why), cloud_init="error")
        time.sleep(CLOUD_INIT_POLL_SECONDS)
    return Readiness(vm.name, False, time.monotonic() - started, "timed out waiting for cloud-init" + (": " + " | ".join(why) if why else ""))


def wait_ready(
    cluster: Cluster,
    vms: list[VM],
    mode: NetworkMode,
    timeout: float,
    report: Callable[[str, Readiness], None],
    until: ReadyWhen = ReadyWhen.SSH,
    why_stopped: Callable[[str], str] = lambda vm: "",
) -> list[Readiness]:
    """Wait for every VM in parallel; `report` hears of each stage ("ssh", then "cloud-init") as it settles."""
    started = time.monotonic()
    deadline = started + timeout
    lock = threading.Lock()  # one report at a time

    def watch(vm: VM) -> Readiness:
        result = wait_for_ssh(cluster, vm, mode, deadline, started, why_stopped)
        with lock:
            report("ssh", result)
        if result.ready and until == ReadyWhen.CLOUD_INIT:
            result = wait_for_cloud_init(cluster, vm, deadline, started)
            with lock:
                report("cloud-init", result)
        return result

    return for_each(vms, watch)


def summary(cluster: Cluster, results: list[Readiness]) -> list[str]:
    """The closing report: who is ready, who is not and where to look."""
    ready = [r.vm for r in results if r.ready]
    lines = [f"{len(ready)} of {len(results)} VMs ready" + (f": {' '.join(ready)}" if ready else "")]
    for result in results:
        if not result.ready:
            log = vm_paths(cluster, cluster.vm_by_name(result.vm)).serial_log
            where = f"`invoke ssh --name {result.vm}`, then `cloud-init status --long`" if result.cloud_init == "error" else f"console log: {log}"
            lines.append(f"{result.vm} not ready: {result.reason}; {where}")
    return lines
