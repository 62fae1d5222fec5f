"""Whole seed files per role and per network mode, the ISO read back, and real cloud-init validation."""

import io
import re
import shutil
import subprocess
from pathlib import Path

import pycdlib
import pytest
import yaml

from kubenet.plumbing import errors
from kubenet.prepare.bootmarks import WATCHER
from kubenet.model.config import build_cluster, load_cluster
from kubenet.prepare.seed import (
    HostKey,
    hosts_entries,
    meta_data,
    network_config,
    read_templates,
    seed_files,
    template_paths,
    user_data,
    write_seed_iso,
)

LOGIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeLoginKeyForTestsOnly me@laptop\n"
HOST_KEY = HostKey(
    private="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\nBBBB\n-----END OPENSSH PRIVATE KEY-----\n",
    public="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKey root@x\n",
)


@pytest.fixture(scope="module")
def cluster():
    return build_cluster({}, Path("/home/me/kubenet/cluster.yaml"))


@pytest.fixture(scope="module")
def templates(cluster):
    return read_templates(cluster)


HOSTS_BRIDGE = """\
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
# kubenet cluster
192.168.1.1 vmhost.kubenet vmhost
192.168.1.21 kubernetes.kubenet kubernetes
192.168.1.10 gateway.kubenet gateway
192.168.1.11 control0.kubenet control0
192.168.1.12 control1.kubenet control1
192.168.1.13 control2.kubenet control2
192.168.1.14 worker0.kubenet worker0
192.168.1.15 worker1.kubenet worker1
192.168.1.16 worker2.kubenet worker2
"""


def test_hosts_entries_name_every_vm_the_host_and_the_api(cluster):
    assert hosts_entries(cluster, "bridge") == HOSTS_BRIDGE
    assert hosts_entries(cluster, "user") == HOSTS_BRIDGE.replace("192.168.1.1 vmhost", "10.0.2.2 vmhost")


def head(hosts: str) -> str:
    body = "".join(f"    {line}\n" for line in hosts.splitlines())
    return (
        "#cloud-config\n"
        "user:\n  name: ubuntu\n"
        "ssh_authorized_keys:\n- ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeLoginKeyForTestsOnly me@laptop\n"
        "ssh_keys:\n"
        "  ed25519_private: |\n"
        "    -----BEGIN OPENSSH PRIVATE KEY-----\n    AAAA\n    BBBB\n    -----END OPENSSH PRIVATE KEY-----\n"
        "  ed25519_public: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKey root@x\n"
        "ssh_deletekeys: true\n"
        "ssh_genkeytypes:\n- ed25519\n"
        "write_files:\n- path: /etc/hosts\n  content: |\n" + body
    )


BR_NETFILTER_FILES = """\
- path: /etc/modules-load.d/kubenet.conf
  content: |
    br_netfilter
- path: /etc/sysctl.d/90-kubenet.conf
  content: |
    net.bridge.bridge-nf-call-iptables = 1
    net.ipv4.ip_forward = 1
"""
# kubenet's own bootcmd: the watcher that prints the boot's marks on the console
BOOTCMD = "bootcmd:\n- |\n" + "".join(f"  {line}\n" if line else "\n" for line in WATCHER.splitlines())
UPDATE = "package_update: true\npackage_upgrade: true\n"
AGENT = "- qemu-guest-agent\n"
AGENT_RUNCMD = "- - sh\n  - -c\n  - test -e /dev/virtio-ports/org.qemu.guest_agent.0 && systemctl start --no-block qemu-guest-agent || true\n"
RUNCMD = "runcmd:\n" + AGENT_RUNCMD + "- - modprobe\n  - br_netfilter\n- - sysctl\n  - --system\n"


def test_gateway_user_data(cluster, templates):
    expected = head(HOSTS_BRIDGE) + BOOTCMD + UPDATE + "packages:\n" + AGENT + "- ipvsadm\n- ldirectord\n" + "runcmd:\n" + AGENT_RUNCMD
    assert user_data(cluster, cluster.vms[0], "bridge", templates, LOGIN_KEY, HOST_KEY) == expected


