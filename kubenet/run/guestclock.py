"""A guest's clock set to the host's, and read back.

A guest paused for a snapshot, or returned to one, keeps the time it stopped at: etcd
leases, kubelet heartbeats and chapter 4's certificates would see time stand still, or
go back. Where the guest runs an agent (its virtio port open, as QMP tells without
waiting on the guest), the agent sets the clock; elsewhere one SSH login does: the
guest says it is ready, the host sends its time at the turn of a second (`date -s`
takes whole seconds), the guest sets it. Either way the guest's clock is then read
back, and a clock is called wrong only when it was measured wrong.
"""

from __future__ import annotations

import math
import queue
import re
import time
from dataclasses import dataclass

from ..model.cluster import VM, Cluster
from ..model.paths import ssh_config_path, vm_paths
from ..plumbing import errors

TOLERANCE_SECONDS = 2.0  # a clock read back further off than this is wrong
SSH_SECONDS = 60.0  # one login that sets the clock, however slow the guest
# The guest's side of the SSH way: ready, then the host's time on its input, set as root
# (the login user through sudo, as cloud images allow), then the clock read back.
SET_OVER_SSH = (
    "echo ready; read t; "
    'if [ "$(id -u)" = 0 ]; then date -u -s "@$t"; else sudo -n date -u -s "@$t"; fi >/dev/null 2>&1 || echo not-set; '
    "date +%s.%N"
)


class ClockError(errors.LaunchError):
    """A guest's clock could not be set or read back."""


@dataclass(frozen=True)
class ClockSet:
    vm: str
    how: str  # "agent" or "ssh"
    skew: float  # the guest's clock after setting, less the host's, in seconds

    @property
    def right(self) -> bool:
        return abs(self.skew) <= TOLERANCE_SECONDS


def read_seconds(text: str) -> float | None:
    """The time `date +%s.%N` printed: GNU date's fraction, or busybox's whole seconds (its %N is no number)."""
    found = re.match(r"\s*(\d+)(\.\d+)?", text)
    return float(found[1] + (found[2] or "")) if found else None


def set_clock(cluster: Cluster, vm: VM) -> ClockSet:
    """Set one guest's clock to the host's, through its agent if one listens, else over SSH."""
    from .guestagent import GuestAgentError, agent_listening, set_clock as set_by_agent

    paths = vm_paths(cluster, vm)
    if agent_listening(paths.qmp):
        try:
            return ClockSet(vm.name, "agent", set_by_agent(paths.guest_agent, vm.name))
        except GuestAgentError:
            pass  # an agent that stopped answering: SSH may still do
    return ClockSet(vm.name, "ssh", set_over_ssh(cluster, vm))


def set_over_ssh(cluster: Cluster, vm: VM) -> float:
    """One login: the host's time sent at the turn of a second, set, read back; the skew."""
    from ..plumbing.process import start
    from ..model.network import ssh_argv

    feed: queue.Queue = queue.Queue()
    lines: list[str] = []
    marks: list[float] = []  # when the host sent its time, and when the guest's answer came

    def heard(line: str) -> None:
        line = line.strip()
        if line == "ready" and not marks:
            whole = math.ceil(time.time())
            time.sleep(max(0.0, whole - time.time()))
            feed.put(f"{whole}\n".encode())
            feed.put(None)
            marks.append(time.time())
        elif marks:
            lines.append(line)
            marks.append(time.time())

    argv = ssh_argv(ssh_config_path(cluster).absolute(), vm.name, SET_OVER_SSH, batch=True, connect_timeout=int(SSH_SECONDS))
    said: list[str] = []
    running = start(argv, heard, said.append, input=feed)
    timer = _kill_after(running, SSH_SECONDS)
    try:
        code = running.wait()
    finally:
        timer.cancel()
        feed.put(None)
    if code != 0 or not lines:
        why = said[-1].strip() if said else f"ssh exited {code}"
        raise ClockError(f"{vm.name}: no guest agent, and its clock could not be set over SSH: {why}", SSH_CLOCK_HINT)
    if "not-set" in lines:
        raise ClockError(f"{vm.name}: no guest agent, and `date -s` was refused over SSH (no root, no sudo)", SSH_CLOCK_HINT)
    guest = read_seconds(lines[-1])
    if guest is None:
        raise ClockError(f"{vm.name}: its clock could not be read back: {lines[-1]!r}", SSH_CLOCK_HINT)
    return guest - (marks[0] + marks[-1]) / 2


SSH_CLOCK_HINT = "install qemu-guest-agent in the guest (kubenet's common template does), or set the clock: `invoke exec -- sudo date -s @$(date +%s)`"


def _kill_after(running, seconds: float):
    import threading

    timer = threading.Timer(seconds, running.terminate)
    timer.daemon = True
    timer.start()
    return timer
