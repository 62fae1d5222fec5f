"""Each VM's disk: a qcow2 overlay on the base image, made once and then the VM's own data."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from ..plumbing import errors
from ..plumbing.fsutil import atomic_output
from ..plumbing.process import run

QEMU_IMG_HINT = "install qemu-img (`apt install qemu-utils`, `brew install qemu`)"


def image_format(path: Path) -> str:
    info = json.loads(run(["qemu-img", "info", "--output=json", str(path)], missing_hint=QEMU_IMG_HINT).stdout)
    return info["format"]


def create_disk_argv(disk: Path, size: str, base: Path | None, base_format: str | None) -> list[str]:
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if base is not None:
        # An absolute backing path keeps the overlay valid wherever it is opened from.
        argv += ["-b", str(base.absolute()), "-F", base_format or "qcow2"]
    return argv + [str(disk), size]


def create_disk(disk: Path, size: str, base: Path | None) -> bool:
    """Create the disk unless it exists; an existing disk is never touched. True if created.

    Callers hold the VM's lock, so no one else creates it meanwhile.
    """
    if disk.exists():
        return False
    if base is not None and not base.is_file():
        raise errors.SetupError(f"base image {base} is missing", "run `invoke image` (or `make setup`) first")
    base_format = image_format(base) if base is not None else None
    with atomic_output(disk, 0o600) as temporary:
        run(create_disk_argv(temporary, size, base, base_format), missing_hint=QEMU_IMG_HINT)
    return True


# QEMU marks an open image with byte-range locks at offsets 100-299 (one byte
# per permission it holds or refuses to share); any lock there means in use.
QEMU_LOCK_START, QEMU_LOCK_LENGTH = 100, 200


def disk_in_use(disk: Path) -> bool:
    """Whether a qemu has the disk open: also one that kubenet did not start, e.g. `invoke vm`."""
    try:
        fd = os.open(disk, os.O_RDWR)
    except OSError:
        return False  # no disk, or not ours to open: nothing we could harm
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, QEMU_LOCK_LENGTH, QEMU_LOCK_START)
        fcntl.lockf(fd, fcntl.LOCK_UN, QEMU_LOCK_LENGTH, QEMU_LOCK_START)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def create_efivars(efivars: Path, template: Path) -> bool:
    """A VM's own UEFI variable store, made once from the firmware's (raw) template, as
    qcow2: the format that can hold a snapshot of it beside the disk's."""
    if efivars.exists():
        return False
    with atomic_output(efivars, 0o600) as temporary:
        raw_to_qcow2(template, temporary)
    return True


def convert_raw_efivars(raw: Path, efivars: Path) -> bool:
    """A store an earlier kubenet made raw, converted once to qcow2 with every variable (the
    disk's boot entries) in it; the raw file is removed only once the two compare equal."""
    if efivars.exists() or not raw.is_file():
        return False
    with atomic_output(efivars, 0o600) as temporary:
        raw_to_qcow2(raw, temporary)
        run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "qcow2", str(raw), str(temporary)], missing_hint=QEMU_IMG_HINT)
    raw.unlink()
    return True


def raw_to_qcow2(source: Path, target: Path) -> None:
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(source), str(target)], missing_hint=QEMU_IMG_HINT)


# ---- clusters a cut snapshot left taken ---------------------------------------------

LEAKS_MARKER = "repair-leaks"  # in the VM's directory: its images, one per line


def repair_leaks(images: list[Path]) -> None:
    """Give back the clusters an unfinished snapshot left allocated and unused (leaks, which
    only `check -r leaks` frees; it touches nothing else). For images no qemu has open."""
    for image in images:
        if image.exists():
            run(["qemu-img", "check", "-q", "-r", "leaks", str(image)], check=False, timeout=300, missing_hint=QEMU_IMG_HINT)


def repair_leaks_later(vm_dir: Path, images: list[Path]) -> None:
    """For a VM whose qemu has its images open: repair them once it has stopped."""
    from ..plumbing.fsutil import write_atomic

    write_atomic(vm_dir / LEAKS_MARKER, "".join(f"{image.absolute()}\n" for image in images).encode(), 0o600)


def repair_leaks_left(vm_dir: Path) -> None:
    """Once the VM's qemu is gone: the repair asked for while it ran, if any."""
    marker = vm_dir / LEAKS_MARKER
    try:
        images = [Path(line) for line in marker.read_text().splitlines() if line.startswith("/")]
    except (OSError, UnicodeError):
        return
    repair_leaks([image for image in images if image.parent == vm_dir.absolute()])  # only the VM's own files
    marker.unlink(missing_ok=True)
