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
    """Run `command` on every VM in parallel; each output line comes out as `<vm>: <line>`."""
    import sh

    lock = threading.Lock()
    width = max(len(vm.name) for vm in vms)

    def printer(vm: VM, stream: TextIO):
        def line(text: str) -> None:
            with lock:
                stream.write(f"{vm.name + ':':<{width + 1}} {text.rstrip(chr(10))}\n")
                stream.flush()

        return line

    running = []
    for vm in vms:
        argv = ssh_argv(cluster, vm, command)
        process = sh.Command(argv[0])(
            *argv[1:], _out=printer(vm, out), _err=printer(vm, err), _bg=True, _ok_code=range(256), _in=None, _bg_exc=False
        )
        running.append((vm, process))
    results = []
    for vm, process in running:
        process.wait()
        results.append(RemoteResult(vm.name, process.exit_code))
    return results
