"""The cluster's other hosts (`hosts:`), reached over SSH.

Each host has a block in the cluster's ssh_config under an alias of its own, with
ssh's connection sharing (ControlMaster): every command kubenet runs there, and every
ProxyJump to a VM there, goes over one connection per host. What runs there is only
kubenet's own program, its arguments quoted, and every answer is awaited for a bounded
time, so a host that does not answer is said to be unreachable instead of hanging the
command that asked.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import errors
from .cluster import Cluster, RemoteHost
from .paths import runtime_dir, ssh_config_path

ALIAS_PREFIX = "kubenet-host."  # VM names hold no dot, so no alias is a VM's
CONNECT_SECONDS = 5
# A connection whose host went silent is given up after ALIVE_SECONDS * ALIVE_COUNT.
ALIVE_SECONDS, ALIVE_COUNT = 2, 3
PERSIST_SECONDS = 60  # the shared connection outlives the last command by this much
UNREACHABLE = 255  # ssh's own exit code when the connection fails


def host_alias(host: RemoteHost) -> str:
    return ALIAS_PREFIX + host.name


def control_path(cluster: Cluster, host: RemoteHost) -> Path:
    """The shared connection's socket: in state_dir, or where that path would be too long for
    a socket (ssh adds a random suffix while it makes it: MAX_SOCKET_PATH leaves room), in the user's runtime directory."""
    from .tunnel import MAX_SOCKET_PATH

    own = cluster.state_dir.absolute() / f"host-{host.name}.sock"
    if len(str(own)) <= MAX_SOCKET_PATH:
        return own
    return runtime_dir() / f"host-{hashlib.sha256(str(own).encode()).hexdigest()[:16]}.sock"


def host_block(cluster: Cluster, host: RemoteHost) -> str:
    """The host's ssh_config block; its host key is checked as the user's ssh checks it
    (their known_hosts, or the one `known_hosts:` names), never accepted unseen."""
    from .ssh import config_path_value

    user, _, address = host.destination.rpartition("@")
    lines = [f"Host {host_alias(host)}", f"  HostName {address}", f"  Port {host.port}"]
    lines += [f"  User {user}"] if user else []
    if host.identity is not None:
        lines += [f"  IdentityFile {config_path_value(host.identity)}", "  IdentitiesOnly yes"]
    if host.known_hosts is not None:
        lines += [f"  UserKnownHostsFile {config_path_value(host.known_hosts)}"]
    lines += [
        "  StrictHostKeyChecking yes",
        "  ControlMaster auto",
        f"  ControlPath {config_path_value(control_path(cluster, host))}",
        f"  ControlPersist {PERSIST_SECONDS}",
        f"  ConnectTimeout {CONNECT_SECONDS}",
        f"  ServerAliveInterval {ALIVE_SECONDS}",
        f"  ServerAliveCountMax {ALIVE_COUNT}",
    ]
    return "".join(f"{line}\n" for line in lines)


def remote_config(cluster: Cluster, host: RemoteHost) -> str:
    """The cluster file's path on that host, as kubenet there is given it."""
    return f"{host.directory(cluster.name)}/cluster.yaml"


def remote_command(cluster: Cluster, host: RemoteHost, task: str, *args: str) -> str:
    """kubenet's own command there, every word quoted for the remote shell."""
    return shlex.join([host.kubenet, task, "--config", remote_config(cluster, host), *args])


def host_ssh_argv(cluster: Cluster, host: RemoteHost, command: str, shared: bool = True) -> list[str]:
    """ssh to the host through the cluster's ssh_config; never a prompt. `shared`: over the
    host's shared connection (a long-lived cable has one of its own instead)."""
    options = ["-o", "BatchMode=yes"] + ([] if shared else ["-o", "ControlPath=none"])
    return ["ssh", "-F", str(ssh_config_path(cluster).absolute()), *options, host_alias(host), command]


@dataclass(frozen=True)
class Answer:
    """What a host said to one command: its exit code (None: no answer in time)."""

    host: str
    code: int | None
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def reachable(self) -> bool:
        return self.code is not None and self.code != UNREACHABLE

    def reason(self) -> str:
        """One line: kubenet's error there, or ssh's, or the silence."""
        if self.code is None:
            return "no answer in time"
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        errors_said = [line for line in lines if line.startswith("kubenet: error:")]
        line = (errors_said or lines or [f"exit code {self.code}"])[-1]
        return line.removeprefix("kubenet: error: ")


def run_on(
    cluster: Cluster,
    host: RemoteHost,
    task: str,
    *args: str,
    timeout: float,
    input: bytes = b"",
    relay: Callable[[str], None] | None = None,
) -> Answer:
    """kubenet `task` on the host; its stderr lines go to `relay` as they come (a long `up`
    shows its progress), or are kept in the answer. Killed past `timeout` seconds."""
    from .fsutil import private_dir
    from .process import start

    if not ssh_config_path(cluster).is_file():
        raise errors.SetupError(f"{ssh_config_path(cluster)} does not exist, which reaches the other hosts", "run `make setup` first")
    private_dir(control_path(cluster, host).parent)  # ssh makes its control socket there, and needs the directory
    out: list[str] = []
    err: list[str] = []

    def said(line: str) -> None:
        err.append(line)
        if relay is not None:
            relay(line.rstrip("\n"))

    running = start(host_ssh_argv(cluster, host, remote_command(cluster, host, task, *args)), out.append, said, input)
    deadline = time.monotonic() + timeout
    while running.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if running.alive():
        running.terminate()
        running.wait()
        return Answer(host.name, None, "".join(out), "".join(err))
    return Answer(host.name, running.wait(), "".join(out), "".join(err))


def stop_shared(cluster: Cluster, host: RemoteHost) -> None:
    """End the host's shared connection (`ssh -O exit`), if one is open."""
    from .process import run

    if control_path(cluster, host).exists():
        run(["ssh", "-F", str(ssh_config_path(cluster).absolute()), "-O", "exit", host_alias(host)], check=False, timeout=10)
