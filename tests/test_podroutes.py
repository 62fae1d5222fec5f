"""The pod routes of ch. 6 as data, and what macOS's routing table says of them (pure)."""

from pathlib import Path

from kubenet.model.config import build_cluster
from kubenet.hostside.podroutes import darwin_destination, darwin_route_argv, darwin_routes, missing_routes, pod_routes

# `netstat -rn -f inet` on macOS with one VM's pod route in place
NETSTAT = """\
Routing tables

Internet:
Destination        Gateway            Flags               Netif Expire
default            192.168.0.1        UGScg                 en0
10.1/16            192.168.1.11       UGSc            bridge100
127                127.0.0.1          UCS                   lo0
127.0.0.1          127.0.0.1          UH                    lo0
192.168.1          link#22            UC              bridge100      !
192.168.1.11       52:52:52:0:0:1     UHLWIi          bridge100   1172
"""


def test_every_vm_but_the_gateway_has_its_pods_network_routed_to_it():
    cluster = build_cluster({}, Path("/tmp/c.yaml"))  # the tutorial's seven VMs
    assert pod_routes(cluster) == [(f"10.{n}.0.0/16", f"192.168.1.{10 + n}") for n in range(1, 7)]


def test_macos_abbreviated_destinations_are_read_in_full_and_only_missing_routes_are_added():
    assert darwin_destination("10.1/16") == "10.1.0.0/16"
    assert darwin_destination("192.168.1.11") is None and darwin_destination("default") is None
    assert darwin_destination("10.300/16") is None and darwin_destination("Destination") is None
    present = darwin_routes(NETSTAT)
    assert ("10.1.0.0/16", "192.168.1.11") in present
    cluster = build_cluster({"roles": [{"name": "gateway", "count": 1}, {"name": "worker", "count": 2}]}, Path("/tmp/c.yaml"))
    assert missing_routes(cluster, present) == [("10.2.0.0/16", "192.168.1.12")]
    assert darwin_route_argv("10.2.0.0/16", "192.168.1.12") == ["sudo", "--", "/sbin/route", "-n", "add", "-net", "10.2.0.0/16", "192.168.1.12"]


def test_ls_says_in_user_mode_that_neither_routes_nor_the_export_can_serve(tmp_path):
    from kubenet.hostside import nfsexport
    from kubenet.hostside import podroutes
    from kubenet.model.cluster import NetworkMode

    cluster = build_cluster({"pod_routes": True, "nfs": {"path": "pvs"}}, tmp_path / "c.yaml")
    assert podroutes.note(cluster, "linux", NetworkMode.USER) == (
        "kubenet: pod routes: the host is not on the cluster's segment in user mode, so no route leads there"
    )
    assert nfsexport.note(cluster, "linux", NetworkMode.USER) == (
        f"kubenet: NFS export: {tmp_path / 'pvs'} is for bridge mode or vmnet-shared; in user mode the VMs cannot reach it"
    )
    assert nfsexport.note(cluster, "darwin", NetworkMode.VMNET_SHARED) == (
        f"kubenet: NFS export: {tmp_path / 'pvs'}, mounted as vmhost:{tmp_path / 'pvs'} (macOS's nfsd)"
    )
    bare = build_cluster({}, tmp_path / "c.yaml")
    assert podroutes.note(bare, "linux", NetworkMode.BRIDGE) is None and nfsexport.note(bare, "linux", NetworkMode.BRIDGE) is None
