"""The Macs learners buy today, as pure functions over what the commands print (recorded
from real machines: an M2 on macOS 14, an M4 on macOS 15.2 and 26), so no Mac is needed."""

from ipaddress import IPv4Network

import pytest

from kubenet.machine import macos

M4_SYSCTL = "hw.optional.arm.FEAT_SME: 1\n"
M2_SYSCTL = "hw.optional.arm.FEAT_SME: 0\n"
M1_SYSCTL = ""  # older macOS: sysctl knows no such name and prints nothing on stdout
QEMU_92 = "QEMU emulator version 9.2.1\nCopyright (c) 2003-2024 Fabrice Bellard and the QEMU Project developers\n"
QEMU_10 = "QEMU emulator version 10.0.2\nCopyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n"
NETSTAT = """Routing tables

Internet:
Destination        Gateway            Flags               Netif Expire
default            192.168.1.254      UGScg                 en0
127                127.0.0.1          UCS                   lo0
192.168.1          link#11            UCS                   en0      !
192.168.64/24      link#24            UC               bridge100      !
10.2/16            192.168.64.12      UGSc             bridge100
"""


@pytest.mark.parametrize(
    "sysctl, sw_vers, qemu, broken",
    [
        (M4_SYSCTL, "15.2\n", QEMU_92, True),  # Lima's issue 3032: 'host-arm-cpu.sme' not found
        (M4_SYSCTL, "ProductName:\t\tmacOS\nProductVersion:\t\t26.0\nBuildVersion:\t\t25A354\n", QEMU_92, True),
        (M4_SYSCTL, "15.1\n", QEMU_92, False),  # before 15.2 macOS does not show SME
        (M4_SYSCTL, "15.2\n", QEMU_10, False),  # a qemu that hides it
        (M2_SYSCTL, "15.2\n", QEMU_92, False),
        (M1_SYSCTL, "14.6\n", QEMU_92, False),
    ],
)
def test_sme_breaks_the_host_cpu_only_on_an_m4_with_macos_15_2_and_an_older_qemu(sysctl, sw_vers, qemu, broken):
    assert macos.sme_breaks_host_cpu(sysctl, sw_vers, qemu) is broken


def test_the_cpu_a_vm_gets():
    assert macos.cpu_model(None, "hvf", sme_broken=True) == "cortex-a76"
    assert macos.cpu_model(None, "hvf", sme_broken=False) == "host"
    assert macos.cpu_model(None, "kvm", sme_broken=False) == "host"
    assert macos.cpu_model(None, "tcg", sme_broken=True) == "max"
    assert macos.cpu_model("host,sme=off", "hvf", sme_broken=True) == "host,sme=off"  # the role's cpu: wins


def test_an_m4_vm_starts_with_a_cpu_hvf_takes_and_argv_shows_it():
    from dataclasses import replace
    from pathlib import Path

    from kubenet.model.config import build_cluster
    from kubenet.model.host import host_profile
    from kubenet.run.qemu import qemu_argv

    cluster = build_cluster({"roles": [{"name": "node", "count": 1}, {"name": "big", "cpu": "host,sme=off"}]}, Path("/x/cluster.yaml"))
    host, _ = host_profile("darwin-arm64")
    cpu = lambda vm, on: qemu_argv(cluster, vm, on, "hvf", "vmnet-shared")[qemu_argv(cluster, vm, on, "hvf", "vmnet-shared").index("-cpu") + 1]  # noqa: E731
    assert cpu(cluster.vms[0], host) == "host"  # the tutorial's line, on a Mac whose qemu copes
    assert cpu(cluster.vms[0], replace(host, sme_breaks_host_cpu=True)) == "cortex-a76"
    assert cpu(cluster.vms[1], replace(host, sme_breaks_host_cpu=True)) == "host,sme=off"


@pytest.mark.parametrize("cpu", ["-monitor", "host;rm", "a b", "host,sme"])
def test_a_cpu_that_is_no_model_is_refused(cpu):
    from pathlib import Path

    from kubenet.model.config import build_cluster
    from kubenet.plumbing import errors

    with pytest.raises(errors.BadValueError, match=r"roles\[0\]\.cpu: .* is not allowed; allowed: a qemu CPU model"):
        build_cluster({"roles": [{"name": "node", "cpu": cpu}]}, Path("/x/cluster.yaml"))


def test_the_ranges_macos_keeps_for_itself():
    assert macos.reserved_clash(IPv4Network("192.168.1.0/24"), 26) is None
    assert macos.reserved_clash(IPv4Network("192.168.64.0/24"), 15) == "192.168.64.0/24 is macOS's own virtualization service (vmnet's default shared network)"
    assert macos.reserved_clash(IPv4Network("192.168.2.0/24"), 15) is None  # Internet Sharing's range matters from macOS 26
    assert macos.reserved_clash(IPv4Network("192.168.2.0/24"), 26) == "192.168.2.0/24 is macOS's Internet Sharing (vmnet-shared's default from macOS 26)"


def test_netstat_routes_are_read_with_their_interfaces():
    assert macos.netstat_routes(NETSTAT) == [
        ("lo0", IPv4Network("127.0.0.0/8")), ("en0", IPv4Network("192.168.1.0/24")),  # netstat's short forms
        ("bridge100", IPv4Network("192.168.64.0/24")), ("bridge100", IPv4Network("10.2.0.0/16")),
    ]  # fmt: skip
