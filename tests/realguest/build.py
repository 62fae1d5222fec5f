"""A real Debian guest running real cloud-init, to check kubenet's seeds against the tooling they are for.

debootstrap (Debian's installer) makes a minimal Debian with cloud-init,
OpenSSH, systemd and the cloud kernel, from the mirror this machine's apt
uses, and turns it, without mounting anything, into a UEFI-bootable disk laid
out as Ubuntu's cloud images are: GPT with the EFI system partition as
partition 15 (a FAT image made with `mkfs.vfat -C` and `mcopy`, holding a
standalone GRUB at the removable-media path EFI/BOOT/BOOTX64.EFI) and the root
file system (`mkfs.ext4 -d`), labelled cloudimg-rootfs, as partition 1; placed
with `dd`, then compressed to qcow2.

It is cached under a key made of this recipe, beside the tiny image.
debootstrap needs root. Run directly to build and print the paths:
python tests/realguest/build.py
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
    "qemu-guest-agent",  # kubenet sets a restored guest's clock through it
]
DISK_SIZE = "2G"
ROOT_LABEL = "cloudimg-rootfs"  # what Ubuntu's cloud images call their root file system
ESP_MIB = 64
SECTOR = 512
# GRUB finds the root by its label and boots the kernel on the serial console, read-write.
GRUB_CFG = """\
insmod part_gpt
insmod ext2
search --no-floppy --label {label} --set=root
linux /boot/{kernel} root=LABEL={label} rw console=ttyS0
initrd /boot/{initrd}
boot
"""


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


def uefi_disk(tree: Path, work: Path, output: Path) -> None:
    """A GPT disk as Ubuntu's cloud images are: ESP (p15) with a standalone GRUB, root (p1) by label."""
    kernel, initrd = next(tree.glob("boot/vmlinuz-*")).name, next(tree.glob("boot/initrd.img-*")).name
    config = work / "grub.cfg"
    config.write_text(GRUB_CFG.format(label=ROOT_LABEL, kernel=kernel, initrd=initrd))
    grub = work / "BOOTX64.EFI"
    run(["grub-mkstandalone", "-O", "x86_64-efi", "-o", str(grub), f"boot/grub/grub.cfg={config}"])
    esp = work / "esp.img"
    run(["mkfs.vfat", "-C", "-n", "UEFI", str(esp), str(ESP_MIB * 1024)])
    run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"])
    run(["mcopy", "-i", str(esp), str(grub), "::/EFI/BOOT/BOOTX64.EFI"])
    root = work / "cloudimg-rootfs.img"
    run(["mkfs.ext4", "-q", "-L", ROOT_LABEL, "-d", str(tree), str(root), DISK_SIZE])
    esp_start = 2048  # 1 MiB, the usual alignment
    root_start = esp_start + esp.stat().st_size // SECTOR
    sectors = root_start + root.stat().st_size // SECTOR + 2048  # room for the backup GPT
    disk = work / "disk.raw"
    with open(disk, "wb") as stream:
        stream.truncate(sectors * SECTOR)
    run([
        "sgdisk",
        "-n", f"15:{esp_start}:{root_start - 1}", "-t", "15:ef00", "-c", "15:UEFI",
        "-n", f"1:{root_start}:{root_start + root.stat().st_size // SECTOR - 1}", "-t", "1:8300", "-c", f"1:{ROOT_LABEL}",
        str(disk),
    ])  # fmt: skip
    for image, start in ((esp, esp_start), (root, root_start)):
        run(["dd", f"if={image}", f"of={disk}", f"bs={SECTOR}", f"seek={start}", "conv=notrunc,sparse", "status=none"])
    run(["qemu-img", "convert", "-c", "-O", "qcow2", str(disk), str(output)])


def build_uefi(cache: Path | None = None) -> Path:
    """The guest as a UEFI-bootable cloud-like disk image (qcow2), built once per recipe."""
    cache = cache or cache_root()
    target = cache / recipe_key()
    image = target / "uefi.qcow2"
    if image.exists():
        return image
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
        uefi_disk(tree, work, staging / "uefi.qcow2")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return image


if __name__ == "__main__":
    print(build_uefi(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
