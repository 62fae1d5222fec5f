"""Build the tiny test image: Debian's cloud kernel and an initramfs with busybox and dropbear.

Everything comes from Debian packages fetched with `apt-get download`. The
result is cached under a key made of this recipe (these files) and the exact
package files, so it is rebuilt when either changes. Run directly to build
and print the paths: python tests/tinyimage/build.py
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

HERE = Path(__file__).resolve().parent
KERNEL_META = "linux-image-cloud-amd64"
# busybox's ping needs a raw socket (root); iputils' ping also works unprivileged
# through ICMP datagram sockets, so the login user can ping as on a real node.
# The login shell is dash: busybox's shell runs its own applets before PATH.
PACKAGES = [
    "busybox-static", "dropbear-bin", "libtomcrypt1", "libtommath1", "libgmp10",
    "iputils-ping", "libcap2", "libidn2-0", "libunistring2", "dash",
    # the guest agent, through which kubenet sets a restored guest's clock
    "qemu-guest-agent",
    # dropbear's SFTP subsystem runs /usr/lib/sftp-server: scp speaks SFTP (`invoke cp`)
    "openssh-sftp-server",
]  # fmt: skip
# virtio (the balloon: free page reporting), network, seed ISO, ACPI power-button and NFS client drivers, in an order that satisfies their dependencies
MODULES = [
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio-rng", "virtio_balloon",
    "virtio_blk", "failover", "net_failover", "virtio_net", "cdrom", "isofs", "button", "evdev", "virtio_console",
    # the NFSv4 client, to mount what `hostnet` exports (nfs:)
    "sunrpc", "grace", "lockd", "netfs", "fscache", "nfs", "dns_resolver", "nfsv4",
]  # fmt: skip
RECIPE = ["build.py", "init", "inittab", "rc.kubenet", "udhcpc.script", "acpi-power"]


def cache_root() -> Path:
    if os.environ.get("KUBENET_TEST_CACHE"):
        return Path(os.environ["KUBENET_TEST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubenet-test-image"


def run(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def kernel_package() -> str:
    """The versioned kernel package that linux-image-cloud-amd64 depends on."""
    depends = run(["apt-cache", "depends", KERNEL_META])
    match = re.search(r"Depends: (linux-image-\S+-cloud-amd64)", depends)
    if not match:
        raise RuntimeError(f"cannot resolve {KERNEL_META}; run apt-get update first")
    return match.group(1)


def download(packages: list[str], directory: Path) -> list[Path]:
    directory.chmod(0o777)  # apt's _apt user writes the files
    run(["apt-get", "download", "-q", *packages], cwd=directory)
    return sorted(directory.glob("*.deb"))


def recipe_key(debs: list[Path]) -> str:
    digest = hashlib.sha256()
    for name in RECIPE:
        digest.update((HERE / name).read_bytes())
    for deb in debs:
        digest.update(deb.name.encode())
    return digest.hexdigest()[:16]


def build_initramfs(debs: list[Path], work: Path, output: Path) -> Path:
    """Unpack the packages, lay out the root file system, return the kernel path."""
    unpacked = work / "unpacked"
    for deb in debs:
        run(["dpkg-deb", "-x", str(deb), str(unpacked)])
    root = work / "root"
    for directory in ("bin", "usr/bin", "usr/lib", "lib", "lib64", "etc/acpi/PWRF", "lib/modules"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy2(unpacked / "bin/busybox", root / "bin/busybox")
    for program in ("usr/sbin/dropbear", "usr/bin/dropbearconvert"):
        shutil.copy2(unpacked / program, root / "bin" / Path(program).name)
    # in /usr/bin, which comes before busybox's /bin in the login shell's PATH
    shutil.copy2(unpacked / "bin/ping", root / "usr/bin/ping")
    shutil.copy2(unpacked / "bin/dash", root / "usr/bin/dash")
    shutil.copy2(unpacked / "usr/sbin/qemu-ga", root / "bin/qemu-ga")
    shutil.copy2(unpacked / "usr/lib/openssh/sftp-server", root / "usr/lib/sftp-server")
    programs = ["bin/dropbear", "bin/dropbearconvert", "usr/bin/ping", "usr/bin/dash", "bin/qemu-ga", "usr/lib/sftp-server"]
    copy_libraries([root / program for program in programs], unpacked, root)
    modules = next((unpacked / "lib/modules").iterdir())
    for module in MODULES:
        found = list(modules.rglob(f"{module}.ko")) or list(modules.rglob(f"{module.replace('-', '_')}.ko"))
        if not found:
            raise RuntimeError(f"module {module} not in {modules}")
        shutil.copy2(found[0], root / "lib/modules" / f"{module}.ko")
    (root / "lib/modules/order").write_text("\n".join(MODULES) + "\n")
    shutil.copy2(HERE / "init", root / "init")
    shutil.copy2(HERE / "inittab", root / "etc/inittab")
    shutil.copy2(HERE / "rc.kubenet", root / "etc/rc.kubenet")
    shutil.copy2(HERE / "udhcpc.script", root / "etc/udhcpc.script")
    shutil.copy2(HERE / "acpi-power", root / "etc/acpi/PWRF/00000080")
    files = run(["find", ".", "-print0"], cwd=root)
    cpio = subprocess.run(["cpio", "--null", "-o", "-H", "newc", "--quiet"], cwd=root, input=files.encode(), capture_output=True, check=True)
    import gzip

    output.write_bytes(gzip.compress(cpio.stdout, compresslevel=6))
    return next((unpacked / "boot").glob("vmlinuz-*"))


def copy_libraries(programs: list[Path], unpacked: Path, root: Path) -> None:
    """The shared libraries ldd lists, from the unpacked packages or this (same-release) machine."""
    directories = [*unpacked.glob("lib/*-linux-gnu"), *unpacked.glob("usr/lib/*-linux-gnu")]
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(str(p) for p in directories)}
    for program in programs:
        for line in run(["ldd", str(program)], env=env).splitlines():
            path = next((part for part in line.split() if part.startswith("/")), None)
            if path is None:
                continue
            source = Path(path)
            inside = source.is_relative_to(unpacked)
            target = root / (source.relative_to(unpacked) if inside else source.relative_to("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.resolve(), target)


def build(cache: Path | None = None) -> tuple[Path, Path]:
    """(kernel, initrd) of the test image, built once per recipe."""
    cache = cache or cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as temporary:
        work = Path(temporary)
        downloads = work / "debs"
        downloads.mkdir()
        debs = download([kernel_package(), *PACKAGES], downloads)
        target = cache / recipe_key(debs)
        kernel, initrd = target / "vmlinuz", target / "initrd.img"
        if kernel.exists() and initrd.exists():
            return kernel, initrd
        staging = work / "out"
        staging.mkdir()
        vmlinuz = build_initramfs(debs, work, staging / "initrd.img")
        shutil.copy2(vmlinuz, staging / "vmlinuz")
        os.replace(staging, target) if not target.exists() else None
    return kernel, initrd


if __name__ == "__main__":
    print(*build(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
