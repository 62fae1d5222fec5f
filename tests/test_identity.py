"""VM identity (trust, second round, item 13): a cluster.yaml edited while VMs exist cannot
renumber them, and a VM dropped from it is an orphan that `ls` shows, `down` stops and
`reset --name` removes; with the real invoke, tmux and stub qemus."""

from __future__ import annotations

from pathlib import Path

from conftest import blank_disk, ls_rows, run_invoke, wait_for
from kubenet.plumbing.process import pid_alive
from test_tmux import write_cluster


def with_roles(config: Path, roles: str) -> None:
    text = config.read_text()
    config.write_text(text[: text.index("roles:\n")] + "roles:\n" + roles)


def test_growing_a_role_before_others_is_refused_and_ls_shows_the_vms_as_they_were_made(short_dir, stub_env, cleanup):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n  - {name: worker, count: 1, memory: 128M}\n")
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
    assert wait_for(lambda: len(list((short_dir / ".kubenet").glob("*/qmp.sock"))) == 3)

    with_roles(config, "  - {name: node, count: 3, memory: 128M}\n  - {name: worker, count: 1, memory: 128M}\n")
    (short_dir / ".kubenet" / "node2").mkdir()
    blank_disk(short_dir / ".kubenet" / "node2" / "disk.img")
    (short_dir / ".kubenet" / "node2" / "cidata.iso").write_bytes(b"")
    done = run_invoke("up", "--no-wait", "--config", str(config), env=stub_env)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(
        f"kubenet: error: {config} would give VMs that exist another identity: "
        "worker0 (id 2 → 3, mac 52:52:52:00:00:02 → 52:52:52:00:00:03, ip 192.168.1.12 → 192.168.1.13)"
    ), done.stderr
    assert "invoke reset --name NAME" in done.stderr
    assert not (short_dir / ".kubenet" / "node2" / "qemu.pid").exists()  # nothing started

    worker = next(row for row in ls_rows(config, stub_env) if row["name"] == "worker0")
    assert (worker["id"], worker["ip"], worker["state"]) == (2, "192.168.1.12", "running")  # what it is, not what the file says
    listed = run_invoke("ls", "--config", str(config), env=stub_env, check=True)
    assert f"kubenet: worker0: shown as it was made; {config} now gives it id 2 → 3" in listed.stderr


def test_a_vm_dropped_from_the_file_is_an_orphan_listed_stopped_and_removable(short_dir, stub_env, cleanup):
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n  - {name: worker, count: 1, memory: 128M}\n")
    state = short_dir / ".kubenet"
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
    assert wait_for(lambda: len(list(state.glob("*/qmp.sock"))) == 2)
    worker_pid = int((state / "worker0" / "qemu.pid").read_text())

    with_roles(config, "  - {name: node, count: 1, memory: 128M}\n")
    table = ls_rows(config, stub_env)
    assert [(row["name"], row["orphaned"], row["state"]) for row in table] == [("node0", False, "running"), ("worker0", True, "running")]
    listed = run_invoke("ls", "--config", str(config), env=stub_env, check=True)
    assert f"kubenet: worker0: no longer in {config} (orphaned): `invoke down` stops it" in listed.stderr

    down = run_invoke("down", "--config", str(config), env=stub_env, check=True)
    assert "kubenet: worker0: powered off" in down.stderr  # gracefully, not by losing its session
    assert not pid_alive(worker_pid)

    reset = run_invoke("reset", "--name", "worker0", "--yes", "--config", str(config), env=stub_env, check=True)
    assert f"kubenet: deleted {state}/worker0/disk.img" in reset.stderr
    assert [row["name"] for row in ls_rows(config, stub_env)] == ["node0"]
