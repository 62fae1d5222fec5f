"""A non-root user runs a cluster on the tutorial's Linux network (a bridge, host DNS
and NAT from `invoke hostnet`) whose qemu must start as root: for real, in namespaces
of the test's own (tests/netns/root_bridge.py), never on this machine's network or files.
"""

import os
import shutil

import pytest

from conftest import namespaced_facts

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or not all(shutil.which(p) for p in ("unshare", "nsenter", "nft", "dnsmasq", "ip", "sudo", "runuser", "useradd", "tmux"))
    or not os.path.exists("/usr/lib/qemu/qemu-bridge-helper")
    or not os.path.exists("/dev/net/tun"),
    reason="needs root, unshare, nsenter, nft, dnsmasq, ip, sudo, runuser, useradd, tmux, /dev/net/tun and qemu's bridge helper",
)


@pytest.fixture(scope="module")
def facts():
    return namespaced_facts("root_bridge.py", "knr")


def test_hostnet_and_make_up_as_a_user_with_qemu_started_as_root(facts):
    assert facts["hostnet"]["code"] == 0, facts["hostnet"]["stderr"]
    assert facts["up"]["code"] == 0, facts["up"]["stdout"] + facts["up"]["stderr"]
    rows = facts["ls"]["vms"]
    assert {name: (row["state"], row["ready"]) for name, row in rows.items()} == {"control0": ("running", "yes"), "worker0": ("running", "yes")}, facts["up"]["stderr"]
    for name, owners in facts["qemu"].items():
        # started by root's tmux (the network needs it), running as the user once it has its tap
        assert owners["parent_uid"] == 0 and owners["parent"].startswith("tmux"), (name, owners)
        assert owners["uid"] != 0, (name, owners)
    assert facts["foreign_files"] == []  # pid files, QMP sockets and console logs are the user's
    assert set(facts["qmp_modes"].values()) == {"0o700"}


def test_the_vms_resolve_and_reach_each_other_the_host_and_the_world_through_its_nat(facts):
    control = facts["guest"]["control0"]
    assert control["code"] == 0, control["stdout"] + control["stderr"]
    said = control["stdout"]
    for address in ("192.168.1.11", "192.168.1.1", "192.168.1.21", "10.77.0.2"):  # worker0, vmhost, kubernetes, outside.test
        assert f"Address: {address}" in said or f"Address 1: {address}" in said, said
    assert said.count("1 packets received") == 2 or said.count("1 received") == 2, said
    # the listener outside saw the host's own outer address: the host masqueraded the VM
    assert said.rstrip().endswith("control0: 10.77.0.1"), said
    worker = facts["guest"]["worker0"]
    assert worker["code"] == 0 and "192.168.1.10" in worker["stdout"], worker


def test_the_host_reaches_a_vms_pod_network_through_the_route_hostnet_added(facts):
    assert facts["pod_address"]["code"] == 0, facts["pod_address"]["stderr"]
    assert facts["pod_ping"]["code"] == 0 and "1 received" in facts["pod_ping"]["stdout"], facts["pod_ping"]
    assert "10.1.0.0/16 via 192.168.1.11" in facts["set_up_routes"]
    # once the route is gone, `make up` says so and how to make it again
    said = "kubenet: warning: the routes to the pods' networks are missing (pod_routes: true); run `make hostnet` to add them"
    assert said in facts["up_again"]["stderr"].splitlines(), facts["up_again"]["stderr"]


def test_a_worker_mounts_the_nfs_export_and_the_host_sees_what_it_wrote_as_the_folders_owner(facts):
    assert facts["nfs_mount"]["code"] == 0, facts["nfs_mount"]["stderr"]
    uid = facts["user_uid"]
    assert facts["nfs_file"] == {"uid": uid, "text": "written-by-worker0\n"}  # root in the VM wrote as the learner
    assert f" {uid} " in facts["nfs_mount"]["stdout"]  # and the guest sees that owner too
    folder = facts["nfs_folder"]
    assert f"kubenet: NFS export: {folder}, mounted as vmhost:{folder}" in facts["ls_notes"], facts["ls_notes"]
    assert "kubenet: pod routes: all 1 in place" in facts["ls_notes"]  # `ls` says both are there
    assert facts["nfs_server_after_remove"] == ""  # `--remove` stopped the server
    assert facts["nfs_file_after_remove"] == facts["nfs_file"]  # and left what the cluster wrote


