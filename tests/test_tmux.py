"""The cluster in tmux: a real tmux server on a private socket, stub qemus, real invoke."""

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import libtmux
import pytest

from conftest import STUBS, Client, blank_disk, kill_recorded_qemus, run_invoke, stop_vde_switch, wait_for
from kubenet.model.config import build_cluster
from kubenet.run.layout import ssh_session
from kubenet.run.tmux import Tmux, batches, session_groups


def write_cluster(directory: Path, roles: str, extra: str = "") -> Path:
    path = directory / "cluster.yaml"
    path.write_text(
        "name: kt\nnetwork: {mode: user, api_address: 192.168.1.250}\n"
        "image: {kind: kernel, kernel: vmlinuz, initrd: initrd.img}\n" + f"roles:\n{roles}" + extra
    )
    (directory / "vmlinuz").write_bytes(b"")
    (directory / "initrd.img").write_bytes(b"")
    state = directory / ".kubenet"
    state.mkdir(mode=0o700, exist_ok=True)
    (state / ".kubenet-state").write_text("made by the test, as setup would\n")  # the stubs write beside kubenet's files
    for line in run_invoke("ls", "--names", "--config", str(path), check=True).stdout.split():
        (state / line).mkdir(parents=True, exist_ok=True)
        blank_disk(state / line / "disk.img")
        (state / line / "cidata.iso").write_bytes(b"")
    return path


TUTORIAL_ROLES = "  - {name: gateway, memory: 256M}\n  - {name: control, count: 3, memory: 256M}\n  - {name: worker, count: 3, memory: 256M}\n"


@pytest.fixture
def env(tmux_server, short_dir):
    environment = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_QEMU": str(STUBS / "qemu-sleep"), "KUBENET_ACCEL": "tcg"}
    yield environment
    kill_recorded_qemus(short_dir / ".kubenet")
    stop_vde_switch(short_dir / ".kubenet")


def server(socket: str) -> libtmux.Server:
    return libtmux.Server(socket_path=socket)


def pane_rows(socket: str, session: str) -> list[dict]:
    """Read the session from outside with libtmux, as another client would."""
    rows = []
    for window in server(socket).sessions.get(session_name=session).windows:
        for pane in window.panes:
            rows.append(
                {
                    "window": window.window_name,
                    "vm": (pane.cmd("show-options", "-pqv", "@kubenet-vm").stdout or [""])[0],
                    "title": pane.pane_title,
                    "command": (pane.pane_start_command or '').strip('"'),  # tmux shows it quoted
                    "pid": int(pane.pane_pid),
                    "id": pane.pane_id,
                }
            )
    return rows


def is_tiled(socket: str, window_id: str) -> bool:
    """A window is `tiled` if tiling it again changes nothing."""
    tmux = ["tmux", "-S", socket]
    before = subprocess.run([*tmux, "display", "-p", "-t", window_id, "#{window_layout}"], capture_output=True, text=True).stdout
    subprocess.run([*tmux, "select-layout", "-t", window_id, "tiled"], check=True)
    after = subprocess.run([*tmux, "display", "-p", "-t", window_id, "#{window_layout}"], capture_output=True, text=True).stdout
    return before == after


def test_up_starts_one_titled_pane_per_vm_in_a_tiled_qemu_window(short_dir, env, tmux_server):
    config = write_cluster(short_dir, TUTORIAL_ROLES)
    done = run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
    assert (
        "kubenet: started gateway control0 control1 control2 worker0 worker1 worker2 in tmux session kt-qemu"
        f" (watch: tmux -S {tmux_server} attach-session -t kt-qemu)"  # the command that works with this socket
    ) in done.stderr
    state = short_dir / ".kubenet"
    assert wait_for(lambda: all((state / vm / "qemu.pid").exists() for vm in ["gateway", "worker2"]))
    rows = pane_rows(tmux_server, "kt-qemu")
    names = ["gateway", "control0", "control1", "control2", "worker0", "worker1", "worker2"]
    assert [r["window"] for r in rows] == ["qemu"] * 7
    assert [r["vm"] for r in rows] == names
    assert [r["title"] for r in rows] == names
    for row in rows:
        argv = run_invoke("argv", "--name", row["vm"], "--managed", "--config", str(config), env=env, check=True).stdout.strip()
        # qemu itself, exec'd by sh once it has set a private umask
        assert shlex.split(row["command"]) == ["sh", "-c", 'umask 077 && exec "$0" "$@"', *shlex.split(argv)]
        assert wait_for(lambda: (state / row["vm"] / "argv.txt").exists())
        assert (state / row["vm"] / "argv.txt").read_text().splitlines() == shlex.split(argv)[1:]
        assert int((state / row["vm"] / "qemu.pid").read_text()) == row["pid"]  # exec: the pane's process is qemu
    window = server(tmux_server).sessions.get(session_name="kt-qemu").windows[0]
    assert is_tiled(tmux_server, window.window_id)
    assert window.show_option("remain-on-exit") in (True, "on")


