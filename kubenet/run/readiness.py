"""Wait until VMs are ready, all at once, without wearing their guests down.

A VM is ready when SSH logs in with its pinned host key and, unless only SSH is asked
for, cloud-init in the guest has finished (`cloud-init status --long` says done, or
the guest has no cloud-init).

The wait reads what the host already has: qemu's run state over QMP (a halted guest
ends the wait at once) and the marks kubenet's seed makes the guest print on its
console (bootmarks.py): sshd listening, cloud-init finished. Only then does it log
in, and each login waits for sshd's answer as long as it takes, so no handshake is
ever left half-way: one login once sshd listens (running `cloud-init status --long`
when cloud-init is waited for), one more once cloud-init has finished, if it had not.
An image that prints no marks (no cloud-init ran kubenet's bootcmd, or its console is
elsewhere) is tried with a login now and then, seconds apart and further apart each time;
later where its console shows a kernel booting, and only as a safety net once it, or any
VM of the same wait, printed a mark.

What a running qemu's guest passed is remembered (vmstate: that qemu's pid and the
guest's boot), so a second `up` asks nothing of a guest that has not rebooted since.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from ..model.cluster import VM, Cluster, ReadyWhen
from ..model.paths import ssh_config_path, vm_paths
from ..plumbing import errors
from ..plumbing.parallel import for_each
from ..prepare.bootmarks import ConsoleMarks, Marks
from .vmstate import Proof, answered_before, cloud_init_done_before, qemu_pid, remember_answer, remember_cloud_init_done, run_state, vm_state

POLL_SECONDS = 0.1  # how often each console log is read: a file on the host, nothing the guest feels
STATE_POLL_SECONDS = 1.0  # how often qemu is asked whether its guest still runs
# Logins without a mark that asks for one: the first this long after the wait starts, then
# further apart (doubling), up to the last figure. A login sent before the guest's network
# is up waits out TCP's back-off (its SYN resent 1, 2, 4, 8 s apart) and so comes late:
# where the console shows a kernel booting, its marks are given longer before one is
# tried; once this guest, or another VM of the same wait, printed marks, logins follow
# the marks and the tries left are a safety net only, for a mark lost on the console (a
# kernel message written across it).
UNMARKED_TRIES = (10.0, 30.0)
BOOTING_TRIES = (30.0, 60.0)
MARKED_TRIES = (60.0, 300.0)
RETRY_TRIES = (2.0, 30.0)  # after a login that failed although sshd listens (its network not up yet)
# What qemu's run state says when the guest will never answer, and what usually helps.
HALTED = {
    "internal-error": "qemu stopped the guest: internal-error (an accelerator that opens but cannot run guests does this; try --accel tcg)",
    "guest-panicked": "the guest's kernel panicked (see its console log)",
    "io-error": "qemu stopped the guest: io-error (its disk could not be written: is the file system full?)",
}
CLOUD_INIT_FINISHED = {"done": "done", "disabled": "disabled"}
CLOUD_INIT_STATUS = "cloud-init status --long"
# What `cloud-init status --long` prints that is not news: the rest says why it failed.
CLOUD_INIT_ROUTINE = re.compile(r"^(status|extended_status|boot_status_code|last_update|detail):\s*|^\s*$")


@dataclass(frozen=True)
class Readiness:
    vm: str
    ready: bool
    seconds: float
    reason: str = ""
    cloud_init: str = ""  # "done", "disabled", "absent" (no cloud-init), "error"; "" when not asked
    logins: int = 0  # SSH connections opened to the guest during this wait


def backoff(tries: int, schedule: tuple[float, float]) -> float:
    """Seconds until the next try after `tries` tries: the first figure, doubling, at most the second."""
    first, most = schedule
    return min(most, first * 2**tries)


def ssh_run(cluster: Cluster, vm: VM, command: str, timeout: float = 20, stop: threading.Event | None = None):
    """Run `command` on the VM in batch mode, waiting up to `timeout` seconds for sshd's
    answer and the command; None when ssh did not finish in time."""
    from ..plumbing.process import run
    from ..model.network import SSH_HINT, ssh_argv

    argv = ssh_argv(ssh_config_path(cluster).absolute(), vm.name, command, batch=True, connect_timeout=max(5, int(timeout)))
    try:
        return run(argv, check=False, timeout=timeout + 10, missing_hint=SSH_HINT, stop=stop)
    except errors.LaunchError:
        return None


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


def login_outcome(done, until: ReadyWhen) -> tuple[bool, str, list[str], str]:
    """What one login says: (SSH worked, cloud-init's state or '', why it failed, ssh's last words)."""
    if done is None:
        return False, "", [], "ssh did not finish in time"
    if done.code == 255:  # ssh itself failed: no answer, or no login
        said = done.stderr.strip().splitlines()
        return False, "", [], said[-1] if said else "ssh exit code 255"
    if until != ReadyWhen.CLOUD_INIT:
        return True, "", [], ""
    state, why = parse_cloud_init_status(done.code, done.stdout + done.stderr)
    return True, state, why, ""


class VMWait:
    """One VM's wait: what it still waits for, when it next logs in, what it found."""

    def __init__(self, cluster: Cluster, vm: VM, until: ReadyWhen, started: float, deadline: float, stop: threading.Event,
                 marks_seen: threading.Event | None = None):  # fmt: skip
        self.cluster, self.vm, self.until = cluster, vm, until
        self.started, self.deadline, self.stop = started, deadline, stop
        self.marks_seen = marks_seen or threading.Event()  # set by the first VM of the wait that prints a mark
        self.console = ConsoleMarks(vm_paths(cluster, vm).serial_log)
        self.ssh_ok = False
        self.cloud_init = ""  # how cloud-init ended, once it has
        self.logins = 0
        self.tries = 0  # failed or early logins since the last progress, for the back-off
        self.next_try = started + UNMARKED_TRIES[0]
        self.asked_after: Marks | None = None  # the marks the last login followed
        self.marked = False  # whether this guest, or another of the wait, was seen printing marks
        self.booting = False  # whether its console showed a kernel booting
        self.reason = "the guest has not said that sshd listens"

    def now(self) -> float:
        return time.monotonic() - self.started

    def result(self, ready: bool, reason: str = "") -> Readiness:
        return Readiness(self.vm.name, ready, self.now(), reason, self.cloud_init, self.logins)

    def due(self, marks: Marks) -> bool:
        """Whether to log in now: at once when a mark says there is news, else when the
        back-off says so."""
        news = marks.cloud_init is not None if self.ssh_ok else marks.sshd_up
        if news and self.asked_after != marks:
            return True
        if marks.boot:
            self.marks_seen.set()
        if self.marks_seen.is_set() and not self.marked:  # the image prints marks: no need to try before they say so
            self.marked = True
            self.next_try = max(self.next_try, time.monotonic() + MARKED_TRIES[0])
        elif self.console.kernel_seen and not self.booting and not self.marked:
            self.booting = True
            self.next_try = max(self.next_try, self.started + BOOTING_TRIES[0])
        return time.monotonic() >= self.next_try

    def unasked_tries(self) -> tuple[float, float]:
        """The back-off of logins that no mark asked for: a safety net once marks flow, later
        while a kernel boots, else the plain schedule of an image without marks."""
        return MARKED_TRIES if self.marked else BOOTING_TRIES if self.booting else UNMARKED_TRIES

    def log_in(self, marks: Marks, pid: int | None) -> Readiness | None:
        """One login: a result when it settles the wait, None to wait on."""
        wants_cloud_init = self.until == ReadyWhen.CLOUD_INIT
        done = ssh_run(self.cluster, self.vm, CLOUD_INIT_STATUS if wants_cloud_init else "true", max(5.0, self.deadline - time.monotonic()), self.stop)
        self.logins += 1
        self.asked_after = marks
        worked, state, why, said = login_outcome(done, self.until)
        schedule = RETRY_TRIES if marks.sshd_up and not self.ssh_ok else self.unasked_tries()
        self.next_try = time.monotonic() + backoff(self.tries, schedule)
        self.tries += 1
        if not worked:
            self.reason = said
            return None
        proof = Proof(pid, marks.boot or "", self.console.offset) if pid is not None else None
        if not self.ssh_ok:
            self.ssh_ok, self.tries = True, 0
            self.next_try = time.monotonic() + backoff(0, self.unasked_tries())
            if proof:
                remember_answer(self.cluster, self.vm, proof)
        if not wants_cloud_init or state in ("done", "disabled", "absent"):
            self.cloud_init = state
            if proof and wants_cloud_init:
                remember_cloud_init_done(self.cluster, self.vm, replace(proof, cloud_init=state))
            return self.result(True)
        if state == "error":
            self.cloud_init = "error"
            return self.result(False, "cloud-init failed: " + " | ".join(why))
        self.reason = "cloud-init still running" + (": " + " | ".join(why) if why else "")
        return None


