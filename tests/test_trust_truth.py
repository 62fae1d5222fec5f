"""Trust, second round: what `ls` and `up` say is what is true now, with real invoke, tmux and
stub qemus: qemu's own run state, SSH answering now, a clean power-off told apart from a
failure, only the sessions that exist, a switch that died; the accelerator a VM ran with is
kept; a full or read-only file system named as such."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import INVOKE, ROOT, STUBS, ls_rows, run_invoke, wait_for
from kubenet.plumbing.process import pid_alive
from test_tmux import write_cluster
from test_trust import processes_naming


# ---- 12. a qemu stuck in an internal error --------------------------------------------------


def test_a_guest_qemu_stopped_on_an_internal_error_is_shown_and_not_waited_for(short_dir, stub_env, cleanup):
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    env = {**stub_env, "STUB_STATUS": "node0=internal-error"}  # what kvm that opens but cannot run guests leads to
    run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
    assert wait_for(lambda: (short_dir / ".kubenet" / "node0" / "qmp.sock").exists())
    assert [row["state"] for row in ls_rows(config, env)] == ["internal-error"]
    began = time.monotonic()
    done = run_invoke("up", "--ready", "ssh", "--timeout", "120", "--config", str(config), env=env)
    assert time.monotonic() - began < 15, "up waited for a guest that will never answer"
    assert done.returncode == 1
    assert "node0 not ready: qemu stopped the guest: internal-error" in done.stderr and "try --accel tcg" in done.stderr


def test_the_accelerator_a_cluster_ran_with_is_used_again_unless_another_is_asked_for(short_dir, stub_env, cleanup):
    from kubenet.model.cluster import Accel
    from kubenet.machine.target import choose_accel

    probe = lambda: Accel.KVM  # noqa: E731
    assert choose_accel(probe, None, {}, None, "tcg") == Accel.TCG  # remembered beats probing
    assert choose_accel(probe, None, {"KUBENET_ACCEL": "kvm"}, None, "tcg") == Accel.KVM  # asking beats remembering
    assert choose_accel(probe, Accel.HVF, {}, None, "tcg") == Accel.HVF
    assert choose_accel(probe, None, {}, "kvm", "tcg") == Accel.KVM
    assert choose_accel(probe, None, {}, None, None) == Accel.KVM

    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)  # under tcg, asked for by the environment
    assert (short_dir / ".kubenet" / "accel").read_text() == "tcg\n"
    unasked = {key: value for key, value in stub_env.items() if key != "KUBENET_ACCEL"}
    shown = run_invoke("argv", "--name", "node0", "--managed", "--config", str(config), env=unasked, check=True).stdout
    assert "-accel tcg," in shown  # whatever this host's probe would offer
    run_invoke("up", "--no-wait", "--accel", "kvm", "--id", "0", "--config", str(config), env=unasked, check=True)
    assert (short_dir / ".kubenet" / "accel").read_text() == "tcg\n"  # nothing was started: nothing to remember


# ---- 14. READY, a clean power-off, the sessions -----------------------------------------------


def banner_server(port: int, accepted: list[int] | None = None) -> socket.socket:
    """An SSH server's greeting on 127.0.0.1:port, as a guest's sshd gives it through user
    mode; the port of each connection it accepts is added to `accepted`."""
    listener = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        while True:
            try:
                connection, peer = listener.accept()
            except OSError:
                return
            if accepted is not None:
                accepted.append(peer[1])
            connection.sendall(b"SSH-2.0-test\r\n")
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def stop_listening(listener: socket.socket) -> None:
    try:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone would not
    except OSError:
        pass
    listener.close()


def test_ready_is_what_the_guest_proved_and_ls_knocks_on_no_guest_and_a_clean_power_off_is_no_failure(short_dir, stub_env, cleanup):
    from tinyimage.cluster import free_port_base
    from kubenet.model.config import load_cluster
    from kubenet.run.vmstate import Proof, remember_answer, remember_cloud_init_done

    base = free_port_base(2)
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    config.write_text(config.read_text().replace("network: {mode: user,", f"network: {{mode: user, ssh_port_base: {base},"))
    listed = run_invoke("ls", "--config", str(config), env=stub_env, check=True)
    assert listed.stderr.splitlines()[-1] == "kubenet: 0 of 2 VMs running"  # no session exists: none is named
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)  # --no-wait: nothing proved
    accepted: list[int] = []
    listener = banner_server(base, accepted)  # node0's guest answers on its forwarded port; node1's does not
    try:
        assert wait_for(lambda: len(list((short_dir / ".kubenet").glob("*/qmp.sock"))) == 2)
        for _ in range(3):  # the same each time: nothing is guessed from a probe that ran out of time
            assert [(row["state"], row["ready"]) for row in ls_rows(config, stub_env)] == [("running", "no"), ("running", "no")]
        assert accepted == []  # ls asked qemu and read files: no connection reached a guest

        # node0's guest proves ready as `up` records it (SSH logged in, cloud-init done, in its first boot)
        cluster = load_cluster(config)
        node0 = cluster.vm_by_name("node0")
        log = short_dir / ".kubenet" / "node0" / "serial.log"
        first, second = "0b1e0b1e-0000-4000-8000-000000000001", "0b1e0b1e-0000-4000-8000-000000000002"  # boot ids
        log.write_text(f"kubenet-mark {first} boot\nkubenet-mark {first} ssh\nkubenet-mark {first} cloud-init done\n")
        pid = int((short_dir / ".kubenet" / "node0" / "qemu.pid").read_text())
        proof = Proof(pid, first, log.stat().st_size)
        remember_answer(cluster, node0, proof)
        remember_cloud_init_done(cluster, node0, proof)
        assert [row["ready"] for row in ls_rows(config, stub_env)] == ["yes", "no"]
        with open(log, "a") as console:  # the guest reboots: its console shows another boot
            console.write(f"kubenet-mark {second} boot\n")
        assert [row["ready"] for row in ls_rows(config, stub_env)] == ["rebooted", "no"]
        assert accepted == []

        run_invoke("stop", "--name", "node0", "--config", str(config), env=stub_env, check=True)  # the stub exits 0
        table = run_invoke("ls", "--config", str(config), env=stub_env, check=True)
        assert "kubenet: node0: powered off" in table.stderr and "its qemu exited" not in table.stderr
        assert table.stderr.splitlines()[-1] == "kubenet: 1 of 2 VMs running; tmux sessions: kt-qemu (VMs)"
    finally:
        stop_listening(listener)


# ---- 7. a VDE switch that died under running VMs ---------------------------------------------


def test_a_dead_switch_is_shown_and_up_restarts_it_and_names_the_vms_cut_off(short_dir, stub_env, cleanup):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    state = short_dir / ".kubenet"
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
    assert wait_for(lambda: len(list(state.glob("*/qmp.sock"))) == 2)
    assert wait_for(lambda: [row["cluster_net"] for row in ls_rows(config, stub_env)] == ["connected", "connected"])

    switch = int((state / "vde.pid").read_text())
    os.kill(switch, 15)  # the switch this test's `up` started
    assert wait_for(lambda: not Path(f"/proc/{switch}").exists() or Path(f"/proc/{switch}/stat").read_text().split()[2] == "Z")
    listed = run_invoke("ls", "--config", str(config), env=stub_env, check=True)
    assert "kubenet: VDE switch: not running" in listed.stderr
    assert "kubenet: node0: running but cut off from the cluster network" in listed.stderr
    assert [row["cluster_net"] for row in ls_rows(config, stub_env)] == ["cut off", "cut off"]

    again = run_invoke("up", "--config", str(config), env=stub_env)
    assert again.returncode == 1, "up called VMs ready that reach no other VM"
    assert "2 VMs are cut off from the cluster network: node0 node1" in again.stderr
    assert "restart it: invoke restart --name node0" in again.stderr
    assert "running, pid" in run_invoke("ls", "--config", str(config), env=stub_env, check=True).stderr  # up started it again

    run_invoke("stop", "--name", "node0", "--config", str(config), env=stub_env, check=True)
    run_invoke("start", "--name", "node0", "--no-wait", "--config", str(config), env=stub_env, check=True)
    assert wait_for(lambda: [row["cluster_net"] for row in ls_rows(config, stub_env)] == ["connected", "cut off"])


def test_a_qemu_started_by_hand_without_the_switch_is_not_called_cut_off(short_dir, stub_env, cleanup):
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    state = short_dir / ".kubenet"
    outside = subprocess.Popen(
        [str(STUBS / "qemu_qmp.py"), "-pidfile", str(state / "node0" / "qemu.pid"), "-qmp", f"unix:{state / 'node0' / 'qmp.sock'},server"],
        stdout=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: (state / "node0" / "qmp.sock").exists())
        run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
        assert [row["cluster_net"] for row in ls_rows(config, stub_env)] == [None]
    finally:
        outside.kill()
        outside.wait()


# ---- 17. a full file system, a read-only state_dir ------------------------------------------

needs_mount_namespace = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="makes a mount namespace: needs root")


def invoke_in_mount_namespace(setup: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    """`invoke ARGS` after the shell lines `setup`, in a private mount namespace (the host's mounts stay as they are)."""
    script = f'set -e\n{setup}\nexec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(INVOKE), "--search-root", str(ROOT), *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@needs_mount_namespace
def test_a_full_file_system_at_up_is_named_as_such(short_dir, stub_env, cleanup):
    prepared = short_dir / "prepared"
    prepared.mkdir()
    write_cluster(prepared, "  - {name: node, count: 1, memory: 128M}\n")
    small = short_dir / "small"
    small.mkdir()
    setup = (
        f"mount -t tmpfs -o size=512k,mode=0755 tmpfs {small}\n"
        f"cp -a {prepared}/. {small}/\n"
        f"dd if=/dev/zero of={small}/filler bs=4k 2>/dev/null || true"  # until the file system is full
    )
    try:
        done = invoke_in_mount_namespace(setup, ["up", "--no-wait", "--config", str(small / "cluster.yaml")], stub_env)
        assert done.returncode == 1
        last = done.stderr.splitlines()[-1]
        assert last.startswith("kubenet: error: ") and f"{small}/.kubenet" in last and "space left" in last.lower(), done.stderr
        assert "vde_switch did not come up" not in done.stderr and "Traceback" not in done.stderr
    finally:
        # a switch or stub started there (if the check failed) outlives the namespace, its pid file with it
        for pid in processes_naming(f"{small}/.kubenet"):
            os.kill(pid, signal.SIGKILL)


@needs_mount_namespace
def test_down_with_a_read_only_state_dir_reports_the_vms_then_one_line_about_the_file(short_dir, stub_env, cleanup):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    state = short_dir / ".kubenet"
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
    assert wait_for(lambda: len(list(state.glob("*/qmp.sock"))) == 2)
    pids = [int((state / name / "qemu.pid").read_text()) for name in ("node0", "node1")]
    done = invoke_in_mount_namespace(f"mount --bind {state} {state}\nmount -o remount,bind,ro {state}", ["down", "--config", str(config)], stub_env)
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr, done.stderr
    assert wait_for(lambda: not any(pid_alive(pid) for pid in pids)), "down did not stop the VMs:\n" + done.stderr
    lines = done.stderr.splitlines()
    assert sorted(lines[:2]) == ["kubenet: node0: powered off", "kubenet: node1: powered off"], done.stderr  # the VMs first
    assert done.returncode == 1
    assert lines[-1].startswith("kubenet: error: ") and "read-only" in lines[-1] and str(state) in lines[-1], lines[-1]


# ---- 15. a forwarded SSH port another program holds ------------------------------------------


def test_an_ssh_port_in_use_is_found_before_any_qemu_starts(short_dir, stub_env, cleanup):
    from tinyimage.cluster import free_port_base

    base = free_port_base(3)
    config = write_cluster(short_dir, "  - {name: node, count: 3, memory: 128M}\n")
    config.write_text(config.read_text().replace("network: {mode: user,", f"network: {{mode: user, ssh_port_base: {base},"))
    holder = socket.socket()
    holder.bind(("127.0.0.1", base + 1))  # node1's port, held as another cluster's qemu would
    holder.listen(1)
    try:
        done = run_invoke("up", "--no-wait", "--config", str(config), env=stub_env)
        assert done.returncode == 1
        assert done.stderr.splitlines()[-1] == (
            f"kubenet: error: SSH port already in use on 127.0.0.1: node1 ({base + 1}) (another cluster or program holds them) "
            f"(hint: set network.ssh_port_base in {config} to a free range (now {base}))"
        )
        assert not list((short_dir / ".kubenet").glob("*/qemu.pid")), "a qemu was started"
    finally:
        holder.close()
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)  # free again: up goes on
