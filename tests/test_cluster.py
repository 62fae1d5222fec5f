from ipaddress import IPv4Address
from pathlib import Path

import pytest

from kubenet.model.cluster import Network, Role, expand_vms, ip_address, mac_address
from kubenet.model.cluster import TUTORIAL_ROLES as DEFAULT_ROLES
from kubenet.model.config import build_cluster


@pytest.mark.parametrize(
    "vm_id, mac, ip",
    [
        (0, "52:52:52:00:00:00", "192.168.1.10"),
        (6, "52:52:52:00:00:06", "192.168.1.16"),
        (10, "52:52:52:00:00:0a", "192.168.1.20"),
        (200, "52:52:52:00:00:c8", "192.168.1.210"),
    ],
)
def test_mac_and_ip_per_id(vm_id, mac, ip):
    network = Network()
    assert mac_address(network.mac_prefix, vm_id) == mac
    assert ip_address(network, vm_id) == IPv4Address(ip)


def test_default_cluster_is_the_tutorials():
    cluster = build_cluster({}, Path("/tmp/x/cluster.yaml"))
    assert [(vm.id, vm.name, vm.role, vm.vcpus, vm.memory) for vm in cluster.vms] == [
        (0, "gateway", "gateway", 2, "2G"),
        (1, "control0", "control", 2, "2G"),
        (2, "control1", "control", 2, "2G"),
        (3, "control2", "control", 2, "2G"),
        (4, "worker0", "worker", 4, "4G"),
        (5, "worker1", "worker", 4, "4G"),
        (6, "worker2", "worker", 4, "4G"),
    ]
    assert cluster.roles == DEFAULT_ROLES
    assert cluster.state_dir == Path("/tmp/x/.kubenet")
    assert cluster.disk_size == "20G" and cluster.user == "ubuntu" and cluster.name == "kubenet"


def test_any_count_per_role_keeps_role_order():
    roles = (Role("lb", None, 1, "1G"), Role("control", 2, 2, "2G"), Role("worker", 5, 4, "4G"), Role("spare", 0, 1, "1G"))
    vms = expand_vms(roles, Network())
    assert [vm.name for vm in vms] == [
        "lb", "control0", "control1", "worker0", "worker1", "worker2", "worker3", "worker4",
    ]  # fmt: skip
    assert [vm.id for vm in vms] == list(range(8))
    assert vms[-1].mac == "52:52:52:00:00:07" and vms[-1].ip == IPv4Address("192.168.1.17")


def test_a_single_role_with_count_one_is_indexed():
    vms = expand_vms((Role("gateway", 1, 2, "2G"),), Network())
    assert [vm.name for vm in vms] == ["gateway0"]
