"""The rootless cluster segment: one vde_switch per cluster, started when a VM needs it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from . import errors
from .cluster import Cluster
from .fsutil import locked, private_dir, private_umask
from .process import kill, own_pid, run
from .paths import vde_socket_path
from .statedir import check_private, ensure_state


def pid_file(cluster: Cluster) -> Path:
    return cluster.state_dir / "vde.pid"


def running_pid(cluster: Cluster) -> int | None:
    """The switch's pid if it is alive, provably our switch, and its control socket exists."""
    if not (vde_socket_path(cluster) / "ctl").exists():
        return None
    return own_pid(pid_file(cluster), str(pid_file(cluster)), lambda: True)


def switch_argv(cluster: Cluster) -> list[str]:
    return [
        "vde_switch",
        "--sock", str(vde_socket_path(cluster)),
        "--pidfile", str(pid_file(cluster)),
        "--numports", str(max(32, 2 * len(cluster.vms))),  # the default 32 ports is too few for big clusters
        "--dirmode", "0700",
        "--daemon",
    ]  # fmt: skip


def ensure_switch(cluster: Cluster, timeout: float = 5.0) -> int:
    """Start the cluster's switch unless it runs; VMs starting at once start it once."""
    ensure_state(cluster)
    sockets = vde_socket_path(cluster).parent
    if sockets != cluster.state_dir:
        private_dir(sockets)
        check_private(sockets, "kubenet's runtime directory")
    with locked(cluster.state_dir / "vde.lock"):
        pid = running_pid(cluster)
        if pid:
            return pid
        pid_file(cluster).unlink(missing_ok=True)
        with private_umask():  # its pid file and control socket are the cluster's private files
            run(switch_argv(cluster), missing_hint="install vde2 (`apt install vde2`, `brew install vde`) or use network.mode: bridge")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = running_pid(cluster)
            if pid:
                return pid
            time.sleep(0.02)
    raise errors.LaunchError(f"vde_switch did not come up within {timeout} s at {vde_socket_path(cluster)}")


def stop_switch(cluster: Cluster) -> bool:
    pid = running_pid(cluster)
    if pid is None:
        return False
    kill(pid, signal.SIGTERM)
    pid_file(cluster).unlink(missing_ok=True)
    return True
