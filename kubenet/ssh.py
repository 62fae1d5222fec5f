"""SSH to the VMs: the one builder of ssh command lines, one interactive session, and a
command run on many VMs at once. (The `<cluster>-ssh` tmux session is sshall.py's.)

Every connection goes through the cluster's generated ssh_config, which pins
each VM's host key.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from . import errors
from .cluster import VM, Cluster
from .paths import ssh_config_path

SSH_HINT = "install OpenSSH (`apt install openssh-client`)"


def ssh_argv(config: Path, vm: str, command: str | None = None, batch: bool = False) -> list[str]:
    """ssh to `vm` through `config`; `batch` for scripts: no prompts, a bounded connect."""
    options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"] if batch else []
    return ["ssh", "-F", str(config), *options, vm, *([command] if command is not None else [])]


def existing_config(cluster: Cluster) -> Path:
    config = ssh_config_path(cluster).absolute()
    if not config.exists():
        raise errors.SetupError(f"{config} does not exist", "run `make up` (or `make setup`) first")
    return config


def ssh_one(cluster: Cluster, vm: VM) -> None:
    """An interactive session: ssh replaces this process, and may ask for a key's passphrase."""
    from .process import replace_process

    replace_process(ssh_argv(existing_config(cluster), vm.name), SSH_HINT)


@dataclass(frozen=True)
class RemoteResult:
    vm: str
    exit_code: int


POLL_SECONDS = 0.05


def run_everywhere(cluster: Cluster, vms: list[VM], command: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> list[RemoteResult]:
    """Run `command` on every VM in parallel; each output line comes out as `<vm>: <line>`.

    When our output is closed (`invoke exec -- ... | head -1`), every ssh is
    stopped and BrokenPipeError is raised, as a single program's would be.
    """
    from .process import start

    config = existing_config(cluster)
    lock = threading.Lock()
    closed = threading.Event()
    width = max(len(vm.name) for vm in vms)

    def printer(vm: VM, stream: TextIO) -> Callable[[str], bool | None]:
        def line(text: str) -> bool | None:
            try:
                with lock:
                    stream.write(f"{vm.name + ':':<{width + 1}} {text.rstrip(chr(10))}\n")
                    stream.flush()
            except (BrokenPipeError, ValueError):  # ValueError: the stream was closed here
                closed.set()
                return True  # no more lines for this printer
            return None

        return line

    running = [(vm, start(ssh_argv(config, vm.name, command, batch=True), printer(vm, out), printer(vm, err))) for vm in vms]
    while not closed.is_set() and any(process.alive() for _, process in running):
        closed.wait(POLL_SECONDS)
    if closed.is_set():
        for _, process in running:
            process.terminate()  # the remote command gets SIGHUP as its connection closes
        for _, process in running:
            process.wait()
        raise BrokenPipeError("output closed")
    return [RemoteResult(vm.name, process.wait()) for vm, process in running]


def exec_summary(results: list[RemoteResult]) -> str:
    failed = [result for result in results if result.exit_code != 0]
    return f"kubenet: exec: {len(results) - len(failed)} of {len(results)} VMs succeeded" + "".join(
        f"; {result.vm} exited {result.exit_code}" for result in failed
    )
