"""SSH to the VMs: the one builder of ssh command lines, one interactive session, and a
command run on many VMs at once. (The `<cluster>-ssh` tmux session is sshall.py's.)

Every connection goes through the cluster's generated ssh_config, which pins
each VM's host key.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from . import errors
from .cluster import VM, Cluster
from .paths import ssh_config_path

SSH_HINT = "install OpenSSH (`apt install openssh-client`)"


def ssh_argv(config: Path, vm: str, command: str | None = None, batch: bool = False, connect_timeout: int = 5) -> list[str]:
    """ssh to `vm` through `config`; `batch` for scripts: no prompts, a bounded connect
    (ssh's ConnectTimeout covers its handshake too: the server's banner and key exchange)."""
    options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}"] if batch else []
    return ["ssh", "-F", str(config), *options, vm, *([command] if command is not None else [])]


def config_path_value(path: Path) -> str:
    """A path as ssh_config(5) reads it literally: in double quotes (a space or `#` would
    split it or start a comment), `"` and `\\` escaped, `%` doubled (IdentityFile and
    UserKnownHostsFile expand %-tokens)."""
    text = str(path).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text}"'


def existing_config(cluster: Cluster) -> Path:
    config = ssh_config_path(cluster).absolute()
    if not config.exists():
        raise errors.SetupError(f"{config} does not exist", "run `make up` (or `make setup`) first")
    return config


def ssh_one(cluster: Cluster, vm: VM, command: str | None = None) -> None:
    """An interactive session, or `command` run as `ssh host command` runs it, with its exit
    status: ssh replaces this process, and may ask for a key's passphrase."""
    from .process import replace_process

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
    from .process import end_all, held_signals, start

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
