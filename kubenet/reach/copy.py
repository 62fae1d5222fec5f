"""`invoke cp`: files and directories to and from VMs, as `limactl copy` and `multipass
transfer` do, with scp over the cluster's ssh_config (so through the pinned host keys).

`SRC... VM:DEST` copies to one VM, `VM:SRC... DEST` from it; with `--role`/`--all` the VM
side is written `:PATH` and each chosen VM is copied to, or from, in parallel (from
several VMs, each VM's copy goes into DEST/<vm>/). A directory is copied whole (`scp
-r`); a destination that ends in `/` is made first, with its parents. What comes from a
VM lands beside its destination first and is then renamed into place: a file or link
there is replaced itself, never written through.

scp speaks the SFTP protocol (OpenSSH 9.0's default; `-s` from 8.7 asks for it): paths
go to the VM as they are written, never through its shell, so spaces and quotes in them
need no escaping. The guest needs an SFTP server, as every cloud image has.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..model.cluster import VM, Cluster
from ..plumbing import errors

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
    """One scp run: to `vm` or from it, `sources` (this host's, or the VM's) into `destination`
    (the VM's, or this host's)."""

    vm: str
    to_vm: bool
    sources: tuple[str, ...]
    destination: str

    @property
    def local(self) -> str:
        """This host's side, as a user names it in a line."""
        return " ".join(self.sources) if self.to_vm else self.destination

    @property
    def remote(self) -> str:
        return self.destination if self.to_vm else " ".join(self.sources)


def plan(sources: list[str], destination: str, names: list[str], chosen: list[str] | None) -> list[Copy]:
    """The copies `invoke cp SOURCE... DESTINATION` makes. `names` are the cluster's VMs;
    `chosen` the VMs --role/--all picked (None: neither given)."""
    srcs, dest = [parse_side(source) for source in sources], parse_side(destination)
    on_vm = {src.vm is not None for src in srcs}
    if len(on_vm) > 1:
        raise CopyError("the sources of one copy are all this host's or all a VM's", USAGE)
    if on_vm == {dest.vm is not None}:
        raise CopyError(
            "one side of a copy must be a VM's (`VM:PATH`, or `:PATH` with --role/--all) and the other this host's", USAGE
        )
    to_vm = dest.vm is not None
    remotes = [dest] if to_vm else srcs
    if len({remote.vm for remote in remotes}) > 1:
        raise CopyError("the sources of one copy come from one VM (or, written `:PATH`, from each chosen VM)", USAGE)
    remote = remotes[0]
    for side, text in zip([*srcs, dest], [*sources, destination]):
        if not side.path:
            what = "VM side" if side.vm is not None else "path on this host"
            raise CopyError(f"no path on the VM side of {text!r}" if side.vm is not None else f"the {what} is empty", "write `VM:PATH`, e.g. control0:/tmp/" if side.vm is not None else USAGE)
    if remote.vm == EVERY_CHOSEN and chosen is None:
        raise CopyError("`:PATH` copies to or from the VMs --role or --all chooses, and neither was given", USAGE)
    if remote.vm != EVERY_CHOSEN and chosen is not None:
        raise CopyError(f"--role/--all choose the VMs, and {remote.vm}: names one too", "write the VM side as `:PATH`")
    if remote.vm not in (EVERY_CHOSEN, *names):
        raise CopyError(f"no VM named {remote.vm!r}; names are {', '.join(names)}", "`invoke ls` lists them")
    vms = chosen if remote.vm == EVERY_CHOSEN else [remote.vm]
    paths = tuple(src.path for src in srcs)
    if to_vm:
        return [Copy(vm, True, paths, dest.path) for vm in vms]
    fan_in = len(vms) > 1
    return [Copy(vm, False, paths, os.path.join(dest.path, vm) if fan_in else dest.path) for vm in vms]


def sftp_option(version_line: str) -> list[str] | None:
    """What makes this host's scp speak SFTP, from `ssh -V`: nothing from OpenSSH 9.0,
    `-s` from 8.7; None for an older scp, which only has the old protocol."""
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", version_line)
    if not found:
        return []  # not OpenSSH's numbering: take its default
    version = (int(found[1]), int(found[2]))
    return [] if version >= (9, 0) else ["-s"] if version >= (8, 7) else None


