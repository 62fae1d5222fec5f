"""`invoke hostnet` for real, in a network namespace of the test's own with a private view of /etc
(an overlay whose changes vanish with the namespace): never on this machine's own network or files."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import INVOKE, ROOT
from kubenet.model.config import build_cluster
from kubenet.hostside.hostnet import dnsmasq_conf, nat_ruleset, with_hosts_block
from kubenet.hostside.hostpiece import without_block

needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0
    or not all(shutil.which(p) for p in ("unshare", "nft", "dnsmasq", "ip"))
    or not os.path.exists("/usr/lib/qemu/qemu-bridge-helper"),
    reason="needs root, unshare, nft, dnsmasq, ip and qemu's bridge helper",
)

CLUSTER = "name: kh\nnetwork: {mode: bridge}\npod_routes: true\nnfs: {path: nfs-pvs}\nroles:\n  - {name: control, count: 1}\n  - {name: worker, count: 1}\n"
HOSTS_BLOCK = [
    "# BEGIN kubenet kh",
    "192.168.1.1 vmhost.kubenet vmhost",
    "192.168.1.21 kubernetes.kubenet kubernetes",
    "192.168.1.10 control0.kubenet control0",
    "192.168.1.11 worker0.kubenet worker0",
    "# END kubenet kh",
]


def test_the_hosts_block_is_added_once_and_taken_out_exactly(tmp_path):
    cluster = build_cluster({"name": "kh", "roles": [{"name": "control", "count": 1}, {"name": "worker", "count": 1}]}, tmp_path / "c.yaml")
    mine = "127.0.0.1 localhost\n10.0.0.5 nas  # mine\n"
    added = with_hosts_block(mine, cluster)
    assert added == mine + "\n".join(HOSTS_BLOCK) + "\n"
    assert with_hosts_block(added, cluster) == added
    assert without_block(added, cluster) == mine
    assert "ip saddr 192.168.1.0/24 oifname != \"kubr0\" masquerade" in nat_ruleset(cluster)
    conf = dnsmasq_conf(cluster, tmp_path / "names", tmp_path / "leases")
    assert "dhcp-host=52:52:52:00:00:01,192.168.1.11" in conf and "interface=kubr0" in conf and "bind-interfaces" in conf


@needs_namespaces
def test_hostnet_sets_up_the_bridge_side_idempotently_and_removes_exactly_what_it_added(tmp_path):
    config = tmp_path / "cluster.yaml"
    # doctor runs as root here: its state in a folder of root's, as a learner's is in one of theirs
    state_dir = Path(tempfile.mkdtemp(prefix="knd"))
    config.write_text(CLUSTER + f"state_dir: {state_dir}\n")
    os.chown(tmp_path, 4242, 4343)  # the learner's checkout: the NFS folder is made as theirs
    for name in ("upper", "work", "qemu-upper", "qemu-work"):
        (tmp_path / name).mkdir()
    upper, work = tmp_path / "upper", tmp_path / "work"
    script = (
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc && "
        # qemu's bridge helper too: hostnet makes it setuid, in this private view only
        f"mount -t overlay overlay -o lowerdir=/usr/lib/qemu,upperdir={tmp_path / 'qemu-upper'},workdir={tmp_path / 'qemu-work'} /usr/lib/qemu && "
        "mount -t sysfs sysfs /sys && ip link set lo up && "
        'exec "$@"'
    )
    facts_script = ROOT / "tests" / "netns" / "hostnet_facts.py"
    # dnsmasq drops to nobody, who must be able to read the names it serves: a state
    # directory nobody can reach, unlike pytest's own 0700 temporary directories
    state = Path(tempfile.mkdtemp(prefix="knh"))
    state.chmod(0o755)
    env = {**os.environ, "KUBENET_HOSTNET_DIR": str(state)}
    done = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         sys_python(), str(facts_script), str(INVOKE), str(ROOT), str(config)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        facts = json.loads(done.stdout)
        check(facts, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(state_dir, ignore_errors=True)


def check(facts: dict, state: Path) -> None:
    before = facts["before"]
    assert (before["addresses"], before["forwarding"], before["bridge_conf"]) == ([], "0", None)

    taken = facts["route_taken"]
    assert taken["code"] == 1 and taken["stderr"].strip().splitlines() == [
        "kubenet: error: this host already routes 10.1.0.0/16 via 10.250.0.2, and not for kubenet: the pod routes would replace it "
        f"(hint: remove it yourself (`ip route del 10.1.0.0/16 via 10.250.0.2`) if it is not needed, or leave pod_routes: out of {facts['config']})"
    ], taken["stderr"]
    assert facts["route_taken_left"] == {**before, "routes": ["10.1.0.0/16 via 10.250.0.2"]}  # nothing made, the user's route kept
    assert facts["dry_run"]["code"] == 0 and "would add bridge kubr0" in facts["dry_run"]["stderr"]
    assert facts["after_dry_run"] == {**before, "routes": ["10.9.0.0/16 via 10.250.0.2"]}  # a dry run changes nothing (the route is the user's)

    taken = facts["port_taken"]
    assert taken["code"] == 1 and taken["stderr"].strip().splitlines()[-1] == (
        "kubenet: error: another program serves 192.168.1.1:2049 (the host's own NFS server?) "
        "(hint: stop it (`systemctl stop nfs-server`), or export the folder with it yourself and leave nfs: out)"
    ), taken["stderr"]
    assert facts["port_taken_left"] == {"state": [], "folder": {"is_dir": False}}
    assert facts["first"]["code"] == 0, facts["first"]["stderr"]
    up = facts["set_up"]
    assert up["addresses"] == ["192.168.1.1/24"] and up["up"] and up["forwarding"] == "1"
    assert 'ip saddr 192.168.1.0/24 oifname != "kubr0" masquerade' in up["nat"]
    assert up["bridge_conf"] == "allow kubr0\n"
    assert up["routes"] == ["10.1.0.0/16 via 192.168.1.11", "10.9.0.0/16 via 10.250.0.2"] and before["routes"] == []  # worker0's pods (the first VM has none)
    assert up["helper_mode"] & 0o4000 and not before["helper_mode"] & 0o4000  # qemu then runs as the user
    assert "\n".join(HOSTS_BLOCK) in up["hosts"]
    # the NFS server listens on the bridge address alone, for the folder it made as the cluster file's owner has it
    assert up["nfs_listeners"].split()[3] in ("192.168.1.1:2049", "[::ffff:192.168.1.1]:2049") and len(up["nfs_listeners"].splitlines()) == 1, up["nfs_listeners"]
    assert facts["nfs_folder"] == {"is_dir": True, "owner": [4242, 4343]}
    assert up["dns"] == {"control0.kubenet": "192.168.1.10", "worker0": "192.168.1.11", "vmhost": "192.168.1.1", "kubernetes.kubenet": "192.168.1.21"}

    assert facts["gaps"] == []  # bridge-mode `up` finds what it needs
    assert facts["second"] == {"code": 0, "stderr": "kubenet: hostnet: nothing to change; the host side is in place\n"}

    # the host side back after a reboot: the unit runs what makes it, and doctor says so
    assert facts["persist"]["code"] == 0 and "added the systemd unit /etc/systemd/system/kubenet-hostnet-kh.service" in facts["persist"]["stderr"]
    assert facts["enabled"] and "ExecStart=" in facts["unit"] and '"hostnet" "--config"' in facts["unit"]
    assert facts["doctor_set_up"]["code"] == 0, facts["doctor_set_up"]
    for piece in ("bridge kubr0", "host address", "IPv4 forwarding", "NAT", "DNS and DHCP", "names in /etc/hosts", "pod routes", "NFS export"):
        assert piece in facts["doctor_set_up"]["ok"], (piece, facts["doctor_set_up"])
    broken = {what: (found["broken"]["code"], found["broken"]["failed"], found["repaired"]["code"], found["repaired"]["failed"])
              for what, found in facts["broken"].items()}  # fmt: skip
    hostnet = "`make hostnet` (it asks sudo once)"
    assert broken["forwarding"] == (1, {"IPv4 forwarding": hostnet}, 0, {}), facts["broken"]["forwarding"]
    assert broken["hosts"] == (1, {"names in /etc/hosts": hostnet}, 0, {}), facts["broken"]["hosts"]
    assert broken["pod_route"] == (1, {"pod routes": hostnet}, 0, {}), facts["broken"]["pod_route"]
    assert broken["nfs"] == (1, {"NFS export": hostnet}, 0, {}), facts["broken"]["nfs"]
    assert broken["dnsmasq"] == (1, {"DNS and DHCP": hostnet}, 0, {}), facts["broken"]["dnsmasq"]
    assert broken["nat"] == (1, {"NAT": hostnet}, 0, {}), facts["broken"]["nat"]
    assert broken["route"][0] == 1 and list(broken["route"][1]) == ["subnet 192.168.1.0/24"], facts["broken"]["route"]
    assert broken["route"][1]["subnet 192.168.1.0/24"].startswith("move the cluster to a subnet of its own") and broken["route"][2:] == (0, {})
    rebooted = facts["doctor_rebooted"]
    assert rebooted["code"] == 1
    assert {name: fix for name, fix in rebooted["failed"].items()} == {
        name: "`make hostnet` (it asks sudo once)" for name in ("bridge kubr0", "host address", "NAT", "DNS and DHCP", "pod routes", "NFS export")
    }, rebooted
    assert facts["boot"]["code"] == 0, facts["boot"]["stderr"]
    assert facts["doctor_after_boot"]["code"] == 0 and facts["doctor_after_boot"]["failed"] == {}, facts["doctor_after_boot"]
    assert facts["remove"]["code"] == 0, facts["remove"]["stderr"]
    removed = facts["removed"]
    assert (removed["addresses"], removed["forwarding"], removed["nat"], removed["bridge_conf"]) == ([], "0", "", None)  # as before
    assert removed["helper_mode"] == before["helper_mode"]
    assert removed["routes"] == ["10.1.0.0/16 via 10.250.0.2", "10.9.0.0/16 via 10.250.0.2"]  # the user's, untouched
    assert removed["hosts"] == before["hosts"]  # exactly as it was
    assert removed["nfs_listeners"] == "" and facts["nfs_folder_after"] == {"is_dir": False}  # made empty by hostnet, so taken away
    assert list(state.iterdir()) == []  # the record and dnsmasq's files are gone with what they described
    assert "removed the systemd unit /etc/systemd/system/kubenet-hostnet-kh.service" in facts["remove"]["stderr"]


def sys_python() -> str:
    import sys

    return sys.executable


def test_on_macos_hostnet_writes_the_names_only():
    from kubenet.plumbing import errors
    from kubenet.hostside.hostnet import keys_for

    assert keys_for("darwin") == ("hosts", "nfs-exports")  # vmnet-shared brings NAT, DHCP and DNS itself
    assert keys_for("linux") == ("bridge", "address", "up", "pod-routes", "forwarding", "nat", "bridge.conf", "bridge-helper", "dns", "nfs", "hosts")
    with pytest.raises(errors.HostError, match="hostnet knows Linux and macOS, not sunos"):
        keys_for("sunos")


def test_the_nfs_export_is_for_the_subnet_only_with_root_mapped_to_the_folders_owner(tmp_path):
    from kubenet.hostside.hostpiece import with_block, without_block
    from kubenet.hostside.nfsexport import darwin_exports_line, ganesha_conf

    cluster = build_cluster({"name": "kh", "nfs": {"path": "nfs pvs"}}, tmp_path / "c.yaml")
    folder = tmp_path / "nfs pvs"
    assert cluster.nfs == folder  # relative to the cluster file; the provisioner's nfs.path
    conf = ganesha_conf(cluster, folder, (501, 20), tmp_path / "recovery")
    for line in ("Bind_addr = 192.168.1.1;", f'Path = "{folder}";', f'Pseudo = "{folder}";', "Access_Type = None;",
                 "Clients = 192.168.1.0/24;", "Squash = Root_Squash;", "Anonymous_Uid = 501;", "Anonymous_Gid = 20;"):  # fmt: skip
        assert any(written.strip().startswith(line) for written in conf.splitlines()), line
    line = darwin_exports_line(cluster, folder, (501, 20))
    assert line == f'"{folder}" -alldirs -maproot=501 -network 192.168.1.0 -mask 255.255.255.0'
    mine = "/Users/me/share -ro\n"
    added = with_block(mine, cluster, [line])
    assert added == f"{mine}# BEGIN kubenet kh\n{line}\n# END kubenet kh\n" and with_block(added, cluster, [line]) == added
    assert without_block(added, cluster) == mine
