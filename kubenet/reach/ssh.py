"""SSH to the VMs: one interactive session, and a command run on many VMs at once. (The
ssh command line is built by model.network.ssh_argv; the `<cluster>-ssh` tmux session is
sshall.py's.)

Every connection goes through the cluster's generated ssh_config, which pins
each VM's host key.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import BinaryIO, Callable

from ..model.cluster import VM, Cluster
from ..model.network import SSH_HINT, ssh_argv
from ..prepare.sshkeys import existing_config


def ssh_one(cluster: Cluster, vm: VM, command: str | None = None) -> None:
    """An interactive session, or `command` run as `ssh host command` runs it, with its exit
    status: ssh replaces this process, and may ask for a key's passphrase."""
    from ..plumbing.process import replace_process

    replace_process(ssh_argv(existing_config(cluster), vm.name, command or None), SSH_HINT)


@dataclass(frozen=True)
class RemoteResult:
    vm: str
    exit_code: int
    lost_lines: int = 0  # output lines that could not be written: the run does not count as a success

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.lost_lines


POLL_SECONDS = 0.05


def run_everywhere(
    cluster: Cluster, vms: list[VM], command: str, stdin: bytes = b"", out: BinaryIO | None = None, err: BinaryIO | None = None
) -> list[RemoteResult]:
    """Run `command` on every VM in parallel; each output line comes out as `<vm>: <line>`,
    its bytes as the VM sent them. The remote command reads `stdin` (none: it sees the end
    of its input at once, so nothing waits for a keyboard that is not there).

    When our output is closed (`invoke exec -- ... | head -1`), every ssh is
    stopped and BrokenPipeError is raised, as a single program's would be; when
    this process is interrupted or terminated, every ssh is stopped too.
    """
    from ..plumbing.process import end_all, held_signals, start

    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    config = existing_config(cluster)
    lock = threading.Lock()
    closed = threading.Event()
    width = max(len(vm.name) for vm in vms)
    lost = {vm.name: 0 for vm in vms}

    def printer(vm: VM, stream: BinaryIO) -> Callable[[str], bool | None]:
        prefix = f"{vm.name + ':':<{width + 1}} ".encode()

        def line(text: str) -> bool | None:
            try:
                with lock:
                    stream.write(prefix + text.rstrip("\n").encode("utf-8", "surrogateescape") + b"\n")
                    stream.flush()
            except (BrokenPipeError, ValueError):  # ValueError: the stream was closed here
                closed.set()
                return True  # no more lines for this printer
            except Exception:
                lost[vm.name] += 1  # said in the summary; never a silent success
            return None

        return line

    running = []
    try:
        with held_signals():  # a signal now is acted on once every ssh is counted, to be stopped below
            for vm in vms:
                running.append((vm, start(ssh_argv(config, vm.name, command, batch=True), printer(vm, out), printer(vm, err), stdin)))
        while not closed.is_set() and any(process.alive() for _, process in running):
            closed.wait(POLL_SECONDS)
    finally:
        if closed.is_set() or sys.exc_info()[0] is not None:
            end_all([process for _, process in running])  # the remote command gets SIGHUP as its connection closes
    if closed.is_set():
        raise BrokenPipeError("output closed")
    return [RemoteResult(vm.name, process.wait(), lost[vm.name]) for vm, process in running]


def exec_summary(results: list[RemoteResult]) -> str:
    failed = [result for result in results if not result.succeeded]
    return f"kubenet: exec: {len(results) - len(failed)} of {len(results)} VMs succeeded" + "".join(
        f"; {result.vm} exited {result.exit_code}" + (f" and {result.lost_lines} lines of its output were lost" if result.lost_lines else "")
        for result in failed
    )


def exec_command(cluster: Cluster, vms: list[VM], command: str, pass_stdin: bool, say: Callable[[str], None]) -> bool:
    """`exec`: the command on every VM at once, its summary said; True if every VM succeeded."""
    from ..plumbing import errors

    if not command.strip():
        raise errors.KubenetError("no command given", "put it after `--`, e.g. invoke exec --role worker -- uname -a")
    results = run_everywhere(cluster, vms, command, sys.stdin.buffer.read() if pass_stdin else b"")
    say(exec_summary(results))
    return all(result.succeeded for result in results)
