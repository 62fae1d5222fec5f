"""What the host's own networks allow: a cluster subnet that collides with a route the host
already has (Linux, bridge mode), and macOS's vmnet shared range."""

import os
import plistlib
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from conftest import INVOKE, ROOT, STUBS
from kubenet.plumbing import errors
from kubenet.model.config import build_cluster
from kubenet.model.host import Arch, Host
from kubenet.model.network import check_bridge_subnet, check_vmnet_shared, colliding_routes
from kubenet.machine.probe import read_routes, read_vmnet_shared
from test_tmux import write_cluster

PROC_NET_ROUTE = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    "eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
    "kubr0\t0064A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
)


def test_routes_are_read_from_proc_net_route():
    assert read_routes(PROC_NET_ROUTE) == (
        ("eth0", IPv4Network("0.0.0.0/0")),
        ("eth0", IPv4Network("192.168.1.0/24")),
        ("kubr0", IPv4Network("192.168.100.0/24")),
    )


def test_a_subnet_on_the_home_lan_is_refused_and_the_bridges_own_route_is_not_a_clash():
    host = Host("linux", Arch.x86_64, "q", bridges=frozenset({"kubr0"}), routes=read_routes(PROC_NET_ROUTE))
    home = build_cluster({}, Path("cluster.yaml")).network  # 192.168.1.0/24, the tutorial's
    assert colliding_routes(home, host) == ["192.168.1.0/24 on eth0"]
    with pytest.raises(errors.HostError, match=r"network.subnet 192.168.1.0/24 overlaps what this host already reaches: 192.168.1.0/24 on eth0 \(hint: move the cluster to another subnet"):
        check_bridge_subnet(home, host)
    moved = build_cluster(
        {"network": {"subnet": "192.168.100.0/24", "host_address": "192.168.100.1", "api_address": "192.168.100.21", "dhcp_end": "192.168.100.20"}},
        Path("cluster.yaml"),
    ).network
    check_bridge_subnet(moved, host)  # the default route and kubr0's own route are no clash


def write_plist(path: Path, address: str, mask: str) -> Path:
    path.write_bytes(plistlib.dumps({"Shared_Net_Address": address, "Shared_Net_Mask": mask, "NAT66_Prefix": "fd9b:5a14:ba57:e3d3::"}))
    return path


def test_macos_vmnet_range_must_match_the_systems_setting(tmp_path):
    network = build_cluster({}, Path("cluster.yaml")).network
    matching = read_vmnet_shared(write_plist(tmp_path / "same.plist", "192.168.1.1", "255.255.255.0"))
    assert matching == (IPv4Address("192.168.1.1"), IPv4Address("255.255.255.0"))
    check_vmnet_shared(network, Host("darwin", Arch.aarch64, "q", vmnet_shared=matching))
    other = read_vmnet_shared(write_plist(tmp_path / "other.plist", "192.168.64.1", "255.255.255.0"))
    with pytest.raises(errors.HostError) as raised:
        check_vmnet_shared(network, Host("darwin", Arch.aarch64, "q", vmnet_shared=other))
    assert str(raised.value) == (
        "macOS's vmnet shared network is 192.168.64.1 mask 255.255.255.0 (Shared_Net_Address and Shared_Net_Mask in "
        "/Library/Preferences/SystemConfiguration/com.apple.vmnet.plist), but cluster.yaml asks for 192.168.1.1 mask 255.255.255.0 "
        "(hint: set network.subnet: 192.168.64.0/24 and network.host_address: 192.168.64.1 (and api_address, dhcp_end inside it), "
        "or change the plist to match)"
    )
    assert read_vmnet_shared(tmp_path / "missing.plist") is None  # no setting: vmnet's defaults apply


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="makes a network namespace: needs root")
def test_bridge_mode_up_refuses_a_subnet_a_host_interface_already_has(short_dir):
    """In a network namespace of its own: a bridge kubr0, and an interface on the cluster's subnet."""
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    config.write_text(config.read_text().replace("network: {mode: user, api_address: 192.168.1.250}", "network: {mode: bridge, api_address: 192.168.1.250}"))
    script = (
        "mount -t sysfs sysfs /sys && "  # this namespace's interfaces, in a private mount namespace
        "ip link add kubr0 type bridge && ip link add lan0 type veth peer name lan1 && ip addr add 192.168.1.5/24 dev lan0 && "
        'ip link set lan1 up && ip link set lan0 up && exec "$@"'
    )
    env = {**os.environ, "KUBENET_TMUX_SOCKET": str(short_dir / "tmux.sock"), "KUBENET_QEMU": str(STUBS / "qemu-sleep"), "KUBENET_ACCEL": "tcg"}
    done = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(INVOKE), "--search-root", str(ROOT), "up", "--no-wait", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().startswith("kubenet: error: network.subnet 192.168.1.0/24 overlaps what this host already reaches: 192.168.1.0/24 on lan0")
    assert not (short_dir / ".kubenet" / "node0" / "qemu.pid").exists()  # nothing was started


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="makes a network namespace: needs root")
def test_bridge_mode_up_names_what_the_host_side_lacks_and_make_hostnet_as_the_fix(short_dir):
    """After a reboot the bridge may be back (netplan) but forwarding, NAT and DNS gone."""
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    config.write_text(config.read_text().replace("network: {mode: user, api_address: 192.168.1.250}", "network: {mode: bridge, api_address: 192.168.1.250}"))
    script = 'mount -t sysfs sysfs /sys && ip link add kubr0 type bridge && exec "$@"'
    env = {**os.environ, "KUBENET_TMUX_SOCKET": str(short_dir / "tmux.sock"), "KUBENET_QEMU": str(STUBS / "qemu-sleep"), "KUBENET_ACCEL": "tcg"}
    done = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(INVOKE), "--search-root", str(ROOT), "up", "--no-wait", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stderr.strip()) == (
        1,
        "kubenet: error: bridge mode needs on this host: address 192.168.1.1/24 on kubr0, IPv4 forwarding "
        "(hint: run `make hostnet` (it also sets up NAT and the cluster's names; it asks sudo once))",
    )


@pytest.mark.parametrize(
    "version, honoured",
    [("13.6.1", True), ("14.5", True), ("15.3.2", True), ("26.0", False), ("26.1.1", False), ("27.0", False), ("", True)],
)
def test_the_vmnet_plist_is_checked_only_where_macos_honours_it(version, honoured):
    from kubenet.model.network import vmnet_plist_honoured

    assert vmnet_plist_honoured(version) is honoured