def test_rerunning_up_starts_only_what_is_not_running(short_dir, env, tmux_server):
    config = write_cluster(short_dir, TUTORIAL_ROLES)
    run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
    state = short_dir / ".kubenet"
    assert wait_for(lambda: len(list(state.glob("*/qemu.pid"))) == 7)
    before = {r["vm"]: r for r in pane_rows(tmux_server, "kt-qemu")}
    again = run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
    assert "kubenet: already running: gateway control0 control1 control2 worker0 worker1 worker2" in again.stderr
    assert "started" not in again.stderr
    assert {r["vm"]: r["pid"] for r in pane_rows(tmux_server, "kt-qemu")} == {vm: r["pid"] for vm, r in before.items()}
    # kill worker1's qemu: its pane stays, dead, with its last output
    os.kill(before["worker1"]["pid"], signal.SIGKILL)
    pane = server(tmux_server).panes.get(pane_id=before["worker1"]["id"])
    assert wait_for(lambda: pane.cmd("display", "-p", "#{pane_dead}").stdout == ["1"])
    assert "stub qemu" in "\n".join(pane.capture_pane(start="-"))  # scrolled up, still there
    third = run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
    assert "kubenet: started worker1 in tmux session kt-qemu" in third.stderr
    after = {r["vm"]: r for r in pane_rows(tmux_server, "kt-qemu")}
    assert len(after) == 7 and after["worker1"]["id"] == before["worker1"]["id"]
    assert after["worker1"]["pid"] != before["worker1"]["pid"]
    assert all(after[vm]["pid"] == before[vm]["pid"] for vm in after if vm != "worker1")


def test_up_never_starts_a_second_qemu_for_a_vm_running_outside_tmux(short_dir, env, tmux_server):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 256M}\n")
    state = short_dir / ".kubenet"
    # a qemu started by hand with this VM's pid file, as `invoke vm --managed` does
    outside = subprocess.Popen([str(STUBS / "qemu-sleep"), "-pidfile", str(state / "node0" / "qemu.pid")], stdout=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (state / "node0" / "qemu.pid").exists())
        done = run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
        assert "kubenet: started node1 in tmux session kt-qemu" in done.stderr
        assert "kubenet: already running: node0" in done.stderr
        assert [r["vm"] for r in pane_rows(tmux_server, "kt-qemu")] == ["node1"]
    finally:
        outside.kill()
        outside.wait()


def test_sixty_vms_spill_into_further_windows(short_dir, env, tmux_server):
    config = write_cluster(short_dir, "  - {name: node, count: 60, memory: 128M}\n")
    run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
    rows = pane_rows(tmux_server, "kt-qemu")
    assert len(rows) == 60
    assert [r["vm"] for r in rows] == [f"node{i}" for i in range(60)]
    windows = [r["window"] for r in rows]
    assert windows == ["qemu"] * 35 + ["qemu-2"] * 25
    state = short_dir / ".kubenet"
    assert wait_for(lambda: len(list(state.glob("*/qemu.pid"))) == 60)
    for window in server(tmux_server).sessions.get(session_name="kt-qemu").windows:
        assert is_tiled(tmux_server, window.window_id)


def test_the_users_base_index_settings_do_not_matter(short_dir, env, tmux_server):
    conf = short_dir / "user.conf"
    conf.write_text("set -g base-index 5\nsetw -g pane-base-index 3\nset -g default-size 40x10\n")
    subprocess.run(["tmux", "-S", tmux_server, "-f", str(conf), "new-session", "-d", "-s", "mine"], check=True)
    config = write_cluster(short_dir, TUTORIAL_ROLES)
    run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
    rows = pane_rows(tmux_server, "kt-qemu")
    assert [r["vm"] for r in rows] == ["gateway", "control0", "control1", "control2", "worker0", "worker1", "worker2"]
    assert [r["vm"] for r in pane_rows(tmux_server, "mine")] == [""]  # the user's session is left alone