def halted(cluster: Cluster, vm: VM, pid: int | None, since_start: float, why_stopped: Callable[[str], str]) -> str | None:
    """Why the VM's guest will never answer, if it will not: its qemu is gone or stopped it."""
    if pid is None and since_start > 2 and not vm_state(cluster, vm).running:
        words = why_stopped(vm.name)
        return "qemu is not running" + (f"; it said: {words}" if words else "")
    if pid is not None:
        said = run_state(cluster, vm)
        if said in HALTED:
            return HALTED[said]
    return None


def proved_already(cluster: Cluster, vm: VM, pid: int | None, marks: Marks, until: ReadyWhen) -> tuple[bool, str]:
    """What this qemu's guest proved before, in the boot it is in now: (SSH, how cloud-init
    ended: '' when that was not proved or is not asked)."""
    if pid is None:
        return False, ""
    same_boot = lambda proof: proof is not None and (proof.boot == (marks.boot or ""))  # noqa: E731
    ssh = same_boot(answered_before(cluster, vm, pid))
    cloud_init = cloud_init_done_before(cluster, vm, pid) if ssh and until == ReadyWhen.CLOUD_INIT else None
    return ssh, cloud_init.cloud_init or "done" if same_boot(cloud_init) else ""


def wait_for_vm(
    cluster: Cluster, vm: VM, until: ReadyWhen, started: float, deadline: float, stop: threading.Event,
    report: Callable[[str, Readiness], None], why_stopped: Callable[[str], str], marks_seen: threading.Event | None = None,
) -> Readiness:  # fmt: skip
    """Wait for one VM; `report` hears of each stage ("ssh", then "cloud-init") as it settles;
    `marks_seen` is shared by the VMs of one wait (see VMWait)."""
    wait = VMWait(cluster, vm, until, started, deadline, stop, marks_seen)
    pid = qemu_pid(cluster, vm)  # None for a qemu kubenet did not start (`invoke vm`): seen by its disk lock
    ssh, cloud_init = proved_already(cluster, vm, pid, wait.console.read(), until)
    if ssh:
        wait.ssh_ok = True
        report("ssh", wait.result(True))
        if until != ReadyWhen.CLOUD_INIT or cloud_init:
            wait.cloud_init = cloud_init
            return wait.result(True)
    asked = 0.0
    while time.monotonic() < deadline and not stop.is_set():
        pid = qemu_pid(cluster, vm)
        if time.monotonic() - asked >= STATE_POLL_SECONDS:
            asked = time.monotonic()
            why = halted(cluster, vm, pid, wait.now(), why_stopped)
            if why:
                return wait.result(False, why)
        marks = wait.console.read()
        if wait.due(marks):
            had_ssh = wait.ssh_ok
            settled = wait.log_in(marks, pid)
            if wait.ssh_ok and not had_ssh:
                report("ssh", wait.result(True))
            if settled is not None:
                return settled
        stop.wait(POLL_SECONDS)
    return wait.result(False, f"timed out ({wait.reason})")


