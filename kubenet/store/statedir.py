"""The state directory: kubenet's own, private, and used only while it provably is.

state_dir holds the VMs' host keys and disks and the sockets and pid files that
control them, so, as OpenSSH treats ~/.ssh, it is refused unless it and each
directory kubenet makes in it belong to the user and no one else may write
there, and unless no one else may rename it away either (every directory above
it is root's or the user's, and writable by others only with the sticky bit,
as /tmp is). kubenet works only in a directory it made, which it marks, or that
it finds empty: never in one that holds what it did not put there (a state_dir
pointing at /etc, say). A directory an earlier kubenet made without the mark is
recognised by holding nothing but kubenet's own files, and marked.

Commands that change the cluster's processes or sessions take the cluster lock
here, so they happen one after another.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import stat
from pathlib import Path
from typing import Callable, Iterator

from ..model.cluster import VM, Cluster
from ..plumbing import errors
from ..plumbing.fsutil import open_lock_file, private_dir, write_atomic

MARK = ".kubenet-state"
SNAPSHOTS = "snapshots"  # the records of whole-cluster snapshots
CLUSTER_LOCK = "launch.lock"

# What kubenet itself makes: in state_dir, and in each VM's directory there.
OWN_FILES = frozenset({
    MARK, CLUSTER_LOCK, "known_hosts", "ssh_config", "vde.pid", "vde.ctl", "vde.lock", "vde.mgmt", ".ssh.lock", "accel",
    "tunnel.sock", "tunnel.log",
})  # fmt: skip
OWN_VM_FILES = frozenset({
    "disk.img", "efivars.qcow2", "efivars.fd", "cidata.iso", "cidata.iso.sha256", "user-data", "meta-data", "network-config",
    "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "qmp.sock", "serial.log", "qemu.pid", "ready",
    "cloud-init-done", ".lock", "identity.json", "efivars.fd.damaged", "efivars.qcow2.damaged", "qga.sock",
    "booted-instance", "repair-leaks",
})  # fmt: skip


# A VDE cable's supervisor to another host (cable.py): its pid, state, log and lock.
# and the shared SSH connection to another host (remote.py).
HOSTS_FILE = re.compile(r"(cable-[a-z]([a-z0-9-]*[a-z0-9])?\.(pid|json|log|lock))|(host-[a-z]([a-z0-9-]*[a-z0-9])?\.sock(\.[A-Za-z0-9]+)?)")


class StateDirError(errors.SetupError):
    """state_dir is not safe to use, or not kubenet's."""


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_private(path: Path, what: str) -> None:
    """A directory of kubenet's: a real directory, the user's, writable by no one else."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise StateDirError(f"{what} {path} is a symbolic link", "kubenet makes its own directories there; remove the link")
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(f"{what} {path} is not a directory", "remove it, or point state_dir elsewhere")
    if info.st_uid != os.geteuid():
        raise StateDirError(
            f"{what} {path} belongs to {_owner(info.st_uid)}, not to you ({_owner(os.geteuid())})",
            "point state_dir at a directory of your own",
        )
    if info.st_mode & 0o022:
        raise StateDirError(
            f"{what} {path} can be written by others (mode {stat.S_IMODE(info.st_mode):04o})",
            f"make it yours alone: chmod 700 {path}",
        )


def check_ancestors(path: Path) -> None:
    """Nobody but root and the user may rename or replace anything on the way to `path`."""
    for parent in path.parents:
        try:
            info = os.stat(parent)
        except OSError:
            continue  # not there yet: kubenet makes it, 0700
        if info.st_uid not in (0, os.geteuid()):
            raise StateDirError(
                f"state_dir {path} is inside {parent}, which belongs to {_owner(info.st_uid)}",
                "point state_dir at a directory inside your own",
            )
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise StateDirError(
                f"state_dir {path} is inside {parent}, which others can write to (mode {stat.S_IMODE(info.st_mode):04o}) without the sticky bit",
                f"point state_dir elsewhere, or `chmod go-w {parent}`",
            )


def foreign_entries(path: Path) -> list[str]:
    """What a directory holds that kubenet does not make (its temporaries are its own), as
    paths relative to it; a VM directory counts as kubenet's when all it holds is."""
    foreign = []
    for entry in os.scandir(path):
        if entry.name in OWN_FILES or _own_temporary(entry.name) or HOSTS_FILE.fullmatch(entry.name):
            continue
        if entry.name == SNAPSHOTS and entry.is_dir(follow_symlinks=False):
            foreign += [f"{SNAPSHOTS}/{name}" for name in sorted(os.listdir(entry.path)) if not _snapshot_record(name)]
        elif entry.is_dir(follow_symlinks=False):
            foreign += [f"{entry.name}/{name}" for name in sorted(os.listdir(entry.path)) if name not in OWN_VM_FILES and not _own_temporary(name)]
        else:
            foreign.append(entry.name)
    return sorted(foreign)


