"""What every change `hostnet` makes to the host has in common: where the host's files are,
the base class of a piece (its check, add and remove side by side), and blocks of lines
kubenet writes between markers into a system file of the host's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..model.cluster import Cluster

STATE_ENV = "KUBENET_HOSTNET_DIR"


@dataclass(frozen=True)
class Places:
    root: Path = Path("/")  # where qemu's bridge helper is looked for
    hosts: Path = Path("/etc/hosts")
    bridge_conf: Path = Path("/etc/qemu/bridge.conf")
    forwarding: Path = Path("/proc/sys/net/ipv4/ip_forward")
    exports: Path = Path("/etc/exports")  # macOS's nfsd
    state: Path = Path("/var/lib/kubenet")
    systemd: Path = Path("/etc/systemd/system")  # the boot unit (`--persist`)


def places(environ: Mapping[str, str] = os.environ) -> Places:
    return Places(state=Path(environ[STATE_ENV])) if environ.get(STATE_ENV) else Places()


class Piece:
    """One change to the host: whether it is in place, how to make it, how to unmake it.

    `record` is what hostnet remembers of this cluster between runs (what it added,
    what it found); a piece may note there what its removal needs to know."""

    key = ""

    def __init__(self, cluster: Cluster, where: Places, record: dict):
        self.cluster, self.network, self.where, self.record = cluster, cluster.network, where, record

    def describe(self) -> str:
        raise NotImplementedError

    def present(self) -> bool:
        raise NotImplementedError

    def check(self) -> None:
        """Refuse, before anything is made, what adding this piece would take from someone else."""

    def add(self) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        raise NotImplementedError


def markers(cluster: Cluster) -> tuple[str, str]:
    return f"# BEGIN kubenet {cluster.name}", f"# END kubenet {cluster.name}"


def with_block(text: str, cluster: Cluster, lines: list[str]) -> str:
    """`text` (a system file) with `lines` between the cluster's markers, in place of an older block."""
    begin, end = markers(cluster)
    block = "\n".join([begin, *lines, end]) + "\n"
    rest = without_block(text, cluster)
    return rest + ("" if not rest or rest.endswith("\n") else "\n") + block


def without_block(text: str, cluster: Cluster) -> str:
    begin, end = markers(cluster)
    lines, kept, inside = text.splitlines(keepends=True), [], False
    for line in lines:
        if line.rstrip("\n") == begin:
            inside = True
        elif line.rstrip("\n") == end and inside:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def write_in_place(path: Path, text: str) -> None:
    """Rewrite a system file keeping its inode (it may be bind-mounted, like /etc/hosts in a container)."""
    with open(path, "r+" if path.exists() else "w") as stream:
        stream.write(text)
        stream.truncate()
