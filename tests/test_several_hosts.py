"""One cluster over several hosts (`hosts:`, `host:` per role): placement and its checks,
the ssh_config that reaches a VM through its host, what a host is sent and takes in
(pure and file-level), and for real: a second host played by a network namespace with
its own sshd and user (tests/netns/two_hosts.py), VMs on both, one segment."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import namespaced_facts
from kubenet.plumbing import errors
from kubenet.hosts.bundle import host_copy, pack, unpack
from kubenet.hosts.cable import backoff, cable_argv
from kubenet.model.cluster import NetworkMode
from kubenet.model.config import build_cluster
from kubenet.lifecycle.status import absent_row, host_rows, with_host
from kubenet.hosts.remote import Answer, remote_command
from kubenet.prepare.sshkeys import host_alias
from kubenet.prepare.sshkeys import ssh_config

TWO_HOSTS = """
hosts:
  desk: {ssh: me@10.0.0.2, port: 2222, identity: ~/.ssh/desk, known_hosts: desk_known, kubenet: ~/kubenet/.venv/bin/kubenet}
  server: you@server.lan
roles:
  - {name: gateway}
  - {name: worker, count: 3, host: [desk, local]}
"""


def two_hosts(directory: Path, text: str = TWO_HOSTS):
    return build_cluster(yaml.safe_load(text), directory / "cluster.yaml")


# ---- placement -------------------------------------------------------------------------------


def test_placement_changes_where_a_vm_runs_never_what_it_is(tmp_path):
    spread = two_hosts(tmp_path)
    alone = build_cluster(yaml.safe_load("roles:\n  - {name: gateway}\n  - {name: worker, count: 3}\n"), tmp_path / "cluster.yaml")
    assert [(vm.name, vm.host) for vm in spread.vms] == [("gateway", "local"), ("worker0", "desk"), ("worker1", "local"), ("worker2", "desk")]
    assert [(vm.id, vm.name, vm.mac, vm.ip) for vm in spread.vms] == [(vm.id, vm.name, vm.mac, vm.ip) for vm in alone.vms]
    assert [vm.name for vm in spread.local_vms] == ["gateway", "worker1"]
    assert [host.name for host in spread.placed_hosts()] == ["desk"]  # server runs none of them
    assert spread.network.mode == NetworkMode.USER  # auto: the one mode that spans hosts
    desk = spread.remote_host("desk")
    assert (desk.port, desk.identity, desk.kubenet) == (2222, Path("~/.ssh/desk").expanduser(), "kubenet/.venv/bin/kubenet")
    assert desk.known_hosts == tmp_path / "desk_known"


def test_without_hosts_every_vm_is_local_and_nothing_else_changes(tmp_path):
    cluster = build_cluster(yaml.safe_load("roles:\n  - {name: gateway}\n"), tmp_path / "cluster.yaml")
    assert cluster.local_vms == cluster.vms and cluster.placed_hosts() == [] and cluster.network.mode == NetworkMode.AUTO


def test_every_placement_mistake_is_a_line_of_its_own(tmp_path):
    text = """
hosts: {local: me@a, bad: '-oProxyCommand=x', odd: {ssh: me@b, prot: 22}, far: {ssh: me@c, kubenet: '-x'}}
roles:
  - {name: worker, count: 2, host: [desc]}