def _snapshot_record(name: str) -> bool:
    """A snapshot's record (snapshot.py), or one being written."""
    return _own_temporary(name) or (name.endswith(".json") and re.fullmatch(r"[A-Za-z0-9._-]+", name) is not None)


def holds_only_own_files(path: Path) -> bool:
    return not foreign_entries(path)


def _own_temporary(name: str) -> bool:
    """fsutil.atomic_output's temporaries: `.<name>.<random>.tmp`."""
    return name.startswith(".") and name.endswith(".tmp")


def check_state(cluster: Cluster) -> None:
    """Refuse a state_dir that is not safely kubenet's; one that does not exist yet is fine."""
    path = cluster.state_dir
    check_ancestors(path)
    if not os.path.lexists(path):
        return
    check_private(path, "state_dir")
    if not (path / MARK).is_file() and any(os.scandir(path)) and not holds_only_own_files(path):
        raise StateDirError(
            f"state_dir {path} holds files kubenet did not make",
            "point state_dir at a new or empty directory (kubenet makes it)",
        )


def own_directory(path: Path, what: str, mark: str, unmarked: Callable[[Path], None] = lambda path: None, mark_file: str = MARK) -> Path:
    """`path` as a directory of kubenet's own: made if missing (each missing level 0700, one
    that a concurrent command made meanwhile taken as it is), private to the user, and marked
    with `mark` in `mark_file`; `unmarked` sees a directory found without the mark first, and
    may refuse it."""
    private_dir(path)
    check_private(path, what)
    if not (path / mark_file).is_file():
        unmarked(path)
        write_atomic(path / mark_file, mark.encode(), 0o600)
    return path


def ensure_state(cluster: Cluster) -> Path:
    """state_dir, made (0700, marked) if missing, or checked and marked if found."""
    check_state(cluster)
    return own_directory(cluster.state_dir, "state_dir", f"kubenet state directory for {cluster.source.absolute()}\n")


def vm_dir(cluster: Cluster, vm: VM) -> Path:
    """The VM's directory in state_dir, made 0700 if missing, checked if found."""
    ensure_state(cluster)
    path = cluster.state_dir / vm.name
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    check_private(path, f"{vm.name}'s directory")
    return path


def clean_temporaries(directory: Path, names: frozenset[str] | set[str]) -> list[Path]:
    """Remove what an interrupted write of one of `names` left (`.<name>.*.tmp`); the caller
    holds the lock under which those files are written, so none is being written now."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if _own_temporary(entry.name) and entry.name[1:].rsplit(".", 2)[0] in names and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def cluster_busy(cluster: Cluster) -> bool:
    """Whether another kubenet command holds the cluster's lock now (asked without waiting)."""
    import fcntl

    try:
        descriptor = os.open(cluster.state_dir / CLUSTER_LOCK, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def cluster_lock(cluster: Cluster, say: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Hold the cluster's lock: commands that start or stop its VMs or change its sessions
    run one after another. Says so when it has to wait for another."""
    import fcntl

    ensure_state(cluster)
    descriptor = open_lock_file(cluster.state_dir / CLUSTER_LOCK)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("kubenet: waiting for another kubenet command on this cluster to finish")
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
