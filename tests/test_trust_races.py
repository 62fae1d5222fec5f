"""Trust, second round: interrupted and racing commands, with real invoke, tmux and stub qemus.

Commands that change the cluster's processes or sessions run one after another; the loser
of a race reports what really happened and succeeds when the end is what it asked for; a
Ctrl-C stops `down` where it is; the cluster's sessions are on one tmux server whatever
the caller's $TMUX.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


from conftest import INVOKE, ROOT, STUBS, kill_recorded_qemus, run_invoke, stop_vde_switch, wait_for
from test_tmux import write_cluster
from test_trust import processes_naming

from kubenet.plumbing.process import pid_alive


def popen(config: Path, env: dict, *args: str, extra_env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [str(INVOKE), "--search-root", str(ROOT), *args, "--config", str(config)],
        env={**os.environ, **env, **(extra_env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def slow_tmux(directory: Path) -> dict:
    """A PATH on which tmux answers 0.5 s late: the racers' steps overlap as on a busy machine."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "tmux").write_text(f"#!/bin/sh\nsleep 0.5\nexec {shutil.which('tmux')} \"$@\"\n")
    (bin_dir / "tmux").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


# ---- 5. down during up, two downs, two ssh-alls ----------------------------------------------


def test_down_during_up_waits_for_the_launch_and_then_stops_everything(short_dir, stub_env):
    config = write_cluster(short_dir, "  - {name: node, count: 3, memory: 128M}\n")
    state = short_dir / ".kubenet"
    slow = slow_tmux(short_dir)
    try:
        up = popen(config, stub_env, "up", "--no-wait", extra_env=slow)
        assert wait_for(lambda: (state / "vde.pid").exists(), timeout=20)  # up is launching, the switch has started
        down = popen(config, stub_env, "down", "--timeout", "20", extra_env=slow)
        (_, up_err), (_, down_err) = up.communicate(timeout=120), down.communicate(timeout=120)
        assert (up.returncode, down.returncode) == (0, 0), (up_err, down_err)
        assert "kubenet: started node0 node1 node2" in up_err
        assert sorted(line for line in down_err.splitlines() if line.endswith("powered off")) == [
            f"kubenet: node{index}: powered off" for index in range(3)
        ], down_err  # down saw what up started: it waited for the launch
        assert "kubenet: stopped the VDE switch" in down_err
        assert wait_for(lambda: processes_naming(f"{state}/") == [], timeout=10)
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


def test_two_downs_at_once_both_succeed_and_say_what_really_happened(short_dir, stub_env):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    state = short_dir / ".kubenet"
    try:
        run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
        assert wait_for(lambda: len(list(state.glob("*/qmp.sock"))) == 2)
        racers = [popen(config, stub_env, "down", "--timeout", "20", extra_env=slow_tmux(short_dir)) for _ in range(2)]
        outputs = [racer.communicate(timeout=120) for racer in racers]
        assert [racer.returncode for racer in racers] == [0, 0], outputs
        said = "".join(err for _, err in outputs)
        assert "no server running" not in said and "Traceback" not in said
        assert sorted(line for line in said.splitlines() if line.endswith(("powered off", "not running"))) == [
            "kubenet: node0: not running", "kubenet: node0: powered off", "kubenet: node1: not running", "kubenet: node1: powered off",
        ]  # fmt: skip
        assert said.count("removed tmux session kt-qemu") == 1
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


