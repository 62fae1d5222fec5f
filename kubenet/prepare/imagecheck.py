"""Whether a VM's disk and UEFI variable store are whole, before qemu is given them.

A truncated qcow2 overlay boots into I/O errors (or qemu refuses it with a message
that names no fix), and a variable store of the wrong size stops the firmware; both
are found here cheaply, from the qcow2 metadata (header, L1 and L2 tables: a few
MiB at most for a 20G disk) and the store's size. When qemu failed anyway,
`qemu-img check` says more. Every hint keeps the user's data.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from ..plumbing import errors

QCOW2_MAGIC = b"QFI\xfb"
HEADER = struct.Struct(">4sIQIIQIIQQIIQ")  # the fields of a version 2 header, which version 3 extends
OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00  # bits 9-55 of an L1 or L2 entry: a host offset
COMPRESSED = 1 << 62
EXTENDED_L2 = 1 << 4  # an incompatible feature: L2 entries of 16 bytes (subclusters)


def qcow2_problem(path: Path) -> str | None:
    """What makes the qcow2 file at `path` unusable, from its own metadata; None if whole."""
    try:
        with open(path, "rb") as stream:
            return _qcow2_problem(stream, os.fstat(stream.fileno()).st_size)
    except OSError as error:
        return f"cannot be read ({error.strerror})"


def _qcow2_problem(stream, length: int) -> str | None:
    head = stream.read(HEADER.size + 8)
    if len(head) < HEADER.size:
        return f"is {length} bytes, too short for a qcow2 image"
    magic, version, _, _, cluster_bits, _, _, l1_size, l1_offset, refcount_offset, refcount_clusters, _, _ = HEADER.unpack_from(head)
    if magic != QCOW2_MAGIC or version not in (2, 3) or not 9 <= cluster_bits <= 21:
        return "is not a qcow2 image"
    cluster = 1 << cluster_bits
    if refcount_offset + refcount_clusters * cluster > length:
        return f"is truncated: its refcount table ends past the file's {length} bytes"
    if l1_offset + l1_size * 8 > length:
        return f"is truncated: its L1 table ends past the file's {length} bytes"
    incompatible = struct.unpack_from(">Q", head, HEADER.size)[0] if version == 3 and len(head) >= HEADER.size + 8 else 0
    stream.seek(l1_offset)
    l1 = struct.unpack(f">{l1_size}Q", stream.read(l1_size * 8))
    for entry in l1:
        table = entry & OFFSET_MASK
        if not table:
            continue
        if table + cluster > length:
            return f"is truncated: an L2 table at {table} is past the file's {length} bytes"
        if incompatible & EXTENDED_L2:
            continue  # data offsets sit in 16-byte entries; the tables' presence is what is checked
        stream.seek(table)
        for data in struct.unpack(f">{cluster // 8}Q", stream.read(cluster)):
            offset = data & OFFSET_MASK
            if offset and not data & COMPRESSED and offset + cluster > length:
                return f"is truncated: data at {offset} is past the file's {length} bytes"
    return None


def vars_problem(store: Path, template: Path | None) -> str | None:
    """A UEFI variable store must be as large as the firmware's (raw) template: the firmware
    reads the flash at fixed offsets, and qemu refuses a pflash of the wrong size. A qcow2
    store is whole and of the template's virtual size."""
    if template is None or not template.is_file():
        return None
    try:
        with open(store, "rb") as stream:
            head = stream.read(HEADER.size)
        have, want = store.stat().st_size, template.stat().st_size
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if head[:4] == QCOW2_MAGIC:
        problem = qcow2_problem(store)
        if problem:
            return problem
        have = HEADER.unpack_from(head)[5]  # the virtual size
    return None if have == want else f"is {have} bytes; the firmware's variable store is {want}"


def check_vm_images(name: str, disk: Path, store: Path | None, template: Path | None) -> None:
    """Refuse to launch a VM whose disk or variable store is damaged, naming the file and a fix."""
    problem = qcow2_problem(disk) if disk.exists() else None
    if problem:
        raise errors.SetupError(
            f"{name}: {disk} {problem}",
            f"repair what can be kept with `qemu-img check -r all {disk}` (keep a copy first), or start the VM over with `invoke reset --name {name}`",
        )
    problem = vars_problem(store, template) if store is not None and store.exists() else None
    if problem:
        raise errors.SetupError(
            f"{name}: {store} {problem}",
            f"run `make setup` (or `invoke vmsetup --name {name}`): it sets the damaged store aside and makes a new one; the disk is kept",
        )


def qemu_img_check(disk: Path) -> str | None:
    """What `qemu-img check` finds wrong with a disk, in one line; None if nothing (or it cannot say)."""
    from ..plumbing.process import run

    try:
        done = run(["qemu-img", "check", "--output=json", "-U", str(disk)], check=False, timeout=60)
    except errors.KubenetError:
        return None
    if done.code == 0:
        return None
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return None  # it could not open the image (a missing backing file, say): qemu said why
    found = [f"{report[key]} {key.replace('-', ' ')}" for key in ("corruptions", "leaks", "check-errors") if report.get(key)]
    return ", ".join(found) or None
