"""Whole qemu command lines, per kind of host."""

from dataclasses import replace
from pathlib import Path

import pytest

from kubenet.plumbing import errors
from kubenet.model.config import build_cluster
from kubenet.model.host import Firmware
from kubenet.model.host import Arch, Host, host_profile
from kubenet.model.network import resolve_mode
from kubenet.run.qemu import Management, qemu_argv

STATE = Path("/home/me/kubenet/.kubenet")
HOMEBREW_FIRMWARE = "/opt/homebrew/share/qemu/edk2-aarch64-code.fd"
NAMES = ["gateway", "control0", "control1", "control2", "worker0", "worker1", "worker2"]


def cluster(text: dict | None = None):
    return build_cluster(text or {}, Path("/home/me/kubenet/cluster.yaml"))


def tutorial_command(vmid: int) -> list[str]:
    """vmlaunch.sh from the tutorial, with $vmdir, $vcpus, $memory and $mac filled in."""
    vmdir = STATE / NAMES[vmid]
    vcpus, memory = (4, "4G") if NAMES[vmid].startswith("worker") else (2, "2G")
    return [
        "qemu-system-aarch64",
        "-nographic",
        "-machine", "virt,accel=hvf,highmem=on",
        "-cpu", "host",
        "-smp", str(vcpus),
        "-m", memory,
        "-bios", HOMEBREW_FIRMWARE,
        "-nic", f"vmnet-shared,start-address=192.168.1.1,end-address=192.168.1.20,subnet-mask=255.255.255.0,mac=52:52:52:00:00:0{vmid}",
        "-hda", f"{vmdir}/disk.img",
        "-drive", f"file={vmdir}/cidata.iso,driver=raw,if=virtio",
    ]  # fmt: skip


@pytest.mark.parametrize("vmid", range(7))
def test_macos_hvf_vmnet_is_the_tutorials_command(vmid):
    c = cluster()
    host, _ = host_profile("darwin-arm64")
    mode = resolve_mode(c.network, host)
    assert mode == "vmnet-shared"
    assert qemu_argv(c, c.vms[vmid], host, "hvf", mode) == tutorial_command(vmid)


