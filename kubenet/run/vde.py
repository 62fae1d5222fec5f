"""The rootless cluster segment: one vde_switch per cluster, started when a VM needs it.

The switch answers on a management socket which qemus are plugged into it (by pid):
a VM whose qemu outlived a switch that died is running but cut off from the cluster,
as qemu never reconnects its VDE cable; `ls` and `up` say so.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

from ..model.cluster import Cluster
from ..model.paths import vde_socket_path
from ..plumbing import errors
from ..plumbing.fsutil import locked, private_dir, private_umask
from ..plumbing.process import kill, mentions, own_pid, run
from ..store.statedir import check_private, ensure_state


def pid_file(cluster: Cluster) -> Path:
    return cluster.state_dir / "vde.pid"


def running_pid(cluster: Cluster) -> int | None:
    """The switch's pid if it is alive, provably our switch, and its control socket exists."""
    if not (vde_socket_path(cluster) / "ctl").exists():
        return None
    return own_pid(pid_file(cluster), str(pid_file(cluster)), lambda: True)


def mgmt_path(cluster: Cluster) -> Path:
    """The switch's management socket, beside its control directory."""
    return vde_socket_path(cluster).with_suffix(".mgmt")


def switch_argv(cluster: Cluster) -> list[str]:
    return [
        "vde_switch",
        "--sock", str(vde_socket_path(cluster)),
        "--mgmt", str(mgmt_path(cluster)),
        "--mgmtmode", "0600",
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
        check_room(cluster.state_dir)
        pid_file(cluster).unlink(missing_ok=True)
        with private_umask():  # its pid file and control socket are the cluster's private files
            run(switch_argv(cluster), missing_hint="install vde2 (`apt install vde2`, `brew install vde`) or use network.mode: bridge")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = running_pid(cluster)
            if pid:
                return pid
            time.sleep(0.02)
    check_room(cluster.state_dir)  # the likeliest reason: it could not write its pid file
    raise errors.LaunchError(f"vde_switch did not come up within {timeout} s at {vde_socket_path(cluster)}")


MIN_FREE_BYTES = 64 << 10


def check_room(directory: Path) -> None:
    from ..plumbing.fsutil import free_bytes

    if free_bytes(directory) < MIN_FREE_BYTES:
        raise errors.HostError(f"no space left on {directory}", "free some space on that file system, or move state_dir elsewhere")


def connected_pids(cluster: Cluster, timeout: float = 1.0) -> set[int] | None:
    """The pids of the programs plugged into the cluster's switch (qemus, cables): none when
    it does not run; None when it runs but does not say (an older kubenet started it
    without a management socket)."""
    if running_pid(cluster) is None:
        return set()
    try:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(timeout)
            connection.connect(str(mgmt_path(cluster)))
            _read_until(connection, b"vde$ ")
            connection.sendall(b"port/allprint\n")
            text = _read_until(connection, b"vde$ ").decode(errors="replace")
    except OSError:
        return None
    return {int(pid) for pid in re.findall(r"\bpid=(\d+)", text)}


def plug_state(cluster: Cluster, plugged: set[int] | None, pid: int | None) -> str | None:
    """User mode: whether a running VM's qemu is plugged into the cluster's switch ("connected"),
    was started on it and lost it ("cut off"); None where that is not known (a switch that does
    not say, no pid, a qemu started by hand without the switch: the user's choice)."""
    if plugged is None or pid is None:
        return None
    if pid in plugged:
        return "connected"
    return "cut off" if mentions(pid, str(vde_socket_path(cluster))) else None


def _read_until(connection: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    while marker not in data:
        chunk = connection.recv(65536)
        if not chunk or len(data) > limit:
            raise OSError("the VDE switch's management socket closed")
        data += chunk
    return data


def stop_switch(cluster: Cluster) -> bool:
    pid = running_pid(cluster)
    if pid is None:
        return False
    kill(pid, signal.SIGTERM)
    pid_file(cluster).unlink(missing_ok=True)
    mgmt_path(cluster).unlink(missing_ok=True)
    return True


CUT_OFF = "running but cut off from the cluster network (its VDE switch stopped after it started; qemu does not reconnect):"


def restart_hint(name: str) -> str:
    return f"restart it: invoke restart --name {name}"