"""
    with pytest.raises(errors.ConfigProblems) as raised:
        two_hosts(tmp_path, text)
    lines = raised.value.lines()
    assert len(lines) == 4
    assert lines[0].endswith("hosts.local: 'local' is the machine kubenet runs on and needs no entry (hint: give the other host another name)")
    assert "hosts.bad.ssh: '-oProxyCommand=x' is not allowed; allowed: user@address" in lines[1]
    assert "hosts.odd.prot: unknown key" in lines[2] and "did you mean 'port'?" in lines[2]
    assert "hosts.far.kubenet: '-x' is not allowed" in lines[3]
    with pytest.raises(errors.BadValueError, match=r"roles\[0\].host: 'desc' is not a host of hosts:; known: desk, local \(hint: did you mean 'desk'\?\)"):
        two_hosts(tmp_path, "hosts: {desk: me@a}\nroles:\n  - {name: worker, count: 2, host: [desc]}\n")
    with pytest.raises(errors.BadValueError, match="network.mode: bridge does not reach across hosts"):
        two_hosts(tmp_path, "hosts: {desk: me@a}\nnetwork: {mode: bridge}\nroles:\n  - {name: worker, count: 2, host: desk}\n")


# ---- reaching them ---------------------------------------------------------------------------


def test_a_remote_vm_is_reached_through_its_host_which_is_pinned_and_shared(tmp_path):
    cluster = two_hosts(tmp_path)
    text = ssh_config(cluster, NetworkMode.USER, Path("/k/id"))
    worker0 = text[text.index("Host worker0 ") :].split("\n\n")[0]
    assert "  HostName 127.0.0.1\n  Port 2201\n  ProxyJump kubenet-host.desk\n" in worker0
    assert "ProxyJump" not in text[text.index("Host worker1 ") :].split("\n\n")[0]
    desk = text[text.index("Host kubenet-host.desk") :].split("\n\n")[0]
    for line in ("HostName 10.0.0.2", "Port 2222", "User me", "IdentitiesOnly yes", f'UserKnownHostsFile "{tmp_path / "desk_known"}"',
                 "StrictHostKeyChecking yes", "ControlMaster auto", "ServerAliveInterval 2"):  # fmt: skip
        assert f"  {line}\n" in desk + "\n"
    assert "kubenet-host.server" not in text  # no VM of the cluster runs there


def test_what_runs_on_a_host_is_kubenet_with_every_word_quoted(tmp_path):
    cluster = two_hosts(tmp_path)
    desk = cluster.remote_host("desk")
    assert host_alias(desk) == "kubenet-host.desk"
    assert remote_command(cluster, desk, "up", "--id", "1", "--ready", "ssh; rm -rf ~") == (
        "kubenet/.venv/bin/kubenet up --config kubenet-kubenet/cluster.yaml --id 1 --ready 'ssh; rm -rf ~'"
    )
    argv = cable_argv(cluster, desk)
    assert argv[:3] == ["vde_plug", str(cluster.state_dir / "vde.ctl"), "="]
    assert argv[3:] == ["ssh", "-F", str(cluster.state_dir / "ssh_config"), "-o", "BatchMode=yes", "-o", "ControlPath=none",
                        "kubenet-host.desk", "kubenet/.venv/bin/kubenet plug --config kubenet-kubenet/cluster.yaml"]  # fmt: skip


def test_a_cable_that_keeps_dropping_is_tried_less_often_up_to_ten_seconds():
    assert [backoff(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]


def test_a_hosts_answer_gives_one_line_why():
    assert Answer("desk", None).reason() == "no answer in time"
    assert Answer("desk", 255, stderr="ssh: connect to host 10.0.0.2 port 22: No route to host\r\n").reason() == (
        "ssh: connect to host 10.0.0.2 port 22: No route to host"
    )
    said = "kubenet: worker0: starting\nkubenet: error: worker0 is not set up (hint: run make setup)\n"
    assert Answer("desk", 1, stderr=said).reason() == "worker0 is not set up (hint: run make setup)"
    assert not Answer("desk", 255).reachable and Answer("desk", 1).reachable


def test_a_hosts_rows_gain_its_name_and_one_that_did_not_answer_is_listed_from_cluster_yaml(tmp_path):
    cluster = two_hosts(tmp_path)
    told = [{"id": 1, "name": "worker0", "role": "worker", "vcpus": 2, "state": "running"}]
    assert host_rows(Answer("desk", 0, stdout=json.dumps(told))) == told
    assert host_rows(Answer("desk", 0, stdout="not json")) is None and host_rows(Answer("desk", 0, stdout='{"a": 1}')) is None
    assert host_rows(Answer("desk", None)) is None
    assert list(with_host(told[0], "desk")) == ["id", "name", "role", "host", "vcpus", "state"]
    row = absent_row(cluster, cluster.vm_by_name("worker2"), "unreachable")
    assert (row["state"], row["pid"], row["ready"], row["ssh"], row["ip"]) == ("unreachable", None, None, "127.0.0.1:2203", "192.168.1.13")


def test_a_host_that_failed_is_named_with_why_and_an_unseen_host_key_says_what_to_do():
    from kubenet.hosts.multihost import refuse_failures

    refuse_failures([Answer("desk", 0)], "up")
    with pytest.raises(errors.RemoteError) as raised:
        refuse_failures([Answer("desk", 0), Answer("srv", 255, stderr="Host key verification failed.\n"), Answer("pi", None)], "up")
    assert raised.value.message == "up failed on 2 hosts: srv: unreachable: Host key verification failed.; pi: unreachable: no answer in time"
    assert raised.value.hint.startswith("kubenet never accepts a host key it has not seen: ssh to srv once by hand")
    with pytest.raises(errors.RemoteError) as raised:
        refuse_failures([Answer("pi", None)], "down")
    assert raised.value.hint == "look with `ssh -F <state_dir>/ssh_config kubenet-host.pi`, as kubenet reaches it"
    with pytest.raises(errors.RemoteError) as raised:
        refuse_failures([Answer("desk", 127, stderr="sh: 1: kubenet: not found\n")], "setup")
    assert str(raised.value) == ("setup failed on 1 host: desk: sh: 1: kubenet: not found "
                                 "(hint: install kubenet on desk (docs/several-hosts.md), or give its path there as hosts.desk.kubenet)")  # fmt: skip


# ---- what a host is sent ---------------------------------------------------------------------


def test_a_hosts_copy_keeps_the_cluster_and_points_its_paths_at_what_is_sent(tmp_path):
    text = TWO_HOSTS + "forward: [{port: 6443, to: 'kubernetes:6443'}]\nimage: {kind: kernel, kernel: /k/vmlinuz, initrd: /k/initrd.img}\nstate_dir: /mine\n"
    cluster = two_hosts(tmp_path, text)
    copy = host_copy(yaml.safe_load(text), cluster, cluster.remote_host("desk"))
    assert copy["here"] == "desk" and copy["state_dir"] == "state" and copy["ssh_key"] == "login.pub"
    assert copy["image"] == {"kind": "kernel", "kernel": "image/vmlinuz", "initrd": "image/initrd.img"}
    assert copy["hosts"] == {"desk": {"ssh": "me@10.0.0.2"}, "server": {"ssh": "you@server.lan"}}  # no key paths of this host
    assert "forward" not in copy and copy["roles"] == yaml.safe_load(text)["roles"]
    there = build_cluster(copy, tmp_path / "desk" / "cluster.yaml")
    assert [vm.name for vm in there.local_vms] == ["worker0", "worker2"] and there.placed_hosts() == []
    assert [(vm.id, vm.mac, vm.ip) for vm in there.vms] == [(vm.id, vm.mac, vm.ip) for vm in cluster.vms]


def tar_of(*members: tuple[str, bytes, bytes]) -> io.BytesIO:
    output = io.BytesIO()
    with tarfile.open(fileobj=output, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, len(data)
            if kind == tarfile.SYMTYPE:
                info.linkname, info.size = "/etc/passwd", 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    output.seek(0)
    return output


def test_a_host_takes_in_only_kubenets_own_files_into_a_directory_it_marked(tmp_path):
    place = tmp_path / "kubenet-kh"
    written = unpack(io.BytesIO(pack({"cluster.yaml": b"name: kh\n", "login.pub": b"ssh-ed25519 AAAA me\n", "templates/worker.yaml": b"{}\n"})), place)
    assert written == ["cluster.yaml", "login.pub", "templates/worker.yaml"]
    assert (place / "cluster.yaml").read_bytes() == b"name: kh\n" and (place / ".kubenet-host").is_file()
    assert oct(place.stat().st_mode & 0o777) == "0o700" and oct((place / "login.pub").stat().st_mode & 0o777) == "0o600"
    unpack(io.BytesIO(pack({"cluster.yaml": b"name: kh\n"})), place)
    assert not (place / "templates" / "worker.yaml").exists()  # a template no longer sent stops applying
    for name, kind in (("../escape", tarfile.REGTYPE), ("/etc/cron.d/x", tarfile.REGTYPE), ("state/worker0/disk.img", tarfile.REGTYPE),
                       ("cluster.yaml", tarfile.SYMTYPE)):  # fmt: skip
        with pytest.raises(errors.SetupError, match="which kubenet never sends"):
            unpack(tar_of((name, kind, b"x")), place)
    assert not (tmp_path / "escape").exists()
    with pytest.raises(errors.SetupError, match="not a whole bundle"):
        unpack(io.BytesIO(b"not a tar at all" * 64), place)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's\n")
    with pytest.raises(errors.SetupError, match="holds files kubenet did not put there"):
        unpack(io.BytesIO(pack({"cluster.yaml": b"x"})), mine)
    assert (mine / "notes.txt").read_text() == "the user's\n" and not (mine / "cluster.yaml").exists()


# ---- real: two hosts, one segment --------------------------------------------------------------

needs = ("unshare", "nsenter", "ip", "runuser", "useradd", "tmux", "/usr/sbin/sshd", "vde_switch", "vde_plug")
real = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(p) or os.path.exists(p) for p in needs),
    reason=f"needs root and {', '.join(needs)}",
)


def run_two_hosts(*extra: str) -> dict:
    """tests/netns/two_hosts.py in namespaces of its own; what it saw."""
    return namespaced_facts("two_hosts.py", "knh", *extra)


@pytest.fixture(scope="module")
def facts():
    return run_two_hosts()


@real
@pytest.mark.e2e
def test_make_up_starts_each_vm_on_its_host_and_ls_shows_where(facts):
    assert facts["up"]["code"] == 0, facts["up"]["stdout"] + facts["up"]["stderr"]
    assert "kubenet: on desk:" in facts["up"]["stderr"]  # desk's progress, under its name
    rows = facts["ls"]["vms"]
    assert {name: (row["host"], row["state"], row["ready"]) for name, row in rows.items()} == {
        "gateway": ("local", "running", "yes"), "node0": ("desk", "running", "yes"), "node1": ("local", "running", "yes"),
    }  # fmt: skip
    assert list(rows) == ["gateway", "node0", "node1"] and list(rows["node0"])[:4] == ["id", "name", "role", "host"]
    assert len(facts["desk_qemus"]) == 1 and facts["desk_tmux"] == ["kh-qemu"]  # node0's qemu, in desk's own session
    assert "kubenet: cable to desk: connected" in facts["ls_text"]["stderr"]


@real
@pytest.mark.e2e
def test_vms_on_two_hosts_share_one_segment_and_names(facts):
    assert facts["by_name"]["stdout"].strip() == "node0", facts["by_name"]
    assert facts["cross_ping"]["code"] == 0, facts["cross_ping"]
    assert facts["cross_banner"]["stdout"].startswith("SSH-2.0-"), facts["cross_banner"]
    assert facts["back_ping"]["code"] == 0, facts["back_ping"]


@real
@pytest.mark.e2e
def test_up_again_changes_nothing_and_a_remote_vm_stops_and_starts_from_here(facts):
    assert facts["up_again"]["code"] == 0, facts["up_again"]["stderr"]
    assert "wrote" not in "".join(line for line in facts["up_again"]["stderr"].splitlines(True) if "on desk" in line)
    assert facts["ls_again"]["vms"]["node0"]["pid"] == facts["ls"]["vms"]["node0"]["pid"]  # the same qemu
    assert facts["stop_remote"]["code"] == 0, facts["stop_remote"]["stderr"]
    assert {name: row["state"] for name, row in facts["ls_stopped"]["vms"].items()} == {"gateway": "running", "node0": "stopped", "node1": "running"}
    assert facts["start_remote"]["code"] == 0, facts["start_remote"]["stderr"]
    assert facts["ls_started"]["vms"]["node0"]["state"] == "running" and facts["ls_started"]["vms"]["node0"]["ready"] == "yes"


@real
@pytest.mark.e2e
def test_a_cut_cable_is_plugged_in_again_by_its_supervisor(facts):
    assert facts["cable_before"]["state"] == "connected"
    assert facts["cable_back_seconds"] is not None, facts["cable_after"]
    assert facts["ping_after_cable"]["code"] == 0, facts["ping_after_cable"]


@real
@pytest.mark.e2e
def test_an_unreachable_host_is_said_so_and_down_stops_the_rest(facts):
    gone = facts["ls_unreachable"]
    assert gone["code"] == 0 and gone["seconds"] < 10, gone
    assert {name: row["state"] for name, row in gone["vms"].items()} == {"gateway": "running", "node0": "unreachable", "node1": "running"}
    assert "kubenet: host desk (knhost@10.99.0.2): unreachable" in gone["stderr"]
    assert "kubenet: 2 of 3 VMs running" in facts["ls_unreachable_text"]["stderr"]  # an unreachable VM is not counted as running
    cable = next(line for line in gone["stderr"].splitlines() if line.startswith("kubenet: cable to desk: "))
    assert cable.endswith("(its host does not answer now)") or "reconnecting" in cable, cable
    down = facts["down_unreachable"]
    assert down["code"] == 1 and "down failed on 1 host: desk: unreachable" in down["stderr"], down
    assert {name: row["state"] for name, row in facts["ls_after_partial_down"]["vms"].items()} == {"gateway": "stopped", "node0": "unreachable", "node1": "stopped"}
    assert not [p for p in facts["here_after_partial_down"] if "qemu" in p["argv"][0]]


@real
@pytest.mark.e2e
def test_down_leaves_no_cable_switch_or_qemu_on_either_host(facts):
    assert facts["down"]["code"] == 0, facts["down"]
    assert {row["state"] for row in facts["ls_after_down"]["vms"].values()} == {"stopped"}
    assert facts["here_after_down"] == [] and facts["desk_after_down"] == []
    assert facts["cleanup_desk"] == []