def test_control_user_data_has_curl_br_netfilter_and_arp_sysctls(cluster, templates):
    files = BR_NETFILTER_FILES + (
        "    # The API virtual IP also sits on each control node's loopback for the\n"
        "    # gateway's direct routing: only the gateway may answer ARP for it.\n"
        "    net.ipv4.conf.all.arp_ignore = 1\n"
        "    net.ipv4.conf.all.arp_announce = 2\n"
    )
    expected = head(HOSTS_BRIDGE) + files + BOOTCMD + UPDATE + "packages:\n" + AGENT + "- curl\n" + RUNCMD
    assert user_data(cluster, cluster.vms[2], "bridge", templates, LOGIN_KEY, HOST_KEY) == expected


def test_worker_user_data_in_user_mode(cluster, templates):
    hosts = HOSTS_BRIDGE.replace("192.168.1.1 vmhost", "10.0.2.2 vmhost")
    expected = head(hosts) + BR_NETFILTER_FILES + BOOTCMD + UPDATE + "packages:\n" + AGENT + "- nfs-common\n" + RUNCMD
    assert user_data(cluster, cluster.vms[6], "user", templates, LOGIN_KEY, HOST_KEY) == expected


def test_a_role_without_a_template_gets_the_common_one_and_another_login_user():
    cluster = build_cluster({"user": "kube", "roles": [{"name": "etcd", "count": 1}]}, Path("/x/cluster.yaml"))
    text = user_data(cluster, cluster.vms[0], "bridge", read_templates(cluster), LOGIN_KEY, HOST_KEY)
    assert text.startswith("#cloud-config\nuser:\n  name: kube\n")
    assert text.endswith("    192.168.1.10 etcd0.kubenet etcd0\n" + BOOTCMD + UPDATE + "packages:\n" + AGENT + "runcmd:\n" + AGENT_RUNCMD)


def test_meta_data(cluster):
    assert meta_data(cluster.vms[5], "worker1-0123456789ab") == "instance-id: worker1-0123456789ab\nlocal-hostname: worker1\n"


def test_the_instance_id_changes_with_what_the_seed_tells_cloud_init_and_only_with_it(cluster, templates):
    def instance(vm, mode="user", templates=templates, extras=None, of=cluster):
        files = seed_files(of, vm, mode, templates, LOGIN_KEY, HOST_KEY, extras)
        return yaml.safe_load(files["meta-data"])["instance-id"]

    worker = cluster.vms[5]
    assert re.fullmatch(r"worker1-[0-9a-f]{12}", instance(worker))
    assert instance(worker) == instance(worker)  # the same seed: the same instance, nothing re-runs
    changed = {**templates, "worker": {**templates["worker"], "runcmd": ["true"]}}
    assert instance(worker, templates=changed) != instance(worker)  # a template edited
    assert instance(worker, extras={"worker": {"ethernets": {"lo": {"addresses": ["10.9.0.1/32"]}}}}) != instance(worker)
    assert instance(worker, mode="bridge") != instance(worker)  # its network
    bigger = build_cluster({"roles": [{"name": "gateway"}, {"name": "control", "count": 3}, {"name": "worker", "count": 4}]}, Path("/x/cluster.yaml"))
    assert instance(bigger.vms[5], of=bigger) != instance(worker)  # a VM added: every /etc/hosts names it


def test_network_config_static_in_bridge_and_vmnet_modes(cluster):
    expected = (
        "version: 2\n"
        "ethernets:\n"
        "  cluster:\n"
        "    match:\n      macaddress: '52:52:52:00:00:05'\n"
        "    addresses:\n    - 192.168.1.15/24\n"
        "    routes:\n    - to: 0.0.0.0/0\n      via: 192.168.1.1\n"
        "    nameservers:\n      addresses:\n      - 192.168.1.1\n      search:\n      - kubenet\n"
    )
    assert network_config(cluster, cluster.vms[5], "bridge") == expected
    assert network_config(cluster, cluster.vms[5], "vmnet-shared") == expected


def test_network_config_dhcp_uplink_and_static_cluster_nic_in_user_mode(cluster):
    assert network_config(cluster, cluster.vms[0], "user") == (
        "version: 2\n"
        "ethernets:\n"
        "  uplink:\n"
        "    match:\n      macaddress: '52:54:00:00:00:00'\n"
        "    dhcp4: true\n"
        "  cluster:\n"
        "    match:\n      macaddress: '52:52:52:00:00:00'\n"
        "    addresses:\n    - 192.168.1.10/24\n"
    )


