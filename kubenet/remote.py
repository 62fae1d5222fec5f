"""Commands on VMs over SSH: one interactive session, or one command on many VMs at once."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import TextIO

from .cluster import VM, Cluster
from .ready import ssh_argv


@dataclass(frozen=True)
class RemoteResult:
    vm: str
    exit_code: int


def run_everywhere(cluster: Cluster, vms: list[VM], command: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> list[RemoteResult]:
    """Run `command` on every VM in parallel; each output line comes out as `<vm>: <line>`.

    When our output is closed (`invoke exec -- ... | head -1`), every ssh is
    stopped and BrokenPipeError is raised, as a single program's would be.
    """
    import sh

    lock = threading.Lock()
    closed = threading.Event()
    width = max(len(vm.name) for vm in vms)

    def printer(vm: VM, stream: TextIO):
        def line(text: str) -> bool | None:
            try:
                with lock:
                    stream.write(f"{vm.name + ':':<{width + 1}} {text.rstrip(chr(10))}\n")
                    stream.flush()
            except (BrokenPipeError, ValueError):  # ValueError: the stream was closed here
                closed.set()
                return True  # sh calls this printer no more
            return None

        return line

    running = []
    for vm in vms:
        argv = ssh_argv(cluster, vm, command)
        process = sh.Command(argv[0])(
            *argv[1:], _out=printer(vm, out), _err=printer(vm, err), _bg=True, _ok_code=range(256), _in=None, _bg_exc=False
        )
        running.append((vm, process))
    while not closed.is_set() and any(process.is_alive() for _, process in running):
        closed.wait(POLL_SECONDS)
    if closed.is_set():
        stop_all([process for _, process in running])
        raise BrokenPipeError("output closed")
    return [RemoteResult(vm.name, _exit_code(process)) for vm, process in running]


POLL_SECONDS = 0.05


def stop_all(processes: list) -> None:
    """Stop the ssh processes (their remote commands get SIGHUP as the connection closes)."""
    for process in processes:
        if process.is_alive():
            try:
                process.terminate()
            except OSError:
                pass
    for process in processes:
        _exit_code(process)


def _exit_code(process) -> int:
    import sh

    try:
        process.wait()
    except sh.SignalException as signalled:
        return 128 + abs(signalled.exit_code)
    except sh.ErrorReturnCode as failed:
        return failed.exit_code
    return process.exit_code
