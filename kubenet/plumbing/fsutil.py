"""Safe file handling: atomic writes, private files and directories, advisory locks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def private_dir(path: Path, enforce: bool = False) -> Path:
    """A directory only its owner can read: it holds private keys.

    Every level it creates is 0700 whatever the umask (mkdir -p would make the
    parents by the umask); with `enforce`, an existing one of ours is made 0700 too. A
    link in its place, even a dangling one, counts as there: nothing is made beyond it.
    """
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for level in reversed(missing):
        try:
            level.mkdir(mode=0o700)
        except FileExistsError:
            pass  # made meanwhile by a concurrent command
    path = missing[0] if missing else path
    if enforce:
        info = path.stat()
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            path.chmod(0o700)
    return path


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Programs started in the block create their files (pid files, sockets) for their owner alone."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o600) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds.

    Ctrl-C or a failure leaves the old file (or none) in place, never a truncated one.
    """
    private_dir(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        os.chmod(temporary_path, mode)
        yield temporary_path
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    try:
        with atomic_output(path, mode) as temporary:
            with open(temporary, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
    except OSError as error:
        if error.filename is not None or not error.errno:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error  # a full disk names the file it could not write


def free_bytes(path: Path) -> int:
    """The space a user (not root's reserve) may still write on the file system holding `path`."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def open_lock_file(path: Path) -> int:
    """A descriptor to flock `path` with, made if needed. On a read-only file system an
    existing lock file is opened for reading: flock needs no write access, and stopping
    VMs from a read-only state_dir must still exclude other commands."""
    flags = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o600)
    except OSError as error:
        if error.errno != errno.EROFS or not path.is_file():
            raise
        return os.open(path, os.O_RDONLY | flags)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the block; waits for others."""
    private_dir(path.parent)
    descriptor = open_lock_file(path)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def fresh_private_file(path: Path) -> None:
    """An empty 0600 file of ours at `path`, whoever owned what was there (a qemu
    that ran as root may have left a file of its own)."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o600))
