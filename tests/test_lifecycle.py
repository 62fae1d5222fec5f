"""ls state, stop, start and down against stub qemus that speak QMP (tests/stubs/qemu_qmp.py)."""

import json
import os
import time

import pytest

from conftest import STUBS, kill_recorded_qemus, run_invoke, stop_vde_switch, wait_for
from test_tmux import pane_rows, write_cluster

from kubenet.plumbing.process import pid_alive


@pytest.fixture
def env(tmux_server, short_dir):
    environment = {
        "KUBENET_TMUX_SOCKET": tmux_server,
        "KUBENET_QEMU": str(STUBS / "qemu_qmp.py"),
        "KUBENET_ACCEL": "tcg",
        "STUB_IGNORE_POWERDOWN": "node1,node2",  # guests that ignore the power button
        "STUB_IGNORE_QUIT": "node2",  # and a qemu that must be killed
    }
    yield environment
    kill_recorded_qemus(short_dir / ".kubenet")
    stop_vde_switch(short_dir / ".kubenet")


def states(config, env) -> dict:
    rows = json.loads(run_invoke("ls", "--json", "--config", str(config), env=env, check=True).stdout)
    return {row["name"]: (row["state"], row["pid"]) for row in rows}


def test_stop_start_and_down_with_a_vm_that_ignores_the_power_button(short_dir, env, tmux_server):
    config = write_cluster(short_dir, "  - {name: node, count: 3, memory: 256M}\n")
    state = short_dir / ".kubenet"
    run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
    assert wait_for(lambda: all(s == "running" for s, _ in states(config, env).values()))
    pids = {name: pid for name, (_, pid) in states(config, env).items()}
    assert all(pid_alive(pid) for pid in pids.values())

    stopped = run_invoke("stop", "--name", "node0", "--config", str(config), env=env, check=True)
    assert stopped.stderr.strip() == "kubenet: node0: powered off"
    assert states(config, env)["node0"] == ("stopped", None)
    assert not pid_alive(pids["node0"])
    assert [r["vm"] for r in pane_rows(tmux_server, "kt-qemu")] == ["node0", "node1", "node2"]  # the pane stays

    started = run_invoke("start", "--name", "node0", "--no-wait", "--config", str(config), env=env, check=True)
    assert "kubenet: started node0 in tmux session kt-qemu" in started.stderr
    assert wait_for(lambda: states(config, env)["node0"][0] == "running")

    pids = {name: pid for name, (_, pid) in states(config, env).items()}
    began = time.monotonic()
    down = run_invoke("down", "--timeout", "1", "--config", str(config), env=env, check=True)
    assert time.monotonic() - began < 15
    lines = sorted(down.stderr.strip().splitlines())
    assert lines == [
        "kubenet: node0: powered off",
        "kubenet: node1: quit",
        "kubenet: node2: killed",
        "kubenet: removed tmux session kt-qemu",
        "kubenet: stopped the VDE switch",
    ]
    assert not any(pid_alive(pid) for pid in pids.values())
    assert all(s == ("stopped", None) for s in states(config, env).values())
    assert not (state / "vde.pid").exists()
    has = os.system(f"tmux -S {tmux_server} has-session -t =kt-qemu 2>/dev/null")
    assert has != 0


def test_down_with_nothing_running_is_quiet_and_succeeds(short_dir, env):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 256M}\n")
    done = run_invoke("down", "--config", str(config), env=env, check=True)
    assert sorted(done.stderr.splitlines()) == ["kubenet: node0: not running", "kubenet: node1: not running"]  # in the order they settle


def test_a_qemu_started_with_sudo_is_reported_not_stopped(monkeypatch, tmp_path):
    from pathlib import Path

    from kubenet.run import shutdown
    from kubenet.model.config import build_cluster

    cluster = build_cluster({"roles": [{"name": "node", "count": 1}], "state_dir": str(tmp_path)}, Path("cluster.yaml"))

    def not_ours(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(shutdown, "qemu_pid", lambda cluster, vm: 4242)
    monkeypatch.setattr(shutdown, "qmp_request", lambda *args, **kwargs: False)  # root's socket refuses us
    monkeypatch.setattr(shutdown, "pid_alive", lambda pid: True)
    monkeypatch.setattr(shutdown, "kill", not_ours)
    assert shutdown.power_off(cluster, cluster.vms[0], timeout=0.1) == "not stopped: its qemu runs as root"