def test_ssh_all_for_a_non_default_cluster(short_dir, env, tmux_server):
    config = write_cluster(short_dir, "  - {name: control, count: 2, memory: 256M}\n  - {name: worker, count: 5, memory: 256M}\n")
    (short_dir / ".kubenet" / "ssh_config").write_text("# stands in for the generated file\n")
    done = run_invoke("ssh-all", "--no-attach", "--config", str(config), env=env, check=True)
    assert done.stdout.strip() == "kt-ssh"
    rows = pane_rows(tmux_server, "kt-ssh")
    by_window = {}
    for row in rows:
        by_window.setdefault(row["window"], []).append(row["vm"])
    assert by_window == {
        "ssh-controls": ["control0", "control1"],
        "ssh-workers": ["worker0", "worker1", "worker2", "worker3", "worker4"],
        "ssh-nodes": ["control0", "control1", "worker0", "worker1", "worker2", "worker3", "worker4"],
    }
    ssh_config = short_dir / ".kubenet" / "ssh_config"
    assert all(shlex.split(row["command"])[-2:] == [str(ssh_config), row["vm"]] for row in rows), rows[0]["command"]
    session = server(tmux_server).sessions.get(session_name="kt-ssh")
    assert session.active_window.window_name == "ssh-controls"
    keys = subprocess.run(["tmux", "-S", tmux_server, "list-keys", "-T", "prefix", "C-s"], capture_output=True, text=True).stdout
    assert "synchronize-panes" in keys and "@kubenet" in keys
    # a second call finds the session and leaves it alone
    again = run_invoke("ssh-all", "--no-attach", "--config", str(config), env=env, check=True)
    assert "opened" not in again.stderr and len(pane_rows(tmux_server, "kt-ssh")) == len(rows)
    # the cluster grows (a worker more, a gateway): the session gets their panes, and keeps its own
    config.write_text(config.read_text().replace("count: 5", "count: 6").replace("roles:\n", "roles:\n  - {name: gateway, memory: 256M}\n"))
    grown = run_invoke("ssh-all", "--no-attach", "--config", str(config), env=env, check=True)
    assert "kubenet: added 3 panes to tmux session kt-ssh" in grown.stderr, grown.stderr
    by_window = {}
    for row in pane_rows(tmux_server, "kt-ssh"):
        by_window.setdefault(row["window"], []).append(row["vm"])
    assert by_window == {
        "ssh-controls": ["control0", "control1"],
        "ssh-workers": ["worker0", "worker1", "worker2", "worker3", "worker4", "worker5"],
        "ssh-nodes": ["control0", "control1", "worker0", "worker1", "worker2", "worker3", "worker4", "worker5"],
        "ssh-gateway": ["gateway"],
    }


def test_the_sync_key_toggles_synchronize_panes_only_in_kubenets_sessions(short_dir, env, tmux_server):
    config = write_cluster(short_dir, "  - {name: worker, count: 2, memory: 256M}\n")
    (short_dir / ".kubenet" / "ssh_config").write_text("#\n")
    run_invoke("ssh-all", "--no-attach", "--config", str(config), env=env, check=True)
    tmux = ["tmux", "-S", tmux_server]
    subprocess.run([*tmux, "new-session", "-d", "-s", "mine"], check=True)

    def synchronized(target: str) -> str:
        return subprocess.run([*tmux, "show-options", "-wqv", "-t", target, "synchronize-panes"], capture_output=True, text=True).stdout.strip()

    for target, expected in (("=kt-ssh:ssh-workers", "on"), ("=mine:", "")):
        client = Client(tmux_server, target)
        try:
            assert wait_for(lambda: subprocess.run([*tmux, "list-clients"], capture_output=True, text=True).stdout != "")
            client.press(b"\x02\x13")  # prefix (C-b), then C-s
            assert wait_for(lambda: synchronized(target) == expected, timeout=3) or expected == ""
            time.sleep(0.3)
            assert synchronized(target) in ((expected,) if expected else ("", "off"))
        finally:
            client.close()