def scp_argv(config: Path, copy: Copy, protocol: list[str], into: str | None = None) -> list[str]:
    """scp for one copy; `into`: where a copy from a VM lands first (see `settle`)."""
    if copy.to_vm:
        ends = [*copy.sources, f"{copy.vm}:{copy.destination}"]
    else:
        ends = [*(f"{copy.vm}:{source}" for source in copy.sources), into or copy.destination]
    # `--`: a local path that starts with '-' is a path, not an option
    return ["scp", "-F", str(config), *protocol, "-r", "-q", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "--", *ends]


def remote_directory(destination: str) -> str | None:
    """The directory to make on the VM before copying (`DEST/` names one, as `multipass
    transfer --parents` makes it): relative to the login's home, as scp reads it; None when
    the destination does not end in '/' or is the home directory itself."""
    if not destination.endswith("/"):
        return None
    path = destination.rstrip("/")
    path = path[2:] if path.startswith("~/") else "" if path == "~" else path
    return path or None


def landings(copy: Copy) -> list[Path]:
    """Where each source of a copy from a VM arrives on this host: into DEST when it is a
    directory (or several sources, or DEST/ ), else DEST itself."""
    local = Path(copy.destination)
    if local.is_dir() or len(copy.sources) > 1 or copy.destination.endswith("/"):
        return [local / os.path.basename(source.rstrip("/")) for source in copy.sources]
    return [local]


def landing(copy: Copy) -> Path:
    return landings(copy)[0]


def check_local(copies: list[Copy], force: bool) -> None:
    """What must be so on this host before anything is copied: what goes to a VM exists;
    what comes from one has a directory to go into, and replaces nothing unless `force`."""
    for copy in copies:
        if copy.to_vm:
            for source in copy.sources:
                if not os.path.lexists(source):
                    raise CopyError(f"{source} does not exist", "give a file or directory on this host")
            continue
        parent = Path(copy.destination) if copy.destination.endswith("/") else Path(copy.destination).parent
        if not parent.is_dir() and not copy.destination.endswith("/"):
            raise CopyError(f"{parent} is not a directory on this host", "make it first, copy into an existing directory, or end DEST with / to have it made")
        for landed in landings(copy):
            if os.path.lexists(landed) and not force:
                raise CopyError(f"{landed} exists; nothing was copied", "--force to replace it, or copy elsewhere")


def make_local_directories(copies: list[Copy]) -> None:
    """From several VMs, each VM's copy goes into DEST/<vm>/, which DEST must hold: a
    directory of kubenet's making, never a link (it would send the copy elsewhere). A
    destination written `DIR/` is made, with its parents."""
    for copy in copies:
        if not copy.to_vm and copy.destination.endswith("/"):
            Path(copy.destination).mkdir(parents=True, exist_ok=True)
    if len(copies) < 2 or copies[0].to_vm:
        return
    destination = Path(copies[0].destination).parent
    if not destination.is_dir():
        raise CopyError(f"{destination} is not a directory on this host", "from several VMs, each VM's copy goes into DEST/<vm>/: give a directory")
    for copy in copies:
        own = Path(copy.destination)
        if own.is_symlink() or (os.path.lexists(own) and not own.is_dir()):
            raise CopyError(f"{own} is {'a link' if own.is_symlink() else 'not a directory'}; nothing was copied", f"each VM's copy goes into a directory of its own there: move {own} away")
    for copy in copies:
        Path(copy.destination).mkdir(exist_ok=True)


def settle(staged: Path, copy: Copy) -> None:
    """Move what scp put into `staged` (a directory beside the destination) into place. A
    file or link already there is replaced itself, never written through (rename replaces
    the name); a directory there is swapped out, then removed."""
    import shutil

    for source, landed in zip(copy.sources, landings(copy)):
        arrived = staged / os.path.basename(source.rstrip("/"))
        if not os.path.lexists(arrived):
            continue
        if os.path.isdir(landed) and not os.path.islink(landed):
            old = staged / ".replaced"
            os.rename(landed, old)
            os.rename(arrived, landed)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(arrived, landed)