OVMF = Firmware(Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd"))
AAVMF = Firmware(Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd"))


@pytest.mark.parametrize(
    "host, accel, mode, vmid, expected",
    [
        (
            Host("linux", Arch.x86_64, "qemu-system-x86_64", firmware=OVMF, bridges=frozenset({"kubr0"})),
            "kvm",
            "bridge",
            5,
            [
                "qemu-system-x86_64", "-nographic",
                "-machine", "q35,accel=kvm",
                "-cpu", "host", "-smp", "4", "-m", "4G",
                "-drive", "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on",
                "-drive", f"if=pflash,format=qcow2,unit=1,file={STATE}/worker1/efivars.qcow2",
                "-nic", "bridge,br=kubr0,model=virtio-net-pci,mac=52:52:52:00:00:05",
                "-drive", f"file={STATE}/worker1/disk.img,if=none,id=disk,format=qcow2", "-device", "virtio-blk-pci,drive=disk,bootindex=1",
                "-drive", f"file={STATE}/worker1/cidata.iso,driver=raw,if=virtio",
            ],
        ),
        (
            Host("linux", Arch.x86_64, "qemu-system-x86_64", firmware=OVMF, bridges=frozenset()),
            "tcg",
            "user",
            0,
            [
                "qemu-system-x86_64", "-nographic",
                "-machine", "q35", "-accel", "tcg,tb-size=256",
                "-cpu", "max", "-smp", "2", "-m", "2G",
                "-drive", "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on",
                "-drive", f"if=pflash,format=qcow2,unit=1,file={STATE}/gateway/efivars.qcow2",
                "-nic", "user,model=virtio-net-pci,mac=52:54:00:00:00:00,hostfwd=tcp:127.0.0.1:2200-:22",
                "-nic", f"vde,sock={STATE}/vde.ctl,model=virtio-net-pci,mac=52:52:52:00:00:00",
                "-drive", f"file={STATE}/gateway/disk.img,if=none,id=disk,format=qcow2", "-device", "virtio-blk-pci,drive=disk,bootindex=1",
                "-drive", f"file={STATE}/gateway/cidata.iso,driver=raw,if=virtio",
            ],
        ),
        (
            Host("linux", Arch.aarch64, "qemu-system-aarch64", firmware=AAVMF, bridges=frozenset()),
            "tcg",
            "user",
            3,
            [
                "qemu-system-aarch64", "-nographic",
                "-machine", "virt,highmem=on", "-accel", "tcg,tb-size=256",
                "-cpu", "max", "-smp", "2", "-m", "2G",
                "-bios", "/usr/share/AAVMF/AAVMF_CODE.fd",
                "-nic", "user,model=virtio-net-pci,mac=52:54:00:00:00:03,hostfwd=tcp:127.0.0.1:2203-:22",
                "-nic", f"vde,sock={STATE}/vde.ctl,model=virtio-net-pci,mac=52:52:52:00:00:03",
                "-hda", f"{STATE}/control2/disk.img",
                "-drive", f"file={STATE}/control2/cidata.iso,driver=raw,if=virtio",
            ],
        ),
    ],
    ids=["linux-x86_64-kvm-bridge", "linux-x86_64-tcg-user", "linux-aarch64-tcg-user"],
)
def test_linux_commands(host, accel, mode, vmid, expected):
    c = cluster()
    assert resolve_mode(c.network, host) == mode
    assert qemu_argv(c, c.vms[vmid], host, accel, mode) == expected


def test_direct_kernel_boot_needs_no_firmware_and_adds_management():
    c = cluster({"image": {"kind": "kernel", "kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img", "cmdline": "quiet"}})
    host = Host("linux", Arch.x86_64, "qemu-system-x86_64", firmware=None, bridges=frozenset())
    management = Management(
        qmp=STATE / "gateway/qmp.sock", pidfile=STATE / "gateway/qemu.pid", serial_log=STATE / "gateway/serial.log", guest_agent=STATE / "gateway/qga.sock"
    )
    assert qemu_argv(c, c.vms[0], host, "tcg", "user", management) == [
        "qemu-system-x86_64", "-nographic",
        "-machine", "q35", "-accel", "tcg,tb-size=256",
        "-cpu", "max", "-smp", "2", "-m", "2G",
        "-kernel", "/boot/vmlinuz", "-initrd", "/boot/initrd.img", "-append", "quiet console=ttyS0",
        "-nic", "user,model=virtio-net-pci,mac=52:54:00:00:00:00,hostfwd=tcp:127.0.0.1:2200-:22",
        "-nic", f"vde,sock={STATE}/vde.ctl,model=virtio-net-pci,mac=52:52:52:00:00:00",
        "-drive", f"file={STATE}/gateway/disk.img,if=none,id=disk,format=qcow2", "-device", "virtio-blk-pci,drive=disk,bootindex=1",
        "-drive", f"file={STATE}/gateway/cidata.iso,driver=raw,if=virtio,readonly=on",
        "-chardev", f"stdio,id=console,mux=on,signal=off,logfile={STATE}/gateway/serial.log",
        "-serial", "chardev:console",
        "-mon", "chardev=console,mode=readline",
        "-qmp", f"unix:{STATE}/gateway/qmp.sock,server=on,wait=off",
        "-pidfile", f"{STATE}/gateway/qemu.pid",
        "-device", "virtio-rng-pci,addr=0x1e",
        "-chardev", f"socket,id=guest-agent,path={STATE}/gateway/qga.sock,server=on,wait=off",
        "-device", "virtio-serial-pci,id=guest-serial,addr=0x1d",
        "-device", "virtserialport,bus=guest-serial.0,chardev=guest-agent,name=org.qemu.guest_agent.0",
        "-device", "virtio-balloon-pci,id=balloon,free-page-reporting=on,addr=0x1c",
    ]  # fmt: skip


def test_a_cloud_image_without_firmware_is_a_clear_error():
    c = cluster()
    host = Host("linux", Arch.x86_64, "qemu-system-x86_64", bridges=frozenset(), firmware_error="no UEFI firmware for x86_64 (hint: apt install ovmf)")
    with pytest.raises(errors.HostError, match="no UEFI firmware for x86_64"):
        qemu_argv(c, c.vms[0], host, "tcg", "user")


@pytest.mark.parametrize(
    "system, mode, bridges, expected",
    [
        ("darwin", "auto", frozenset(), "vmnet-shared"),
        ("linux", "auto", frozenset({"kubr0"}), "bridge"),
        ("linux", "auto", frozenset({"virbr0"}), "user"),
        ("linux", "user", frozenset({"kubr0"}), "user"),
        ("darwin", "user", frozenset(), "user"),
    ],
)
def test_network_mode_resolution(system, mode, bridges, expected):
    c = cluster({"network": {"mode": mode}})
    host = Host(system, Arch.aarch64, "q", bridges=bridges)
    assert resolve_mode(c.network, host) == expected


@pytest.mark.parametrize(
    "system, mode, message",
    [
        (
            "linux",
            "bridge",
            "bridge kubr0 does not exist (hint: run `make hostnet` (it makes the bridge with its address, NAT, DNS and DHCP, "
            "as cluster.yaml says), or set network.mode: user)",
        ),
        ("linux", "vmnet-shared", "network mode vmnet-shared needs macOS (hint: set network.mode to bridge or user)"),
        ("darwin", "bridge", "network mode bridge needs Linux (hint: set network.mode to vmnet-shared or user)"),
    ],
)
def test_network_modes_this_host_cannot_run(system, mode, message):
    c = cluster({"network": {"mode": mode}})
    with pytest.raises(errors.HostError) as excinfo:
        resolve_mode(c.network, Host(system, Arch.x86_64, "q", bridges=frozenset()))
    assert str(excinfo.value) == message


def test_tcg_uses_cpu_max_even_on_macos():
    c = cluster()
    argv = qemu_argv(c, c.vms[0], host_profile("darwin-arm64")[0], "tcg", "vmnet-shared")
    assert argv[argv.index("-machine") + 1 : argv.index("-machine") + 4] == ["virt,highmem=on", "-accel", "tcg,tb-size=256"]
    assert argv[argv.index("-cpu") + 1] == "max"


def test_qemu_binary_override_is_used():
    c = cluster()
    host = replace(host_profile("linux-x86_64")[0], qemu="/opt/stub/qemu")
    assert qemu_argv(c, c.vms[0], host, "kvm", "bridge")[0] == "/opt/stub/qemu"


def management(vm: str) -> Management:
    return Management(
        qmp=STATE / f"{vm}/qmp.sock", pidfile=STATE / f"{vm}/qemu.pid", serial_log=STATE / f"{vm}/serial.log", guest_agent=STATE / f"{vm}/qga.sock"
    )


MANAGEMENT_OPTIONS = [
    "-chardev", f"stdio,id=console,mux=on,signal=off,logfile={STATE}/worker1/serial.log",
    "-serial", "chardev:console",
    "-mon", "chardev=console,mode=readline",
    "-qmp", f"unix:{STATE}/worker1/qmp.sock,server=on,wait=off",
    "-pidfile", f"{STATE}/worker1/qemu.pid",
    "-device", "virtio-rng-pci,addr=0x1e",
    "-chardev", f"socket,id=guest-agent,path={STATE}/worker1/qga.sock,server=on,wait=off",
    "-device", "virtio-serial-pci,id=guest-serial,addr=0x1d",
    "-device", "virtserialport,bus=guest-serial.0,chardev=guest-agent,name=org.qemu.guest_agent.0",
    "-device", "virtio-balloon-pci,id=balloon,free-page-reporting=on,addr=0x1c",
]  # fmt: skip


def with_read_only_seed(argv: list[str]) -> list[str]:
    """The managed forms' seed is read-only, so that every writable drive can hold a snapshot."""
    return [arg + ",readonly=on" if arg.endswith("cidata.iso,driver=raw,if=virtio") else arg for arg in argv]


def test_managed_macos_command_is_the_tutorials_with_a_read_only_seed_and_management_after_it():
    c = cluster()
    host, _ = host_profile("darwin-arm64")
    assert qemu_argv(c, c.vms[5], host, "hvf", "vmnet-shared", management("worker1")) == with_read_only_seed(tutorial_command(5)) + MANAGEMENT_OPTIONS


def test_managed_linux_uefi_command_pins_what_it_adds():
    c = cluster()
    host = Host("linux", Arch.x86_64, "qemu-system-x86_64", firmware=OVMF, bridges=frozenset())
    assert qemu_argv(c, c.vms[5], host, "tcg", "user", management("worker1")) == [
        "qemu-system-x86_64", "-nographic",
        "-machine", "q35", "-accel", "tcg,tb-size=256",
        "-cpu", "max", "-smp", "4", "-m", "4G",
        "-drive", "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on",
        "-drive", f"if=pflash,format=qcow2,unit=1,file={STATE}/worker1/efivars.qcow2",
        "-nic", "user,model=virtio-net-pci,mac=52:54:00:00:00:05,hostfwd=tcp:127.0.0.1:2205-:22",
        "-nic", f"vde,sock={STATE}/vde.ctl,model=virtio-net-pci,mac=52:52:52:00:00:05",
        "-drive", f"file={STATE}/worker1/disk.img,if=none,id=disk,format=qcow2", "-device", "virtio-blk-pci,drive=disk,bootindex=1",
        "-drive", f"file={STATE}/worker1/cidata.iso,driver=raw,if=virtio,readonly=on",
        *MANAGEMENT_OPTIONS,
    ]  # fmt: skip


ROOT_MANAGEMENT_OPTIONS = [
    "-chardev", f"stdio,id=console,mux=on,signal=off,logfile={STATE}/worker1/serial.log",
    "-serial", "chardev:console",
    "-mon", "chardev=console,mode=readline",
    # the QMP socket arrives ready-made, the user's, from handover.py
    "-chardev", "socket,id=qmp,fd=3,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
    "-pidfile", f"{STATE}/worker1/qemu.pid",
    "-device", "virtio-rng-pci,addr=0x1e",
    # and so does the guest agent's
    "-chardev", "socket,id=guest-agent,fd=4,server=on,wait=off",
    "-device", "virtio-serial-pci,id=guest-serial,addr=0x1d",
    "-device", "virtserialport,bus=guest-serial.0,chardev=guest-agent,name=org.qemu.guest_agent.0",
    "-device", "virtio-balloon-pci,id=balloon,free-page-reporting=on,addr=0x1c",
]  # fmt: skip


def test_on_macos_up_starts_the_tutorials_command_as_root_and_qemu_then_runs_as_the_user():
    from kubenet.run.asroot import HANDOVER, handover_argv
    from kubenet.run.launch import vm_argv
    from kubenet.machine.target import Target

    c = cluster()
    host = replace(host_profile("darwin-arm64")[0], qemu_version=(10, 1))
    target = Target(host, "hvf", "vmnet-shared", root=True, run_as="alice")
    argv = vm_argv(c, c.vms[5], target, managed=True)
    assert argv == with_read_only_seed(tutorial_command(5)) + ROOT_MANAGEMENT_OPTIONS + ["-run-with", "user=alice"]
    pane = handover_argv("alice", STATE / "worker1/qmp.sock", STATE / "worker1/qga.sock", argv)
    assert pane[1:8] == ["-I", str(HANDOVER), "alice", f"{STATE}/worker1/qmp.sock", f"{STATE}/worker1/qga.sock", "--", argv[0]]
    # `invoke argv` without --managed: the tutorial's command as it is
    assert vm_argv(c, c.vms[5], target) == tutorial_command(5)


def test_how_qemu_is_told_to_drop_root_follows_its_version():
    from kubenet.machine.probe import parse_qemu_version
    from kubenet.run.qemu import run_as_options

    assert parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright") == (7, 2)
    assert parse_qemu_version("QEMU emulator version 10.1.2\n") == (10, 1)
    assert parse_qemu_version("") is None
    assert run_as_options("kim", (7, 2)) == ["-runas", "kim"]  # Debian 12
    assert run_as_options("kim", (9, 0)) == ["-runas", "kim"]
    assert run_as_options("kim", (9, 1)) == ["-run-with", "user=kim"]  # -runas is gone in 10.0
    assert run_as_options("a,b", None) == ["-run-with", "user=a,,b"]  # a comma would end the value


def test_a_network_that_needs_no_root_changes_nothing():
    from kubenet.run.launch import vm_argv
    from kubenet.machine.target import Target

    c = cluster()
    host = Host("linux", Arch.x86_64, "qemu-system-x86_64", firmware=OVMF, bridges=frozenset(), bridge_helper_setuid=True)
    target = Target(host, "tcg", "user", root=False)
    assert vm_argv(c, c.vms[5], target, managed=True)[-len(MANAGEMENT_OPTIONS):] == MANAGEMENT_OPTIONS


def test_extra_qemu_args_come_after_kubenets_own_cluster_first_then_the_roles():
    c = cluster({
        "qemu_args": ["-device", "virtio-tablet-pci"],
        "roles": [{"name": "gateway"}, {"name": "worker", "count": 2, "qemu_args": ["-device", "intel-hda", "-device", "hda-duplex"]}],
    })  # fmt: skip
    host, _ = host_profile("darwin-arm64")
    plain = qemu_argv(cluster({"roles": [{"name": "gateway"}, {"name": "worker", "count": 2}]}), c.vms[1], host, "hvf", "vmnet-shared")
    assert qemu_argv(c, c.vms[1], host, "hvf", "vmnet-shared") == [*plain, "-device", "virtio-tablet-pci", "-device", "intel-hda", "-device", "hda-duplex"]
    gateway = qemu_argv(c, c.vms[0], host, "hvf", "vmnet-shared")
    assert gateway[-2:] == ["-device", "virtio-tablet-pci"] and "intel-hda" not in gateway


@pytest.mark.parametrize(
    "args, refused",
    [
        (["-m", "8G"], "'-m' redefines the VM's memory (role memory:), which kubenet sets"),
        (["--machine", "q35"], "'--machine' redefines the machine (and accelerator), which kubenet sets"),
        (["-drive", "file=/x/disk.img,if=virtio"], "'-drive' redefines the disk, seed and UEFI drives, which kubenet sets"),
        (["-drive", "if=pflash,format=raw,file=vars.fd"], "'-drive' redefines the disk, seed and UEFI drives, which kubenet sets"),
        (["-chardev", "socket,id=qmp,path=/tmp/q"], "'-chardev' redefines the console, QMP and guest agent character devices, which kubenet sets"),
    ],
)
def test_extra_qemu_args_that_redefine_what_kubenet_owns_are_refused(args, refused):
    with pytest.raises(errors.BadValueError) as excinfo:
        cluster({"roles": [{"name": "node", "qemu_args": args}]})
    assert str(excinfo.value) == (
        f"/home/me/kubenet/cluster.yaml: roles[0].qemu_args: {refused} (hint: set it through cluster.yaml's own key, or leave it to kubenet)"
    )


def test_extra_qemu_args_must_be_a_list_of_strings_and_may_add_drives_of_their_own():
    with pytest.raises(errors.WrongTypeError) as excinfo:
        cluster({"qemu_args": "-device virtio-tablet-pci"})
    assert "qemu_args: expected a list of printable strings" in str(excinfo.value)
    assert cluster({"qemu_args": ["-drive", "file=/data/extra.qcow2,if=virtio"]}).qemu_args == ("-drive", "file=/data/extra.qcow2,if=virtio")


MONITOR = "opens a monitor (HMP, QMP or gdb), through which whoever reaches it runs commands in qemu as you (hint: kubenet's own QMP socket (<state_dir>/<vm>/qmp.sock) is yours alone: use that)"
EVERYWHERE = "listens on every address of this machine, beyond loopback: anyone who reaches it takes over the VM's console or screen (hint: bind it to 127.0.0.1 (e.g. -vnc 127.0.0.1:0), or use a unix socket)"


@pytest.mark.parametrize(
    "args, said",
    [
        (["-monitor", "unix:/tmp/m,server,nowait"], f"'-monitor' {MONITOR}"),
        (["-monitor", "tcp:0.0.0.0:4444,server,nowait"], f"'-monitor' {MONITOR}"),
        (["--monitor=stdio"], f"'--monitor=stdio' {MONITOR}"),
        (["-qmp-pretty", "unix:/tmp/q,server"], f"'-qmp-pretty' {MONITOR}"),
        (["--qmp", "tcp::4444,server"], f"'--qmp' {MONITOR}"),
        (["-mon", "chardev=x"], f"'-mon' {MONITOR}"),
        (["-gdb", "tcp::1234"], f"'-gdb' {MONITOR}"),
        (["-s"], f"'-s' {MONITOR}"),
        (["-chardev", "socket,id=c1,port=4444,server=on,wait=off"], f"'-chardev' {EVERYWHERE}"),
        (["-chardev", "socket,id=c1,host=0.0.0.0,port=4444,server=on"], f"'-chardev' {EVERYWHERE}"),
        (["-chardev", "socket,id=c1,host=192.168.0.5,port=4444,server"], "'-chardev' listens on 192.168.0.5, beyond loopback: anyone who reaches it takes over the VM's console or screen (hint: bind it to 127.0.0.1 (e.g. -vnc 127.0.0.1:0), or use a unix socket)"),
        (["-vnc", ":0"], f"'-vnc' {EVERYWHERE}"),
        (["--vnc", "0.0.0.0:1"], f"'--vnc' {EVERYWHERE}"),
        (["-vnc", "127.0.0.1:0,websocket=5700"], f"'-vnc' {EVERYWHERE}"),
        (["-display", "vnc=:3"], f"'-display' {EVERYWHERE}"),
        (["-spice", "port=5900,disable-ticketing=on"], f"'-spice' {EVERYWHERE}"),
        (["-parallel", "tcp::4555,server=on"], f"'-parallel' {EVERYWHERE}"),
        (["-incoming", "tcp:0:4446"], f"'-incoming' {EVERYWHERE}"),
        (["-snapshot"], "'-snapshot' throws away every write to the VM's disk when qemu exits (hint: take a snapshot with `invoke snapshot save NAME` instead)"),
        (["--snapshot"], "'--snapshot' throws away every write to the VM's disk when qemu exits (hint: take a snapshot with `invoke snapshot save NAME` instead)"),
        (["-hda", "/data/x.img"], "'-hda' redefines the disk slots (kubenet's disk is one; add a disk with -drive file=PATH,if=virtio), which kubenet sets (hint: set it through cluster.yaml's own key, or leave it to kubenet)"),
        (["-enable-kvm"], "'-enable-kvm' redefines the accelerator (use --accel or accel:, and tcg_tb_size:), which kubenet sets (hint: set it through cluster.yaml's own key, or leave it to kubenet)"),
        (["-set", "drive.disk.file=/x"], "'-set' redefines options of kubenet's own devices, which kubenet sets (hint: set it through cluster.yaml's own key, or leave it to kubenet)"),
    ],
)
def test_extra_qemu_args_that_open_a_monitor_listen_beyond_loopback_or_drop_writes_are_refused(args, said):
    with pytest.raises(errors.BadValueError) as excinfo:
        cluster({"roles": [{"name": "node", "qemu_args": args}]})
    assert str(excinfo.value) == f"/home/me/kubenet/cluster.yaml: roles[0].qemu_args: {said}"


@pytest.mark.parametrize(
    "args",
    [
        ["-vnc", "127.0.0.1:0"], ["-vnc", "unix:/tmp/vnc.sock"], ["-display", "none"], ["-spice", "port=5930,addr=127.0.0.1"],
        ["-chardev", "socket,id=c1,path=/tmp/c.sock,server=on,wait=off"], ["-chardev", "socket,id=c1,host=127.0.0.1,port=4444,server=on"],
        ["-chardev", "socket,id=c1,host=example.org,port=4444"],  # a client: it listens nowhere
        ["-device", "virtio-tablet-pci"], ["-drive", "file=/data/extra.qcow2,if=virtio"],
    ],
)
def test_extra_qemu_args_that_stay_on_loopback_or_add_their_own_devices_are_taken(args):
    assert cluster({"qemu_args": args}).qemu_args == tuple(args)


def test_an_extra_drive_may_not_name_kubenets_files_even_through_a_link(tmp_path, monkeypatch):
    from kubenet.model.config import load_cluster

    monkeypatch.setenv("KUBENET_CACHE", str(tmp_path / "cache"))
    (tmp_path / ".kubenet" / "worker0").mkdir(parents=True)
    (tmp_path / ".kubenet" / "worker0" / "disk.img").write_bytes(b"")
    (tmp_path / "innocent.qcow2").symlink_to(tmp_path / ".kubenet" / "worker0" / "disk.img")
    (tmp_path / "cache" / "images").mkdir(parents=True)
    (tmp_path / "base.img").symlink_to(tmp_path / "cache" / "images")
    config = tmp_path / "cluster.yaml"
    hint = " (hint: give an extra drive a file of its own, outside state_dir and the image cache)"
    for args, named in [
        (["-drive", "file=innocent.qcow2,if=virtio"], "innocent.qcow2"),
        (["-drive", f"if=virtio,file={tmp_path}/innocent.qcow2"], f"{tmp_path}/innocent.qcow2"),
        (["-blockdev", '{"driver": "qcow2", "file": {"driver": "file", "filename": "innocent.qcow2"}}'], "innocent.qcow2"),
        (["-cdrom", "base.img/jammy.img"], "base.img/jammy.img"),
    ]:
        config.write_text(f"qemu_args: {json_list(args)}\n")
        with pytest.raises(errors.BadValueError) as refused:
            load_cluster(config)
        assert str(refused.value) == f"{config}: qemu_args: {args[0]!r} names {named}, one of kubenet's own files (a VM's disk, seed or UEFI variables, the base image){hint}"
    config.write_text("qemu_args: [-drive, 'file=/data/extra.qcow2,if=virtio']\n")
    assert load_cluster(config).qemu_args == ("-drive", "file=/data/extra.qcow2,if=virtio")


def json_list(args: list[str]) -> str:
    import json

    return json.dumps(args)
