"""Is a VM running? Its qemu answers on the QMP socket in its state directory."""

from __future__ import annotations

import socket
from pathlib import Path

from .cluster import VM, Cluster
from .paths import vm_paths


def socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False


def is_running(cluster: Cluster, vm: VM) -> bool:
    return socket_answers(vm_paths(cluster, vm).qmp)
