"""`invoke doctor`: what a guest's answers mean (pure), and a real cluster of tiny VMs under
TCG broken one thing at a time (a name gone from a VM's /etc/hosts, a guest clock an hour
off, the VDE switch killed, the VMs' cables cut off from its successor), each named with
its fix and exit 1, then all ✓ once repaired; an accelerator that opens but cannot run a
guest (a stub qemu saying what KVM says); and the host's shortages (an old qemu, no
firmware, too little memory and disk, a tunnel not running). Bridge mode's pieces are
broken one at a time in tests/test_hostnet.py's namespace."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import INVOKE, STUBS, kill_recorded_qemus, make_up, on_vm, run_invoke, stop_vde_switch
from kubenet.doctor import guestchecks
from kubenet.doctor.report import FAILED, NOT_APPLICABLE, OK
from kubenet.model.cluster import VM
from tinyimage.cluster import write_cluster

NODE = VM(id=1, name="node1", role="node", vcpus=1, memory="256M", mac="52:52:52:00:00:01", ip="192.168.1.11")
EXPECTED = {"node0": "192.168.1.10", "vmhost": "192.168.1.1", "kubernetes": "192.168.1.21"}
ANSWERS = """clock 1000
cloud-init done
name node0 192.168.1.10 1
name vmhost 192.168.1.1 1
name kubernetes 192.168.1.21 0
disk 1048576 4194304
memory 262144 1048576
outside 151.101.2.132
"""


def results(checks) -> list[tuple[str, str, str]]:
    return [(check.name, check.status, check.detail) for check in checks]


def test_a_healthy_guests_answers_are_all_ok():
    checks = guestchecks.judge(NODE, guestchecks.facts(ANSWERS), EXPECTED, 1001.0, "bridge", outside_asked=True)
    assert results(checks) == [
        ("cloud-init", OK, "done"),
        ("clock", OK, "-1 s from the host's"),
        ("node0 (192.168.1.10)", OK, "resolves and answers"),
        ("vmhost (192.168.1.1)", OK, "resolves and answers"),
        ("kubernetes (192.168.1.21)", OK, "resolves"),  # its address answers once chapter 5 puts it up
        ("outside names", OK, "resolve (to 151.101.2.132)"),
        ("disk", OK, "1.0G free of 4.0G"),
        ("memory", OK, "256M available of 1.0G"),
    ]


@pytest.mark.parametrize(
    "change, name, cause, fix",
    [
        (("name node0 192.168.1.10 1", "name node0  0"), "node0 (192.168.1.10)", "node0 does not resolve in the guest",
         "`make setup`, then `invoke restart --name node1` (cloud-init writes /etc/hosts at that boot)"),
        (("name node0 192.168.1.10 1", "name node0 192.168.1.99 1"), "node0 (192.168.1.10)", "node0 resolves to 192.168.1.99, not 192.168.1.10",
         "`make setup`, then `invoke restart --name node1` (cloud-init writes /etc/hosts at that boot)"),
        (("name node0 192.168.1.10 1", "name node0 192.168.1.10 0"), "node0 (192.168.1.10)", "node0 resolves but does not answer",
         "`invoke ls` (is node0 running?), then `invoke doctor --name node0`"),
        (("clock 1000", "clock 4601"), "clock", "+3600 s from the host's (certificates and etcd need it right)",
         "`invoke exec --name node1 -- sudo date -s @$(date +%s)`, and see that the guest keeps time (NTP, or the guest agent)"),
        (("cloud-init done", "cloud-init error"), "cloud-init", "finished with an error", "`invoke ssh --name node1 -- cloud-init status --long` says which"),
        (("outside 151.101.2.132", "outside"), "outside names", "an outside name does not resolve in the guest",
         "`make doctor` on the host: its DNS and NAT (bridge mode), or its own name service (user mode)"),
        (("memory 262144 1048576", "memory 10240 1048576"), "memory", "10M available of 1.0G",
         "give the role more memory in cluster.yaml, then `invoke restart --name node1`; or stop what takes it in the guest"),
        (("disk 1048576 4194304", "disk 10240 4194304"), "disk", "10M free of 4.0G",
         "free space in the guest (`invoke ssh --name node1 -- df -h`), or give the VM a larger disk (disk_size:, then `invoke reset`)"),
    ],
)
def test_each_fault_in_a_guests_answers_is_named_with_its_fix(change, name, cause, fix):
    answers = ANSWERS.replace(*change)
    checks = guestchecks.judge(NODE, guestchecks.facts(answers), EXPECTED, 1001.0, "bridge", outside_asked=True)
    [found] = [check for check in checks if check.status == FAILED]
    assert (found.name, found.detail, found.fix) == (name, cause, fix)


def test_in_user_mode_vmhost_need_only_resolve_and_an_unasked_outside_is_not_applicable():
    answers = ANSWERS.replace("name vmhost 192.168.1.1 1", "name vmhost 10.0.2.2 0")
    checks = guestchecks.judge(NODE, guestchecks.facts(answers), {**EXPECTED, "vmhost": "10.0.2.2"}, 1000.0, "user", outside_asked=False)
    assert ("vmhost (10.0.2.2)", OK, "resolves") in results(checks)  # slirp's host address answers no ping
    assert [(check.name, check.status) for check in checks if check.name == "outside names"] == [("outside names", NOT_APPLICABLE)]


# ---- real ------------------------------------------------------------------------------


def doctor(config: Path, env: dict, *args: str) -> tuple[int, dict[tuple[str, str], dict]]:
    done = run_invoke("doctor", "--json", "--outside", "", *args, "--config", str(config), env=env)
    return done.returncode, {(row["where"], row["name"]): row for row in json.loads(done.stdout)}


def failures(checks: dict) -> dict[tuple[str, str], str]:
    return {key: f"{row['detail']}; fix: {row['fix']}" for key, row in checks.items() if row["status"] == FAILED}


@pytest.mark.e2e
def test_doctor_names_each_fault_with_its_fix_and_passes_once_it_is_repaired(tiny_image, short_dir, tmux_server):
    roles = "  - {name: node, count: 3, vcpus: 1, memory: 256M}\n"
    config = write_cluster(short_dir, *tiny_image, roles=roles, count=3)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}

    try:
        make_up(config, env)
        code, checks = doctor(config, env)
        assert (code, failures(checks)) == (0, {}), checks
        assert checks[("node0", "node2 (192.168.1.12)")]["detail"] == "resolves and answers"
        assert checks[("host", "node1's cable")]["status"] == OK

        # a line gone from node0's /etc/hosts, node2's clock an hour off
        on_vm(state, "node0", "sed -i '/ node2$/d' /etc/hosts", root=True)
        on_vm(state, "node2", "date -s @$(( $(date +%s) + 3600 )) >/dev/null", root=True)
        code, checks = doctor(config, env)
        assert code == 1
        found = failures(checks)
        assert found.pop(("node0", "node2 (192.168.1.12)")) == (
            "node2 does not resolve in the guest; fix: `make setup`, then `invoke restart --name node0` (cloud-init writes /etc/hosts at that boot)"
        )
        clock = found.pop(("node2", "clock"))
        assert 3590 <= int(clock.split(" s ")[0]) <= 3610 and " s from the host's (certificates and etcd need it right)" in clock, clock
        assert "sudo date -s @$(date +%s)" in clock
        assert found == {}
        narrowed = doctor(config, env, "--name", "node1")[1]
        assert {key[0] for key in narrowed} == {"host", "node1"}  # --name narrows the VMs asked

        # the switch killed: every VM's cable with it
        switch = int((state / "vde.pid").read_text())
        os.kill(switch, 15)
        code, checks = doctor(config, env)
        assert code == 1 and failures(checks)[("host", "VDE switch")].startswith("not running: the VMs reach no other VM; fix: `make up` starts it again")

        # repaired: the hosts line back, the clock set, the switch restarted and the VMs cut off from it restarted
        on_vm(state, "node0", "echo '192.168.1.12 node2.kubenet node2' >> /etc/hosts", root=True)
        on_vm(state, "node2", f"date -s @{int(time.time())} >/dev/null", root=True)
        assert "are cut off from the cluster network" in run_invoke("up", "--config", str(config), env=env).stderr  # the switch again
        cut = {key: fault for key, fault in failures(doctor(config, env)[1]).items() if key[0] == "host"}
        assert cut == {("host", f"node{n}'s cable"): f"cut off: the switch restarted after the VM started; fix: `invoke restart --name node{n}`" for n in range(3)}
        run_invoke("restart", "--config", str(config), "--role", "node", env=env, check=True)
        code, checks = doctor(config, env)
        assert (code, failures(checks)) == (0, {}), checks
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


@pytest.mark.parametrize(
    "program, seen",
    [  # qemu's first complaint comes a moment before its abort: not a guest that runs
        ("echo 'error: failed to set MSR' >&2; sleep 0.5; echo 'Assertion failed.' >&2; exit 134",
         ("", "error: failed to set MSR\nAssertion failed.\n", False)),
        ("echo 'SeaBIOS (version 1.16)'; exec sleep 30", ("SeaBIOS (version 1.16)\n", "", True)),  # a guest's firmware on its console
        ("exec sleep 30", ("", "", True)),  # a guest that hangs: nothing within the probe's seconds
    ],
)
def test_the_accelerator_probe_tells_a_guests_console_from_qemus_complaints(program, seen):
    from kubenet.doctor.hostchecks import probe_guest

    assert probe_guest(["sh", "-c", program]) == seen


def test_an_accelerator_that_opens_but_cannot_run_a_guest_is_named_with_the_fix(short_dir, tmux_server):
    from test_tmux import write_cluster as stub_cluster

    config = stub_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_QEMU": str(STUBS / "qemu-kvm-broken"), "KUBENET_ACCEL": "kvm"}
    code, checks = doctor(config, env)
    assert code == 1
    assert failures(checks)[("host", "accelerator (kvm)")] == (
        "qemu could not run a guest: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69 | "
        "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:2893: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.; "
        "fix: the accelerator (kvm) cannot run guests on this host: set `accel: tcg` in cluster.yaml, or run `invoke up --accel tcg` (slower: software emulation)"
    )


# Each of the host's shortages at once, in a private view of the host: an old qemu, no UEFI
# firmware (the descriptors' and the firmware's folders hidden under empty ones), state_dir on a 1 MiB file
# system, VMs asking more memory than the host has, and a tunnel asked for but not running.
SHORT_HOST = """\
mount -t tmpfs -o size=1m tmpfs "$1" &&
for folder in /usr/share/qemu/firmware /usr/share/OVMF /usr/share/edk2; do
  [ ! -d "$folder" ] || mount -t tmpfs tmpfs "$folder" || exit
