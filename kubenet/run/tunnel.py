"""Host ports into the cluster (`forward:` in cluster.yaml, `invoke tunnel`).

In rootless user mode the host is not on the cluster's segment: nothing on it reaches
the API at kubernetes:6443, a NodePort or a MetalLB address. A tunnel is one ssh
connection to the cluster's first VM (the tutorial's gateway), through the pinned host
keys of the generated ssh_config, forwarding each chosen port of the host's loopback to
its HOST:PORT as that VM resolves and reaches it (`ssh -L`). It is an ssh control
master on a socket in state_dir: `ssh -O check` says whether it runs and `ssh -O exit`
ends it, so kubenet never has to find or signal a process by pid. `up` starts it once
the VMs are ready, `down` ends it, `ls` shows it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from ..model.cluster import VM, Cluster, Forward
from ..model.paths import MAX_SOCKET_PATH, runtime_dir, ssh_config_path
from ..plumbing import errors

KEEPALIVE = ["-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]


def via(cluster: Cluster) -> VM:
    """The VM every tunnel goes through: the first one, the tutorial's gateway."""
    return cluster.vms[0]


def socket_path(cluster: Cluster) -> Path:
    own = cluster.state_dir.absolute() / "tunnel.sock"
    if len(str(own)) <= MAX_SOCKET_PATH:
        return own
    return runtime_dir() / f"tunnel-{hashlib.sha256(str(own).encode()).hexdigest()[:16]}.sock"


def ssh_path_value(path: Path) -> str:
    """ssh expands %-tokens in a control path: a literal % is written %%."""
    return str(path).replace("%", "%%")


def forward_options(forwards: tuple[Forward, ...]) -> list[str]:
    """`-L` for each forward, bound to the loopback only: the cluster is not the LAN's."""
    return [option for forward in forwards for option in ("-L", f"127.0.0.1:{forward.port}:{forward.to_host}:{forward.to_port}")]


def control_argv(cluster: Cluster, *options: str) -> list[str]:
    return ["ssh", "-F", str(ssh_config_path(cluster).absolute()), "-S", ssh_path_value(socket_path(cluster)), *options, via(cluster).name]


def master_argv(cluster: Cluster) -> list[str]:
    """The tunnel: a control master that forks once every forward is bound, runs no command,
    and gives up (rather than forward nothing) when a port cannot be bound."""
    return control_argv(
        cluster, "-M", "-f", "-N", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ExitOnForwardFailure=yes",
        *KEEPALIVE, *forward_options(cluster.forward),
    )  # fmt: skip


def running(cluster: Cluster) -> bool:
    from ..plumbing.process import run

    if not cluster.forward or not socket_path(cluster).exists():
        return False
    return run(control_argv(cluster, "-O", "check"), check=False, timeout=10).code == 0


def start(cluster: Cluster, say: Callable[[str], None]) -> None:
    """Start the tunnel unless it runs; a port the host cannot bind is one line with a hint."""
    from ..plumbing.fsutil import private_dir
    from ..plumbing.process import run_leaving_daemon
    from ..model.network import SSH_HINT

    if not cluster.forward:
        raise errors.SetupError(f"{cluster.source} forwards no port", "add e.g. forward: [{port: 6443, to: 'kubernetes:6443'}]")
    if running(cluster):
        say(f"kubenet: tunnel through {via(cluster).name}: already running: {shown(cluster)}")
        return
    socket = socket_path(cluster)
    if socket.parent != cluster.state_dir.absolute():
        private_dir(socket.parent)
    socket.unlink(missing_ok=True)  # a master that died leaves its socket behind
    done = run_leaving_daemon(master_argv(cluster), cluster.state_dir / "tunnel.log", check=False, timeout=60, missing_hint=SSH_HINT)
    if done.code != 0:
        said = [line for line in done.stderr.splitlines() if line.strip()]
        reason = next((line for line in said if "bind" in line or "forwarding" in line), said[-1] if said else f"ssh exited with {done.code}")
        raise errors.LaunchError(
            f"the tunnel through {via(cluster).name} did not start: {reason.strip()}",
            "a port another program holds: choose another in forward:; else is the VM up? (`invoke ls`)",
        )
    say(f"kubenet: tunnel through {via(cluster).name}: {shown(cluster)}")


def stop(cluster: Cluster, say: Callable[[str], None]) -> None:
    from ..plumbing.process import run

    if not running(cluster):
        return
    run(control_argv(cluster, "-O", "exit"), check=False, timeout=10)
    socket_path(cluster).unlink(missing_ok=True)
    say(f"kubenet: tunnel through {via(cluster).name}: stopped")


def shown(cluster: Cluster) -> str:
    return ", ".join(str(forward) for forward in cluster.forward)


def note(cluster: Cluster) -> str | None:
    """What `ls` says of the tunnel, when cluster.yaml asks for one."""
    if not cluster.forward:
        return None
    if running(cluster):
        return f"kubenet: tunnel through {via(cluster).name}: running, {shown(cluster)}"
    return f"kubenet: tunnel through {via(cluster).name}: not running (`invoke tunnel` starts it): {shown(cluster)}"


def command(cluster: Cluster, end: bool, say: Callable[[str], None]) -> None:
    """`invoke tunnel`: start it, or (`end`) stop it."""
    if not end:
        start(cluster, say)
        return
    if not running(cluster):
        say("kubenet: no tunnel is running")
    stop(cluster, say)