def scp_failure(copy: Copy, said: list[str], code: int) -> str:
    """Why scp failed, in kubenet's words: a missing directory, a refused path (and how to get
    a file there), a missing source; else scp's own last line."""
    text = "\n".join(said)
    if "Permission denied" in text:
        if copy.to_vm:
            name = os.path.basename(copy.sources[0].rstrip("/"))
            return (
                f"permission denied on {copy.vm} writing {copy.destination} (the login user may not write there); "
                f"copy into its home directory, then `invoke exec --name {copy.vm} -- sudo install -m 644 {name} {copy.destination}`"
            )
        return f"permission denied on {copy.vm} reading {copy.remote} (the login user may not read it); `invoke exec --name {copy.vm} -- sudo cat PATH > FILE` reads it as root"
    missing = re.search(r"scp: (.*): No such file or directory", text)
    if missing and not copy.to_vm:
        return f"{missing[1]} does not exist on {copy.vm}"
    if "No such file or directory" in text or "not a directory" in text.lower():
        where = copy.destination if copy.destination.endswith("/") else os.path.dirname(copy.destination) or copy.destination
        return f"no such directory on {copy.vm}: {where} (end the destination with / to have it made)"
    return said[-1] if said else f"scp exited {code}"


def copy_all(cluster: Cluster, vms: list[VM] | None, sources: list[str], destination: str, say, force: bool = False) -> list[str]:
    """Make the copies in parallel, a line per VM; the names of the VMs whose copy failed.
    `vms`: those --role/--all chose (None: neither was given); `force`: what comes from a
    VM may replace a file here."""
    import shlex
    import shutil
    import tempfile

    from ..plumbing.parallel import for_each
    from ..plumbing.process import run
    from ..prepare.sshkeys import existing_config
    from ..model.network import SSH_HINT, ssh_argv

    copies = plan(sources, destination, [vm.name for vm in cluster.vms], None if vms is None else [vm.name for vm in vms])
    config = existing_config(cluster)
    protocol = sftp_option(run(["ssh", "-V"], missing_hint=SSH_HINT).stderr)
    if protocol is None:
        raise CopyError("this host's scp is older than OpenSSH 8.7 and cannot speak SFTP", "update OpenSSH")
    check_local(copies, force)
    make_local_directories(copies)

    def one(copy: Copy) -> str | None:
        staged = None
        try:
            directory = remote_directory(copy.destination) if copy.to_vm else None
            if directory:
                made = run(ssh_argv(config, copy.vm, f"mkdir -p -- {shlex.quote(directory)}", batch=True), check=False, timeout=120, missing_hint=SSH_HINT)
                if made.code:
                    said = (made.stderr.strip() or made.stdout.strip()).splitlines()
                    say(f"kubenet: cp: {copy.vm}: cannot make {copy.destination} there: {said[-1] if said else f'exit {made.code}'}")
                    return copy.vm
            if not copy.to_vm:
                staged = Path(tempfile.mkdtemp(prefix=".kubenet-cp-", dir=landings(copy)[0].parent))
            done = run(scp_argv(config, copy, protocol, str(staged) if staged else None), check=False, timeout=COPY_TIMEOUT, missing_hint=SSH_HINT)
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            if done.code:
                say(f"kubenet: cp: {copy.vm}: {scp_failure(copy, said, done.code)}")
                return copy.vm
            if staged:
                settle(staged, copy)
        except errors.KubenetError as error:
            say(f"kubenet: cp: {copy.vm}: {error.message}")
            return copy.vm
        finally:
            if staged:
                shutil.rmtree(staged, ignore_errors=True)
        say(f"kubenet: cp: {copy.vm}: copied {copy.local} to {copy.remote}" if copy.to_vm else f"kubenet: cp: {copy.vm}: copied {copy.remote} to {copy.local}")
        return None

    return [vm for vm in for_each(copies, one) if vm]