done &&
exec "$2" doctor --json --outside '' --config "$3"
"""


def test_each_of_the_hosts_shortages_is_named_with_its_fix(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    config = tmp_path / "cluster.yaml"
    config.write_text(
        f"name: kd\nstate_dir: {small / 'state'}\nnetwork: {{mode: user, api_address: 192.168.1.250}}\n"
        "image: {kind: cloud, url: 'http://127.0.0.1:9/base.img', sha256: '" + "0" * 64 + "'}\n"
        "roles:\n  - {name: node, count: 2, vcpus: 1, memory: 64G}\n"
        "forward: [{port: 16443, to: 'kubernetes:6443'}]\n"
    )
    env = {**os.environ, "KUBENET_QEMU": str(STUBS / "qemu-old"), "KUBENET_ACCEL": "tcg", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", SHORT_HOST, "sh", str(small), str(INVOKE), str(config)],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr
    checks = {(row["where"], row["name"]): row for row in json.loads(done.stdout)}
    assert failures(checks) == {
        ("host", "qemu"): "qemu 5.2 is older than 6.0, which snapshots and readiness need; fix: update qemu",
        ("host", "UEFI firmware"): f"{checks[('host', 'UEFI firmware')]['detail']}; fix: `make deps` installs it (ovmf, qemu-efi-aarch64 or Homebrew's qemu)",
        ("host", "memory"): f"{checks[('host', 'memory')]['detail']}; fix: give the roles less memory in cluster.yaml (examples/cluster-8g.yaml fits 8 GiB), or stop other programs",
        ("host", "disk"): f"{checks[('host', 'disk')]['detail']}; fix: free some space, or put state_dir on a larger file system (state_dir: in cluster.yaml)",
        ("host", "tunnel"): f"{checks[('host', 'tunnel')]['detail']}; fix: `invoke tunnel`",
    }, checks
    assert checks[("host", "memory")]["detail"].startswith("the stopped VMs would take about 128")
    assert checks[("host", "disk")]["detail"].startswith("1M free where state_dir is") and "about 4.0G" in checks[("host", "disk")]["detail"]
    assert checks[("host", "tunnel")]["detail"].startswith("not running: ") and "16443" in checks[("host", "tunnel")]["detail"]
