"""The qemu command line of one VM, as a list with one option and its value per line.

`qemu_argv` is pure: the host, accelerator and network mode are decided by the
caller (see host.py and network.py), so every kind of host can be tested here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..model.cluster import VM, Accel, Cluster, ImageKind, NetworkMode
from ..machine.macos import cpu_model
from ..model.host import Host
from ..model.network import nic_options
from ..model.paths import vde_socket_path, vm_paths
from ..plumbing import errors


# Free on q35 and virt, whose default devices sit low (and at 0x1f on q35).
RNG_PCI_SLOT = "0x1e"
SERIAL_PCI_SLOT = "0x1d"  # the guest agent's virtio-serial controller
BALLOON_PCI_SLOT = "0x1c"  # the memory balloon
GUEST_AGENT_PORT = "org.qemu.guest_agent.0"  # the port name qemu-ga looks for


@dataclass(frozen=True)
class Management:
    """Options kubenet adds when it runs a VM for `up`: control socket, pid file, console log, entropy."""

    qmp: Path
    pidfile: Path
    serial_log: Path
    guest_agent: Path
    # For a qemu that starts as root: its QMP and guest agent sockets, made as the user,
    # arrive on these file descriptors (see handover.py) instead of qemu making them (root's).
    qmp_fd: int | None = None
    guest_agent_fd: int | None = None


def qemu_argv(
    cluster: Cluster, vm: VM, host: Host, accel: Accel, mode: NetworkMode, management: Management | None = None
) -> list[str]:
    paths = vm_paths(cluster, vm)
    arch = host.arch
    argv = [
        host.qemu,
        "-nographic",
        *accel_options(arch.machine_type(), arch.machine_options(), accel, cluster.tcg_tb_size),
        "-cpu", cpu_model(role_of(cluster, vm).cpu if role_of(cluster, vm) else None, accel, host.sme_breaks_host_cpu),
        "-smp", str(vm.vcpus),
        "-m", vm.memory,
    ]  # fmt: skip
    argv += boot_options(cluster, host, paths.efivars)
    argv += nic_options(cluster.network, mode, vm, vde_socket_path(cluster))
    argv += arch.disk_options(paths.disk)
    # Read-only where kubenet manages the VM: QEMU snapshots every writable drive, and a
    # raw one cannot hold a snapshot. The tutorial's line (`argv`, `vm`) keeps its own.
    argv += ["-drive", f"file={paths.seed},driver=raw,if=virtio" + (",readonly=on" if management else "")]
    if management:
        argv += management_options(management)
    role = role_of(cluster, vm)
    return argv + [*cluster.qemu_args, *(role.qemu_args if role else ())]


def role_of(cluster: Cluster, vm: VM):
    return next((role for role in cluster.roles if role.name == vm.role), None)


# TCG's translation cache, in MiB. QEMU's default for system emulation is 1 GiB per VM,
# all of it touched: more than a small VM's own memory. Past this size the tiny and the
# UEFI guests boot no faster (`make bench-memory`); `tcg_tb_size:` in cluster.yaml overrides it.
TCG_TB_SIZE_MIB = 256


def accel_options(machine_type: str, machine_options: tuple[str, ...], accel: Accel, tb_size: int | None) -> list[str]:
    """The machine and its accelerator. Under TCG the accelerator is an -accel of its own,
    as its translation cache size is a property of it (and -accel excludes -machine accel=);
    hardware accelerators keep the tutorial's `-machine type,accel=` form."""
    if accel == "tcg":
        return ["-machine", ",".join((machine_type, *machine_options)), "-accel", f"tcg,tb-size={tb_size or TCG_TB_SIZE_MIB}"]
    return ["-machine", ",".join((machine_type, f"accel={accel}", *machine_options))]


def boot_options(cluster: Cluster, host: Host, efivars: Path) -> list[str]:
    image = cluster.image
    if image.kind == ImageKind.KERNEL:
        cmdline = image.cmdline if "console=" in image.cmdline else f"{image.cmdline} console={host.arch.serial_console()}"
        return ["-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline.strip()]
    if host.firmware is None:
        raise errors.HostError(host.firmware_error or f"no UEFI firmware for {host.arch.value}")
    return host.arch.firmware_options(host.firmware, efivars)


def management_options(management: Management) -> list[str]:
    return [
        # The console stays on stdio (the tmux pane) and is also logged to a file.
        "-chardev", f"stdio,id=console,mux=on,signal=off,logfile={management.serial_log}",
        "-serial", "chardev:console",
        "-mon", "chardev=console,mode=readline",
        *qmp_options(management),
        "-pidfile", str(management.pidfile),
        # A slot of its own: auto-assigned, it would take the disk's slot and move the
        # disk, and UEFI keeps boot entries by slot (the VM's efivars.qcow2 would then
        # point at nothing). Every launch form gives every other device the same slot.
        "-device", f"virtio-rng-pci,addr={RNG_PCI_SLOT}",
        # The guest agent's port, through which a restored guest's clock is set.
        *guest_agent_options(management),
        # Free page reporting: the guest tells qemu which of its pages are free (2 MiB at a
        # time, seconds after they are freed), and qemu gives them back to the host. Without
        # it a page the guest touched once (page cache since dropped) stays with qemu for good.
        "-device", f"virtio-balloon-pci,id=balloon,free-page-reporting=on,addr={BALLOON_PCI_SLOT}",
    ]  # fmt: skip


def guest_agent_options(management: Management) -> list[str]:
    if management.guest_agent_fd is None:
        socket = f"socket,id=guest-agent,path={management.guest_agent},server=on,wait=off"
    else:
        socket = f"socket,id=guest-agent,fd={management.guest_agent_fd},server=on,wait=off"
    return [
        "-chardev", socket,
        "-device", f"virtio-serial-pci,id=guest-serial,addr={SERIAL_PCI_SLOT}",
        "-device", f"virtserialport,bus=guest-serial.0,chardev=guest-agent,name={GUEST_AGENT_PORT}",
    ]  # fmt: skip


def qmp_options(management: Management) -> list[str]:
    if management.qmp_fd is None:
        return ["-qmp", f"unix:{management.qmp},server=on,wait=off"]
    return ["-chardev", f"socket,id=qmp,fd={management.qmp_fd},server=on,wait=off", "-mon", "chardev=qmp,mode=control"]


# qemu 9.1 replaced -runas with -run-with user= (and 10.0 removed -runas).
RUN_WITH_SINCE = (9, 1)


def run_as_options(user: str, version: tuple[int, int] | None) -> list[str]:
    """For a qemu that starts as root (its network needs it): run as `user` once the
    network is open. An unknown version is taken to be a current qemu."""
    if version is not None and version < RUN_WITH_SINCE:
        return ["-runas", user]
    return ["-run-with", "user=" + user.replace(",", ",,")]  # a comma would end the value
