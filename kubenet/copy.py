"""`invoke cp`: files and directories to and from VMs, as `limactl copy` and `multipass
transfer` do, with scp over the cluster's ssh_config (so through the pinned host keys).

`SRC VM:DEST` copies to one VM, `VM:SRC DEST` from it; with `--role`/`--all` the VM side
is written `:PATH` and each chosen VM is copied to, or from, in parallel (from several
VMs, each VM's copy goes into DEST/<vm>/). A directory is copied whole (`scp -r`).

scp speaks the SFTP protocol (OpenSSH 9.0's default; `-s` from 8.7 asks for it): paths
go to the VM as they are written, never through its shell, so spaces and quotes in them
need no escaping. The guest needs an SFTP server, as every cloud image has.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import errors
from .cluster import VM, Cluster

EVERY_CHOSEN = ""  # the VM part of `:PATH`: each VM that --role/--all chose
COPY_TIMEOUT = 3600.0  # a copy of a large directory may take long; a hung one not for ever
USAGE = "e.g. `invoke cp ca.pem control0:/tmp/`, `invoke cp worker1:/var/log/syslog .`, `invoke cp --role control ca.pem :/tmp/`"


class CopyError(errors.KubenetError):
    """A copy cannot be done as asked."""


@dataclass(frozen=True)
class Side:
    vm: str | None  # None: this host; EVERY_CHOSEN: each chosen VM; else a VM's name
    path: str


def parse_side(text: str) -> Side:
    """`VM:PATH` or `:PATH` is a VM's side, as scp reads it: a colon before any slash.
    Anything else (`./a:b` too) is a path on this host."""
    head, colon, rest = text.partition(":")
    if not colon or "/" in head:
        return Side(None, text)
    return Side(head, rest)


@dataclass(frozen=True)
class Copy:
    """One scp run: `to_vm` or from it, `local` on this host and `remote` on the VM."""

    vm: str
    to_vm: bool
    local: str
    remote: str


def plan(source: str, destination: str, names: list[str], chosen: list[str] | None) -> list[Copy]:
    """The copies `invoke cp SOURCE DESTINATION` makes. `names` are the cluster's VMs;
    `chosen` the VMs --role/--all picked (None: neither given)."""
    src, dest = parse_side(source), parse_side(destination)
    if (src.vm is None) == (dest.vm is None):
        raise CopyError(
            "one side of a copy must be a VM's (`VM:PATH`, or `:PATH` with --role/--all) and the other this host's", USAGE
        )
    remote, local = (src, dest) if src.vm is not None else (dest, src)
    if not remote.path:
        raise CopyError(f"no path on the VM side of {source if remote is src else destination!r}", "write `VM:PATH`, e.g. control0:/tmp/")
    if not local.path:
        raise CopyError("the path on this host is empty", USAGE)
    if remote.vm == EVERY_CHOSEN and chosen is None:
        raise CopyError("`:PATH` copies to or from the VMs --role or --all chooses, and neither was given", USAGE)
    if remote.vm != EVERY_CHOSEN and chosen is not None:
        raise CopyError(f"--role/--all choose the VMs, and {remote.vm}: names one too", "write the VM side as `:PATH`")
    if remote.vm not in (EVERY_CHOSEN, *names):
        raise CopyError(f"no VM named {remote.vm!r}; names are {', '.join(names)}", "`invoke ls` lists them")
    vms = chosen if remote.vm == EVERY_CHOSEN else [remote.vm]
    to_vm = remote is dest
    fan_in = not to_vm and len(vms) > 1
    return [Copy(vm, to_vm, os.path.join(local.path, vm) if fan_in else local.path, remote.path) for vm in vms]


def sftp_option(version_line: str) -> list[str] | None:
    """What makes this host's scp speak SFTP, from `ssh -V`: nothing from OpenSSH 9.0,
    `-s` from 8.7; None for an older scp, which only has the old protocol."""
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", version_line)
    if not found:
        return []  # not OpenSSH's numbering: take its default
    version = (int(found[1]), int(found[2]))
    return [] if version >= (9, 0) else ["-s"] if version >= (8, 7) else None


def scp_argv(config: Path, copy: Copy, protocol: list[str]) -> list[str]:
    remote = f"{copy.vm}:{copy.remote}"
    ends = [copy.local, remote] if copy.to_vm else [remote, copy.local]
    # `--`: a local path that starts with '-' is a path, not an option
    return ["scp", "-F", str(config), *protocol, "-r", "-q", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "--", *ends]


def landing(copy: Copy) -> Path:
    """Where a copy from a VM arrives on this host: into DEST when it is a directory."""
    local = Path(copy.local)
    return local / os.path.basename(copy.remote.rstrip("/")) if local.is_dir() else local


def check_local(copies: list[Copy], force: bool) -> None:
    """What must be so on this host before anything is copied: what goes to a VM exists;
    what comes from one has a directory to go into, and replaces nothing unless `force`."""
    for copy in copies:
        if copy.to_vm:
            if not os.path.lexists(copy.local):
                raise CopyError(f"{copy.local} does not exist", "give a file or directory on this host")
            continue
        if not Path(copy.local).parent.is_dir():
            raise CopyError(f"{Path(copy.local).parent} is not a directory on this host", "make it first, or copy into an existing directory")
        if os.path.lexists(landing(copy)) and not force:
            raise CopyError(f"{landing(copy)} exists; nothing was copied", "--force to replace it, or copy elsewhere")


def make_fan_in_directories(copies: list[Copy]) -> None:
    """From several VMs, each VM's copy goes into DEST/<vm>/, which DEST must hold."""
    if len(copies) < 2 or copies[0].to_vm:
        return
    destination = Path(copies[0].local).parent
    if not destination.is_dir():
        raise CopyError(f"{destination} is not a directory on this host", "from several VMs, each VM's copy goes into DEST/<vm>/: give a directory")
    for copy in copies:
        Path(copy.local).mkdir(exist_ok=True)


def copy_all(cluster: Cluster, vms: list[VM] | None, source: str, destination: str, say, force: bool = False) -> list[str]:
    """Make the copies in parallel, a line per VM; the names of the VMs whose copy failed.
    `vms`: those --role/--all chose (None: neither was given); `force`: what comes from a
    VM may replace a file here."""
    from .parallel import for_each
    from .process import run
    from .ssh import SSH_HINT, existing_config

    copies = plan(source, destination, [vm.name for vm in cluster.vms], None if vms is None else [vm.name for vm in vms])
    config = existing_config(cluster)
    protocol = sftp_option(run(["ssh", "-V"], missing_hint=SSH_HINT).stderr)
    if protocol is None:
        raise CopyError("this host's scp is older than OpenSSH 8.7 and cannot speak SFTP", "update OpenSSH")
    check_local(copies, force)
    make_fan_in_directories(copies)

    def one(copy: Copy) -> str | None:
        try:
            done = run(scp_argv(config, copy, protocol), check=False, timeout=COPY_TIMEOUT, missing_hint=SSH_HINT)
        except errors.KubenetError as error:
            say(f"kubenet: cp: {copy.vm}: {error.message}")
            return copy.vm
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        if done.code:
            say(f"kubenet: cp: {copy.vm}: {said[-1] if said else f'scp exited {done.code}'}")
            return copy.vm
        say(f"kubenet: cp: {copy.vm}: " + (f"copied {copy.local} to {copy.remote}" if copy.to_vm else f"copied {copy.remote} to {copy.local}"))
        return None

    return [vm for vm in for_each(copies, one) if vm]
