"""A real Debian guest running real cloud-init, to check kubenet's seeds against the tooling they are for.

debootstrap (Debian's installer) makes a minimal Debian with cloud-init,
OpenSSH, systemd and the cloud kernel, from the mirror this machine's apt
uses; `mkfs.ext4 -d` turns the tree into a root disk without mounting
anything. The result (kernel, initrd, root disk) is cached under a key made of
this recipe, beside the tiny image. debootstrap needs root. Run directly to
build and print the paths: python tests/realguest/build.py
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
PACKAGES = [
    "cloud-init",
    "python3-cffi-backend",  # a dependency that debootstrap's resolver misses
    "openssh-server",
    "systemd-sysv",
    "dbus",  # systemd-logind needs it to act on the ACPI power button
    "udev",
    "ifupdown",  # what cloud-init renders network-config to on Debian
    "isc-dhcp-client",
    "iproute2",
    "iputils-ping",
    "sudo",
    "kmod",
    "procps",  # sysctl, for the templates' runcmd
    "linux-image-cloud-amd64",
    "initramfs-tools",
]
DISK_SIZE = "2G"


def cache_root() -> Path:
    if os.environ.get("KUBENET_TEST_CACHE"):
        return Path(os.environ["KUBENET_TEST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubenet-test-image"


def run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout


def codename() -> str:
    match = re.search(r"^VERSION_CODENAME=(\S+)$", Path("/etc/os-release").read_text(), re.MULTILINE)
    if not match:
        raise RuntimeError("cannot tell this Debian release from /etc/os-release")
    return match.group(1)


def apt_mirror(suite: str) -> str:
    """The Debian mirror that apt on this machine uses for `suite` (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.MULTILINE))
            if suite in fields.get("Suites", "").split() and "main" in fields.get("Components", "").split():
                return fields["URIs"].split()[0]
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                words = line.split()
                if len(words) >= 4 and words[0] == "deb" and words[-2] == suite:
                    return words[1]
    raise RuntimeError(f"no apt source for {suite} main on this machine")


def recipe_key() -> str:
    digest = hashlib.sha256(HERE.read_bytes())
    digest.update(codename().encode())
    return "debian-" + digest.hexdigest()[:16]


def build(cache: Path | None = None) -> tuple[Path, Path, Path]:
    """(kernel, initrd, root disk) of the guest, built once per recipe."""
    cache = cache or cache_root()
    target = cache / recipe_key()
    kernel, initrd, disk = target / "vmlinuz", target / "initrd.img", target / "root.qcow2"
    if kernel.exists() and initrd.exists() and disk.exists():
        return kernel, initrd, disk
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as temporary:
        work = Path(temporary)
        tree = work / "root"
        suite = codename()
        run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite, str(tree), apt_mirror(suite)])
        for key in tree.glob("etc/ssh/ssh_host_*"):
            key.unlink()  # the only host key will be the one kubenet hands over
        (tree / "etc/machine-id").write_text("")
        for package in tree.glob("var/cache/apt/archives/*.deb"):
            package.unlink()
        staging = work / "out"
        staging.mkdir()
        shutil.copy2(next(tree.glob("boot/vmlinuz-*")), staging / "vmlinuz")
        shutil.copy2(next(tree.glob("boot/initrd.img-*")), staging / "initrd.img")
        raw = work / "root.img"
        run(["mkfs.ext4", "-q", "-L", "root", "-d", str(tree), str(raw), DISK_SIZE])
        run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(staging / "root.qcow2")])
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return kernel, initrd, disk


if __name__ == "__main__":
    print(*build(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