def wait_ready(
    cluster: Cluster,
    vms: list[VM],
    timeout: float,
    report: Callable[[str, Readiness], None],
    until: ReadyWhen = ReadyWhen.SSH,
    why_stopped: Callable[[str], str] = lambda vm: "",
) -> list[Readiness]:
    """Wait for every VM in parallel; `report` hears of each stage ("ssh", then "cloud-init") as it settles.
    A Ctrl-C ends every wait at once (their logins killed)."""
    started = time.monotonic()
    deadline = started + timeout
    lock = threading.Lock()  # one report at a time
    stop = threading.Event()
    marks_seen = threading.Event()  # the VMs share one image and kubenet's seed: one's marks say the others' will come

    def told(stage: str, result: Readiness) -> None:
        with lock:
            report(stage, result)

    def watch(vm: VM) -> Readiness:
        result = wait_for_vm(cluster, vm, until, started, deadline, stop, told, why_stopped, marks_seen)
        if until == ReadyWhen.CLOUD_INIT and (result.ready or result.cloud_init == "error"):
            told("cloud-init", result)
        elif not result.ready:
            told("ssh", result)
        return result

    return for_each(vms, watch, stop=stop, grace=STOP_GRACE_SECONDS)


STOP_GRACE_SECONDS = 0.5  # after a Ctrl-C: every wait sleeps on `stop` and its login is killed at once


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
