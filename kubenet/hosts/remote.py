"""The cluster's other hosts (`hosts:`), reached over SSH.

Each host has a block in the cluster's ssh_config under an alias of its own, with
ssh's connection sharing (ControlMaster): every command kubenet runs there, and every
ProxyJump to a VM there, goes over one connection per host. What runs there is only
kubenet's own program, its arguments quoted, and every answer is awaited for a bounded
time, so a host that does not answer is said to be unreachable instead of hanging the
command that asked.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Callable

from ..model.cluster import Cluster, RemoteHost
from ..model.paths import ssh_config_path
from ..plumbing import errors
from ..prepare.sshkeys import control_path, host_alias

UNREACHABLE = 255  # ssh's own exit code when the connection fails


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
    from ..plumbing.fsutil import private_dir
    from ..plumbing.process import start

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
    from ..plumbing.process import run

    if control_path(cluster, host).exists():
        run(["ssh", "-F", str(ssh_config_path(cluster).absolute()), "-O", "exit", host_alias(host)], check=False, timeout=10)