def read_iso(path: Path) -> tuple[str, dict[str, bytes]]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        files = {}
        for name in ("user-data", "meta-data", "network-config"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            joliet = io.BytesIO()
            iso.get_file_from_iso_fp(joliet, joliet_path=f"/{name}")
            assert joliet.getvalue() == out.getvalue()
            files[name] = out.getvalue()
        return iso.pvd.volume_identifier.decode().strip(), files
    finally:
        iso.close()


def test_the_iso_reads_back_with_volume_id_and_exact_files(cluster, templates, tmp_path):
    files = seed_files(cluster, cluster.vms[4], "user", templates, LOGIN_KEY, HOST_KEY)
    path = tmp_path / "cidata.iso"
    write_seed_iso(files, path)
    assert read_iso(path) == ("cidata", files)
    # no temporary left behind; the checksum that lets make see a damaged seed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cidata.iso", "cidata.iso.sha256"]


@pytest.mark.skipif(shutil.which("isoinfo") is None, reason="isoinfo (genisoimage) not installed")
def test_isoinfo_sees_joliet_rock_ridge_and_lower_case_names(cluster, templates, tmp_path):
    files = seed_files(cluster, cluster.vms[1], "bridge", templates, LOGIN_KEY, HOST_KEY)
    path = tmp_path / "cidata.iso"
    write_seed_iso(files, path)
    info = subprocess.run(["isoinfo", "-d", "-i", str(path)], capture_output=True, text=True, check=True).stdout
    assert "Volume id: cidata" in info
    assert "Joliet with UCS level 3 found" in info
    assert "Rock Ridge signatures version 1 found" in info
    listing = subprocess.run(["isoinfo", "-R", "-f", "-i", str(path)], capture_output=True, text=True, check=True).stdout
    assert sorted(listing.split()) == ["/meta-data", "/network-config", "/user-data"]
    content = subprocess.run(["isoinfo", "-R", "-x", "/user-data", "-i", str(path)], capture_output=True, check=True).stdout
    assert content == files["user-data"]


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init not installed")
@pytest.mark.parametrize("vmid, mode", [(0, "bridge"), (2, "vmnet-shared"), (5, "user")])
def test_real_cloud_init_accepts_the_user_data(cluster, templates, tmp_path, vmid, mode):
    files = seed_files(cluster, cluster.vms[vmid], mode, templates, LOGIN_KEY, HOST_KEY)
    path = tmp_path / "user-data"
    path.write_bytes(files["user-data"])
    done = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Valid cloud-config" in done.stdout


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init not installed")
@pytest.mark.parametrize("mode", ["bridge", "user"])
def test_real_cloud_init_renders_the_network_config(cluster, tmp_path, mode):
    """cloud-init's own v2 parser turns our network-config into netplan with our addresses."""
    config = network_config(cluster, cluster.vms[3], mode)
    (tmp_path / "network-config").write_text(config)
    script = (
        "import sys, yaml\n"
        "from cloudinit.net.network_state import parse_net_config_data\n"
        "from cloudinit.net import netplan\n"
        "state = parse_net_config_data(yaml.safe_load(open(sys.argv[1])))\n"
        "renderer = netplan.Renderer({'netplan_path': sys.argv[2], 'postcmds': False})\n"
        "renderer.render_network_state(state, target='/')\n"
    )
    out = tmp_path / "50-cloud-init.yaml"
    done = subprocess.run(["/usr/bin/python3", "-c", script, str(tmp_path / "network-config"), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rendered = out.read_text()
    assert "192.168.1.13/24" in rendered and "52:52:52:00:00:03" in rendered
    assert ("dhcp4: true" in rendered) == (mode == "user")
    assert ("via: 192.168.1.1" in rendered) == (mode == "bridge")


def test_a_cluster_can_bring_its_own_templates(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/common.yaml").write_text("locale: false\n")
    (tmp_path / "mine/worker.yaml").write_text("packages: [htop]\n")
    (tmp_path / "cluster.yaml").write_text("templates: mine\nroles:\n  - {name: worker, count: 1}\n  - {name: control, count: 1}\n")
    cluster = load_cluster(tmp_path / "cluster.yaml")
    assert template_paths(cluster) == [tmp_path / "mine/common.yaml", tmp_path / "mine/worker.yaml"]
    assert read_templates(cluster) == {"common": {"locale": False}, "worker": {"packages": ["htop"]}}
    (tmp_path / "cluster.yaml").write_text("templates: missing\n")
    with pytest.raises(errors.BadValueError, match=f"templates: {tmp_path}/missing is not a directory"):
        load_cluster(tmp_path / "cluster.yaml")

