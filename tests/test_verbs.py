"""The verbs users of Vagrant, Lima and Multipass look for: `destroy`, `make down`, `logs`;
with the real invoke, make, tmux and stub qemus."""

from __future__ import annotations

import os
import subprocess
import time

from conftest import INVOKE, ROOT, run_invoke, wait_for
from kubenet.plumbing.process import pid_alive
from test_tmux import write_cluster


def test_destroy_refuses_what_is_not_kubenets_then_removes_the_whole_cluster(short_dir, stub_env, tmux_server, cleanup):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    state = short_dir / ".kubenet"
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
    assert wait_for(lambda: len(list(state.glob("*/qmp.sock"))) == 2)
    pids = [int((state / name / "qemu.pid").read_text()) for name in ("node0", "node1")]

    (state / "node1" / "notes.txt").write_text("the user's\n")
    refused = run_invoke("destroy", "--yes", "--config", str(config), env=stub_env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"kubenet: error: state_dir {state} holds what kubenet did not make: node1/notes.txt; nothing was destroyed "
        "(hint: move those files elsewhere first: destroy deletes only kubenet's own)"
    )
    assert all(pid_alive(pid) for pid in pids) and (state / "node0" / "disk.img").exists()

    (state / "node1" / "notes.txt").unlink()
    unasked = run_invoke("destroy", "--config", str(config), env=stub_env)  # no terminal to ask on, no --yes
    assert unasked.returncode == 1 and (state / "node0" / "disk.img").exists()

    done = run_invoke("destroy", "--yes", "--config", str(config), env=stub_env, check=True)
    assert "kubenet: node0: powered off" in done.stderr and "kubenet: node1: powered off" in done.stderr
    assert done.stderr.splitlines()[-1] == f"kubenet: destroyed cluster kt: removed {state}"
    assert not state.exists() and not any(pid_alive(pid) for pid in pids)
    sessions = subprocess.run(["tmux", "-S", tmux_server, "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True).stdout
    assert "kt-qemu" not in sessions
    again = run_invoke("destroy", "--yes", "--config", str(config), env=stub_env, check=True)
    assert again.stderr.strip() == f"kubenet: {state} does not exist; nothing to destroy"


def test_make_down_powers_the_cluster_off(short_dir, stub_env, cleanup):
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    state = short_dir / ".kubenet"
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
    assert wait_for(lambda: (state / "node0" / "qmp.sock").exists())
    pid = int((state / "node0" / "qemu.pid").read_text())
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "down", f"CONFIG={config}"], env={**os.environ, **stub_env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "kubenet: node0: powered off" in done.stderr and not pid_alive(pid)


def test_logs_prints_the_console_from_the_last_boot_and_follows_it(short_dir, stub_env):
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    log = short_dir / ".kubenet" / "node0" / "serial.log"
    log.write_bytes(b"BdsDxe: loading\n[    0.000000] Linux version 6.1 (first boot)\nreboot: Restarting system\n"
                    b"[    0.000000] Linux version 6.1 (second boot)\nnode0 login: \xff\n")  # fmt: skip
    whole = subprocess.run([str(INVOKE), "--search-root", str(ROOT), "logs", "--name", "node0", "--config", str(config)], capture_output=True)
    assert whole.returncode == 0 and whole.stdout == log.read_bytes()  # bytes as the console wrote them
    recent = subprocess.run([str(INVOKE), "--search-root", str(ROOT), "logs", "--name", "node0", "--since-boot", "--config", str(config)], capture_output=True)
    assert recent.stdout == b"[    0.000000] Linux version 6.1 (second boot)\nnode0 login: \xff\n"

    follower = subprocess.Popen(
        [str(INVOKE), "--search-root", str(ROOT), "logs", "--name", "node0", "--follow", "--since-boot", "--config", str(config)],
        stdout=subprocess.PIPE,
    )
    try:
        with open(log, "ab") as stream:
            stream.write(b"a line written later\n")
        seen = b""
        deadline = time.monotonic() + 10
        while b"a line written later\n" not in seen and time.monotonic() < deadline:
            seen += os.read(follower.stdout.fileno(), 4096)
        assert seen.startswith(b"[    0.000000] Linux version 6.1 (second boot)\n") and seen.endswith(b"a line written later\n")
    finally:
        follower.terminate()
        follower.wait()
    missing = run_invoke("logs", "--id", "7", "--config", str(config))
    assert missing.returncode == 1 and missing.stderr.startswith("kubenet: error: no VM with id '7'")


def test_bash_completion_gives_tasks_options_and_the_clusters_vm_names(tmp_path):
    (tmp_path / "cluster.yaml").write_text("roles:\n  - {name: gateway}\n  - {name: worker, count: 2}\n")
    other = tmp_path / "other.yaml"
    other.write_text("roles:\n  - {name: node, count: 2}\n")
    script = f"""
        source {ROOT}/scripts/completion.bash
        complete() {{ :; }}
        ask() {{ COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kubenet_complete; echo "${{COMPREPLY[*]}}"; }}
        ask kubenet ssh --name wor
        ask kubenet exec --config {other} --name ""
        ask kubenet ss
        ask kubenet ssh --
    """
    env = {**os.environ, "PATH": f"{INVOKE.parent}:{os.environ['PATH']}"}
    env.pop("KUBENET_CONFIG", None)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert done.stdout.splitlines() == ["worker0 worker1", "node0 node1", "ssh ssh-all", "--config --id --name"], done.stderr
