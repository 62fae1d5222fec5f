"""Find UEFI firmware the way QEMU's tooling does: through firmware descriptors.

QEMU installs JSON descriptors under <prefix>/share/qemu/firmware/ (and admins
may add /etc/qemu/firmware/). A file name in an earlier directory hides the
same name in a later one; the survivors are tried in file-name order. Only when
no descriptor fits do we fall back to well-known paths, and say so.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from ..model.host import KNOWN_PATHS, Firmware
from ..plumbing import errors

# Features that need a set-up we do not do (SMM, enrolled keys, confidential VMs).
UNWANTED_FEATURES = frozenset(
    {"requires-smm", "secure-boot", "enrolled-keys", "amd-sev-es", "amd-sev-snp", "intel-tdx"}
)


INSTALL_HINT = {
    "x86_64": "install UEFI firmware: `apt install ovmf`, `dnf install edk2-ovmf` or `brew install qemu`",
    "aarch64": "install UEFI firmware: `brew install qemu`, `apt install qemu-efi-aarch64` or `dnf install edk2-aarch64`",
}


def descriptor_dirs(root: Path, prefixes: list[Path]) -> list[Path]:
    """The search order: admin overrides first, then each installation prefix."""
    dirs = [root / "etc/qemu/firmware"]
    for prefix in prefixes:
        dirs.append(root / prefix.relative_to(prefix.anchor) / "share/qemu/firmware")
    return list(dict.fromkeys(dirs))


def firmware_from_descriptor(data: dict, arch: str, machine_family: str) -> Firmware | None:
    """The firmware a descriptor offers for this arch and machine, or None if it does not fit."""
    if "uefi" not in data.get("interface-types", []):
        return None
    if UNWANTED_FEATURES & set(data.get("features", [])):
        return None
    mapping = data.get("mapping", {})
    if mapping.get("device") not in ("flash", "memory"):
        return None
    fits = any(
        target.get("architecture") == arch
        and any(fnmatch.fnmatch(f"{machine_family}-99.0", pattern) for pattern in target.get("machines", []))
        for target in data.get("targets", [])
    )
    if not fits:
        return None
    code = (mapping.get("executable") or {}).get("filename") or mapping.get("filename")
    template = (mapping.get("nvram-template") or {}).get("filename")
    if not code:
        return None
    return Firmware(Path(code), Path(template) if template else None)


def find_firmware(arch: str, machine_family: str, root: Path, prefixes: list[Path]) -> Firmware:
    by_name: dict[str, Path] = {}
    for directory in descriptor_dirs(root, prefixes):
        if directory.is_dir():
            for path in directory.glob("*.json"):
                by_name.setdefault(path.name, path)
    for name in sorted(by_name):
        try:
            data = json.loads(by_name[name].read_text())
        except (OSError, ValueError):
            continue  # a broken descriptor is QEMU's packaging problem, not a reason to stop
        firmware = firmware_from_descriptor(data, arch, machine_family) if isinstance(data, dict) else None
        if firmware and firmware.code.is_file():
            return firmware
    for code, template in KNOWN_PATHS[arch]:
        if (root / code).is_file():
            vars_template = root / template if template and (root / template).is_file() else None
            return Firmware(
                root / code,
                vars_template,
                note=f"no QEMU firmware descriptor for {arch} found; using {root / code}",
            )
    searched = ", ".join(str(d) for d in descriptor_dirs(root, prefixes))
    raise errors.HostError(f"no UEFI firmware for {arch} (searched {searched})", INSTALL_HINT[arch])