def test_attach_or_switch():
    tmux = Tmux(socket="/tmp/s")
    assert tmux.argv([tmux.attach_command("kt-ssh", "ssh-controls", inside_tmux=False)]) == ["tmux", "-S", "/tmp/s", "attach-session", "-t", "=kt-ssh:ssh-controls"]
    assert tmux.attach_command("kt-ssh", None, inside_tmux=True) == ["switch-client", "-t", "=kt-ssh"]
    # the user's default server is always named, whatever $TMUX says; shown plainly to be typed
    mine = Tmux(tmpdir="/run/t")
    assert mine.argv([["list-sessions"]]) == ["tmux", "-S", f"/run/t/tmux-{os.getuid()}/default", "list-sessions"]
    assert mine.argv([["attach-session", "-t", "=kt-qemu"]], asking=True) == ["tmux", "attach-session", "-t", "=kt-qemu"]
    sudo = Tmux(sudo=True)
    tmux_path = shutil.which("tmux")  # root's PATH may not have it
    assert sudo.argv([sudo.attach_command("kt-qemu", None, inside_tmux=False)], asking=True)[:3] == ["sudo", tmux_path, "attach-session"]


def test_roots_server_is_asked_without_a_password_prompt_and_never_shares_the_users_socket():
    # the command asked sudo once up front (asroot.authorize); later calls must not ask again
    tmux_path = shutil.which("tmux")
    assert Tmux(sudo=True).argv([["list-sessions"]]) == ["sudo", "-n", tmux_path, "-S", "/tmp/tmux-0/default", "list-sessions"]
    assert Tmux(socket="/tmp/s", sudo=True).argv([["list-sessions"]]) == ["sudo", "-n", tmux_path, "-S", "/tmp/s.root", "list-sessions"]
    assert Tmux(socket="/tmp/s").argv([["list-sessions"]]) == ["tmux", "-S", "/tmp/s", "list-sessions"]


def test_ssh_session_layout_as_data():
    cluster = build_cluster({}, Path("/x/cluster.yaml"))
    spec = ssh_session(cluster, Path("/x/.kubenet/ssh_config"))
    assert [(w.name, w.layout, [p.vm for p in w.panes]) for w in spec.windows] == [
        ("ssh-gateway", "even-vertical", ["gateway"]),
        ("ssh-controls", "even-vertical", ["control0", "control1", "control2"]),
        ("ssh-workers", "even-vertical", ["worker0", "worker1", "worker2"]),
        ("ssh-nodes", "tiled", ["control0", "control1", "control2", "worker0", "worker1", "worker2"]),
    ]
    assert spec.attach_window == "ssh-controls"
    groups = session_groups(spec)
    assert groups[0][0][:10] == ["new-session", "-d", "-s", "kubenet-ssh", "-n", "ssh-gateway", "-x", "200", "-y", "60"]
    assert groups[1][0][:6] == ["new-window", "-d", "-t", "=kubenet-ssh:", "-n", "ssh-controls"]
    assert groups[2] == [
        ["split-window", "-t", "=kubenet-ssh:ssh-controls", *spec.windows[1].panes[1].command],
        ["set-option", "-p", "@kubenet-vm", "control1"],
        ["select-pane", "-T", "control1"],
        ["select-layout", "-t", "=kubenet-ssh:ssh-controls", "even-vertical"],
    ]
    assert groups[-1] == [["select-window", "-t", "=kubenet-ssh:ssh-controls"]]
    assert len(batches(groups)) == 1


def test_big_sessions_are_sent_in_calls_tmux_accepts():
    groups = [[["split-window", "-t", "=s:w", "x" * 1000]] for _ in range(30)]
    packed = batches(groups, limit=5000)
    assert [len(batch) for batch in packed] == [4] * 7 + [2]
    assert sum(packed, []) == sum(groups, [])


def test_a_pane_runs_its_program_under_a_private_umask_one_quoted_line_if_tmux_would_split_it():
    from kubenet.run.tmux import pane_command

    private = 'umask 077 && exec "$0" "$@"'
    assert pane_command(["qemu-system-x86_64", "-m", "2G"]) == ("sh", "-c", private, "qemu-system-x86_64", "-m", "2G")
    assert pane_command(["qemu", "-append", "init=/bin/sh;"]) == ("sh", "-c", "umask 077 && exec qemu -append 'init=/bin/sh;'")


def test_window_names_are_unique_whatever_the_roles_are_called():
    cluster = build_cluster(
        {"roles": [{"name": "node", "count": 2}, {"name": "workers"}, {"name": "worker", "count": 1}]}, Path("/x/cluster.yaml")
    )
    spec = ssh_session(cluster, Path("/x/.kubenet/ssh_config"))
    assert [(w.name, [p.vm for p in w.panes]) for w in spec.windows] == [
        ("ssh-nodes", ["node0", "node1"]),
        ("ssh-workers", ["workers"]),
        ("ssh-workers-2", ["worker0"]),
        ("ssh-all-nodes", ["node0", "node1", "worker0"]),
    ]