def test_the_user_manages_the_root_started_vms_without_root_for_ls_exec_ssh_all_and_stop(facts):
    for step in ("ssh_all", "stop", "start", "up_again", "down", "reset", "setup"):
        assert facts[step]["code"] == 0, (step, facts[step]["stderr"])
    assert facts["after_stop"]["vms"]["worker0"]["state"] == "stopped"
    assert facts["after_stop"]["vms"]["control0"]["state"] == "running"
    assert facts["after_start"]["vms"]["worker0"]["state"] == "running" and facts["after_start"]["vms"]["worker0"]["ready"] == "yes"
    assert "already running: control0 worker0" in facts["up_again"]["stderr"]
    assert {row["state"] for row in facts["after_down"]["vms"].values()} == {"stopped"}
    assert "removed tmux session kr-qemu" in facts["down"]["stderr"]
    assert facts["foreign_files_at_end"] == []
    assert facts["leftover_qemus"] == []

    calls: dict[str, list[str]] = {}
    for line in facts["sudo"]:
        step, _, argv = line.partition(" ")
        calls.setdefault(step, []).append(argv)
    # no sudo at all where none is needed; elsewhere at most one that may ask, the rest may not
    assert not {"ls", "exec", "ssh-all", "stop", "up-again", "reset", "setup"} & set(calls), calls
    for step in ("up", "start", "down"):
        asking = [argv for argv in calls.get(step, []) if not argv.startswith("-n ")]
        assert asking == ["-v"], (step, calls.get(step))


def test_invoke_vm_asks_sudo_in_the_foreground_and_its_qemu_is_the_users_too(facts):
    vm = facts["vm"]
    assert vm["ls"]["state"] == "running" and vm["ls"]["pid"], vm
    assert vm["qemu"]["uid"] != 0 and vm["qemu"]["parent"] == "sudo", vm  # qemu, dropped to the user, under sudo
    assert vm["foreign_files"] == []
    assert vm["stop"]["code"] == 0 and vm["stop"]["stderr"] in ("kubenet: worker0: powered off\n", "kubenet: worker0: quit\n"), vm["stop"]
    assert vm["exit"] == 0, vm["stderr"]
    asked = [line for line in facts["sudo"] if line.startswith("vm")]
    assert len(asked) == 1 and asked[0].startswith("vm -- ") and "handover.py" in asked[0], asked  # one sudo, none to stop


def test_with_the_helper_setuid_qemu_runs_as_the_user_from_the_start_and_nothing_asks_for_root(facts):
    assert facts["setuid_up"]["code"] == 0, facts["setuid_up"]["stderr"]
    assert {row["state"] for row in facts["setuid_ls"]["vms"].values()} == {"running"}
    for name, owners in facts["setuid_qemu"].items():
        assert owners["uid"] == owners["parent_uid"] != 0, (name, owners)  # the user's own tmux started it
    assert facts["setuid_foreign_files"] == []  # root's leftovers of an older kubenet were replaced
    assert facts["setuid_down"]["code"] == 0, facts["setuid_down"]["stderr"]
    assert not [line for line in facts["sudo"] if line.startswith("setuid-")]


def test_hostnet_remove_leaves_the_host_as_it_found_it(facts):
    assert facts["remove"]["code"] == 0, facts["remove"]["stderr"]
    before, removed = facts["before"], facts["removed"]
    assert removed == before, (before, removed)
    assert removed["dns_listeners"] == ""  # hostnet's dnsmasq is gone