def test_two_ssh_alls_at_once_open_one_session_and_both_succeed(short_dir, stub_env, tmux_server):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    (short_dir / ".kubenet" / "ssh_config").write_text("Host *\n  HostName 127.0.0.1\n  Port 9\n")
    racers = [popen(config, stub_env, "ssh-all", "--no-attach", extra_env=slow_tmux(short_dir)) for _ in range(2)]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    assert [out for out, _ in outputs] == ["kt-ssh\n", "kt-ssh\n"]
    assert "".join(err for _, err in outputs).count("opened tmux session kt-ssh") == 1
    sessions = subprocess.run(["tmux", "-S", tmux_server, "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True).stdout
    assert sessions.split() == ["kt-ssh"]


# ---- 6. Ctrl-C of down ------------------------------------------------------------------------


def test_ctrl_c_stops_down_where_it_is_and_leaves_the_vms_not_yet_killed_running(short_dir, stub_env):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    state = short_dir / ".kubenet"
    try:
        # guests that ignore the power button (the stubs hear it from the tmux server up starts)
        run_invoke("up", "--no-wait", "--config", str(config), env={**stub_env, "STUB_IGNORE_POWERDOWN": "node0,node1"}, check=True)
        assert wait_for(lambda: len(list(state.glob("*/qmp.sock"))) == 2)
        pids = [row["pid"] for row in json.loads(run_invoke("ls", "--json", "--config", str(config), env=stub_env, check=True).stdout)]
        down = popen(config, stub_env, "down", "--timeout", "60")
        time.sleep(1.5)  # the guests have been asked, and ignore it
        began = time.monotonic()
        down.send_signal(signal.SIGINT)
        _, err = down.communicate(timeout=15)
        assert time.monotonic() - began < 8, "Ctrl-C waited for the timeout"
        assert down.returncode == 130, err
        assert "kubenet: down interrupted; still running: node0 node1" in err and "kubenet: interrupted" in err
        assert all(pid_alive(pid) for pid in pids)  # not killed
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


# ---- 11. one tmux server, whatever $TMUX says ------------------------------------------------


def test_the_clusters_sessions_live_on_one_server_whatever_the_callers_tmux(short_dir):
    """Without KUBENET_TMUX_SOCKET, the user's default server (here under a private TMUX_TMPDIR):
    `up` typed inside a tmux session of another server, `start` and `ls` outside any, and
    `down` all find the same session."""
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    state = short_dir / ".kubenet"
    tmpdir = short_dir / "tmuxdir"
    tmpdir.mkdir()
    other = short_dir / "other.sock"
    subprocess.run(["tmux", "-S", str(other), "new-session", "-d", "-s", "mine"], check=True)
    base = {"KUBENET_QEMU": str(STUBS / "qemu_qmp.py"), "KUBENET_ACCEL": "tcg", "TMUX_TMPDIR": str(tmpdir)}
    inside_other = {**base, "TMUX": f"{other},1,0"}
    environment = {key: value for key, value in os.environ.items() if key not in ("KUBENET_TMUX_SOCKET", "TMUX")}
    default = tmpdir / f"tmux-{os.getuid()}" / "default"

    def invoke(env: dict, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(INVOKE), "--search-root", str(ROOT), *args, "--config", str(config)],
            env={**environment, **env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    def sessions(socket: Path) -> list[str]:
        listed = subprocess.run(["tmux", "-S", str(socket), "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True)
        return sorted(listed.stdout.split())

    try:
        invoke(inside_other, "up", "--no-wait", "--id", "0")
        assert sessions(other) == ["mine"] and sessions(default) == ["kt-qemu"]
        started = invoke(base, "start", "--name", "node1", "--no-wait")
        assert "kubenet: started node1" in started.stderr
        panes = subprocess.run(["tmux", "-S", str(default), "list-panes", "-s", "-t", "=kt-qemu", "-F", "#{@kubenet-vm}"], capture_output=True, text=True)
        assert sorted(panes.stdout.split()) == ["node0", "node1"]
        assert wait_for(lambda: len(list(state.glob("*/qmp.sock"))) == 2)
        rows = json.loads(invoke(inside_other, "ls", "--json").stdout)
        assert [row["state"] for row in rows] == ["running", "running"]
        down = invoke(inside_other, "down", "--timeout", "20")
        assert "removed tmux session kt-qemu" in down.stderr
        assert sessions(default) == [] and sessions(other) == ["mine"]
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)
        for socket in (other, default):
            subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True)


# ---- 15. progress lines of parallel setups ----------------------------------------------------


def test_parallel_setups_write_whole_progress_lines(tmp_path):
    import re

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id_t")], check=True)
    (tmp_path / "k").touch()
    (tmp_path / "i").touch()
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "name: p\nimage: {kind: kernel, kernel: k, initrd: i}\nssh_key: id_t.pub\n"
        "network: {mode: user, api_address: 192.168.1.250}\nroles:\n  - {name: node, count: 24, memory: 128M}\n"
    )
    done = run_invoke("vmsetup", "--config", str(config), env={"KUBENET_ACCEL": "tcg"}, check=True)
    lines = done.stderr.splitlines()
    state = re.escape(str(tmp_path / ".kubenet"))
    whole = re.compile(rf"^(node\d+: (created {state}/node\d+/disk\.img \(20G\)|wrote {state}/node\d+/cidata\.iso)|kubenet: wrote {state}/(known_hosts|ssh_config))$")
    assert [line for line in lines if not whole.match(line)] == []
    assert len(lines) == 24 * 2 + 2
