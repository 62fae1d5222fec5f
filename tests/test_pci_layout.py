"""Every launch form of a VM puts every device in the same PCI slot, checked with a real qemu.

UEFI keeps a VM's boot entries in its efivars.qcow2 by device path, PCI slot
included: a disk that moved between `invoke vm` and `invoke up` would leave
the VM booting PXE and the EFI shell instead.
"""

import asyncio
import os
import platform
import shlex
import shutil
import subprocess

import pytest

from conftest import run_invoke, wait_for

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64" or not shutil.which("qemu-system-x86_64") or not shutil.which("vde_switch"),
    reason="needs qemu-system-x86_64 and vde2",
)


def pci_slots(argv: list[str], socket: str) -> dict[str, str]:
    """Start `argv` paused and ask it where each PCI device sits: {slot: vendor:device}."""
    from qemu.qmp import QMPClient

    qemu = subprocess.Popen([*argv, "-S", "-qmp", f"unix:{socket},server=on,wait=off"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: os.path.exists(socket) or qemu.poll() is not None, timeout=30)
        assert qemu.poll() is None, qemu.stderr.read().decode()

        async def ask() -> list:
            client = QMPClient("test")
            await client.connect(socket)
            try:
                return await client.execute("query-pci")
            finally:
                await client.disconnect()

        buses = asyncio.run(ask())
        return {f"{device['slot']:02x}.{device['function']}": f"{device['id']['vendor']:04x}:{device['id']['device']:04x}" for bus in buses for device in bus["devices"]}
    finally:
        qemu.kill()
        qemu.wait()
        os.unlink(socket) if os.path.exists(socket) else None


def test_vm_vm_managed_and_up_give_every_device_the_same_slot(short_dir):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(short_dir / "base.qcow2"), "64M"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(short_dir / "id")], check=True)
    config = short_dir / "cluster.yaml"
    config.write_text("image: {url: base.qcow2}\nssh_key: id.pub\nnetwork: {mode: user}\nroles:\n  - {name: node, memory: 256M}\n")
    env = {"KUBENET_ACCEL": "tcg"}
    run_invoke("vmsetup", "--config", str(config), env=env, check=True)
    state = short_dir / ".kubenet"
    switch = subprocess.Popen(["vde_switch", "--sock", str(state / "vde.ctl")], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (state / "vde.ctl" / "ctl").exists())
        forms = {}
        for form, options in (("vm", []), ("managed", ["--managed"])):
            argv = shlex.split(run_invoke("argv", "--id", "0", *options, "--config", str(config), env=env, check=True).stdout)
            forms[form] = pci_slots(argv, str(short_dir / f"{form}.sock"))
        # virtio-rng, the guest agent's virtio-serial and the balloon: only the managed form (`up`, `vm --managed`) has them
        rng, serial, balloon = "1af4:1005", "1af4:1003", "1af4:1002"
        assert forms["managed"].pop("1e.0") == rng
        assert forms["managed"].pop("1d.0") == serial
        assert forms["managed"].pop("1c.0") == balloon
        assert forms["managed"] == forms["vm"]
        assert forms["vm"]["04.0"] == "1af4:1001"  # the disk: virtio-blk, after the two NICs
    finally:
        switch.kill()
        switch.wait()
