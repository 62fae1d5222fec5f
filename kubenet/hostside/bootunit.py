"""The host side back after a reboot (`invoke hostnet --persist`, which `make hostnet` runs):
a systemd unit that makes kubenet's host side again at boot from the same cluster file,
as `invoke hostnet` makes it (bridge, address, forwarding, NAT, DNS and DHCP, names, pod
routes, NFS), and that `--remove` removes exactly. After a reboot the bridge, NAT, dnsmasq,
the routes and the NFS server are gone; without the unit, `make up` says the one command
that brings them back (`make hostnet`)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ..model.cluster import Cluster
from .hostpiece import STATE_ENV, Piece

WANTED_BY = "multi-user.target"


def unit_name(cluster: Cluster) -> str:
    return f"kubenet-hostnet-{cluster.name}.service"


def systemd_word(text: str) -> str:
    """One argument of ExecStart=, as systemd reads it: in double quotes, `\\` and `"` escaped,
    `%` (its specifiers) and `$` (its variables) doubled."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'


def kubenet_program() -> str:
    """The `kubenet` command beside the Python that runs this one (the checkout's .venv, or pip's)."""
    beside = Path(sys.executable).parent / "kubenet"
    return str(beside) if beside.exists() else (shutil.which("kubenet") or str(beside))


def unit_text(cluster: Cluster, program: str, state: str | None) -> str:
    """The unit: once at boot, after the network is up, `kubenet hostnet --config <cluster file>`."""
    environment = f"Environment={systemd_word(f'{STATE_ENV}={state}')}\n" if state else ""
    command = " ".join(systemd_word(word) for word in (program, "hostnet", "--config", str(cluster.source.absolute())))
    return (
        "# Written by kubenet (`invoke hostnet --persist`); `invoke hostnet --remove` removes it.\n"
        "[Unit]\n"
        f"Description=kubenet: the host side of cluster {cluster.name} (bridge, NAT, DNS, routes, NFS)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"{environment}"
        f"ExecStart={command}\n\n"
        "[Install]\n"
        f"WantedBy={WANTED_BY}\n"
    )


class BootUnit(Piece):
    key = "boot-unit"

    @property
    def unit(self) -> Path:
        return self.where.systemd / unit_name(self.cluster)

    @property
    def wanted(self) -> Path:
        return self.where.systemd / f"{WANTED_BY}.wants" / unit_name(self.cluster)

    def text(self) -> str:
        return unit_text(self.cluster, kubenet_program(), os.environ.get(STATE_ENV))

    def describe(self) -> str:
        return f"the systemd unit {self.unit}, which makes the host side again at boot"

    def present(self) -> bool:
        return self.unit.is_file() and self.unit.read_text() == self.text() and self.wanted.is_symlink()

    def add(self) -> None:
        from ..plumbing.fsutil import write_atomic

        write_atomic(self.unit, self.text().encode(), 0o644)
        self.wanted.parent.mkdir(parents=True, exist_ok=True)
        self.wanted.unlink(missing_ok=True)
        self.wanted.symlink_to(self.unit)  # what `systemctl enable` makes
        reload_systemd()

    def remove(self) -> None:
        self.wanted.unlink(missing_ok=True)
        self.unit.unlink(missing_ok=True)
        reload_systemd()


def reload_systemd() -> None:
    """Let a running systemd know; on a host without one (a container), nothing to tell."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        from ..plumbing.process import run

        run(["systemctl", "daemon-reload"], check=False, timeout=60)
