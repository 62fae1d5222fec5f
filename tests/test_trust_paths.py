"""Trust, second round: other users and paths. A state_dir others could write to, or that is
not kubenet's, is refused before anything is read from it or written to it; a cluster file
reached through a symbolic link names the same VMs as through its real path; what a killed
setup leaves behind is cleaned."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import STUBS, kill_recorded_qemus, run_invoke, stop_vde_switch, wait_for
from test_trust import one_line_error

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="gives a directory to another user: needs root")


@pytest.fixture
def project(tmp_path):
    """A cluster of two kernel-booted VMs in user mode, its state_dir not made yet."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id_test")], check=True)
    (tmp_path / "k").touch()
    (tmp_path / "cluster.yaml").write_text(
        "name: t\nimage: {kind: kernel, kernel: k, initrd: k}\nssh_key: id_test.pub\nnetwork: {mode: user}\n"
        "roles:\n  - {name: node, count: 2, memory: 256M}\n"
    )
    return tmp_path


def setup(project: Path, *args: str, config: Path | None = None):
    return run_invoke("vmsetup", *args, "--config", str(config or project / "cluster.yaml"))


# ---- 1. a state_dir someone else can write to ----------------------------------------


def test_a_state_dir_others_can_write_to_is_refused_before_anything_is_written(project):
    state = project / ".kubenet"
    state.mkdir()
    state.chmod(0o777)
    line = one_line_error(setup(project))
    assert f"state_dir {state} can be written by others (mode 0777) (hint: make it yours alone: chmod 700 {state})" in line
    assert list(state.iterdir()) == []  # no host key was made, to be swapped by someone else
    assert one_line_error(run_invoke("ls", "--config", str(project / "cluster.yaml"))) == line  # nor read

    state.chmod(0o700)
    setup(project).check_returncode()
    (state / "node0").chmod(0o775)  # a directory kubenet made in it, opened up later
    assert "node0's directory" in one_line_error(setup(project)) and "mode 0775" in one_line_error(setup(project))


def test_a_state_dir_under_a_directory_others_can_write_without_the_sticky_bit_is_refused(project):
    shared = project / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may rename shared/state away and put their own in its place
    config = project / "cluster.yaml"
    config.write_text(config.read_text() + "state_dir: shared/state\n")
    line = one_line_error(setup(project))
    assert f"state_dir {shared / 'state'} is inside {shared}, which others can write to (mode 0777) without the sticky bit" in line
    assert not (shared / "state").exists()
    shared.chmod(0o1777)  # as /tmp is: others cannot touch what is ours in it
    setup(project).check_returncode()


@as_root
def test_a_state_dir_of_another_user_is_refused(project):
    state = project / ".kubenet"
    state.mkdir(mode=0o700)
    nobody = pwd.getpwnam("nobody")
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    line = one_line_error(setup(project))
    assert f"state_dir {state} belongs to nobody, not to you (root)" in line
    assert list(state.iterdir()) == []


def test_links_planted_where_kubenet_makes_files_are_never_followed(short_dir):
    """A pid file or console log replaced by a link (a race with `up`, or a stale one) is made
    afresh: qemu never truncates, writes or deletes the file the link names."""
    from test_tmux import write_cluster

    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    state = short_dir / ".kubenet"
    victim = short_dir / "victim"
    victim.write_text("precious\n")
    for name in ("qemu.pid", "serial.log"):
        (state / "node0" / name).symlink_to(victim)
    env = {"KUBENET_TMUX_SOCKET": str(short_dir / "tmux.sock"), "KUBENET_QEMU": str(STUBS / "qemu_qmp.py"), "KUBENET_ACCEL": "tcg"}
    try:
        run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
        assert wait_for(lambda: (state / "node0" / "qmp.sock").exists())
        assert not (state / "node0" / "qemu.pid").is_symlink() and not (state / "node0" / "serial.log").is_symlink()
        run_invoke("down", "--timeout", "5", "--config", str(config), env=env, check=True)
        assert victim.read_text() == "precious\n"
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)
        subprocess.run(["tmux", "-S", str(short_dir / "tmux.sock"), "kill-server"], capture_output=True)


# ---- 2. a state_dir that is not kubenet's ------------------------------------------------


def test_a_state_dir_holding_what_kubenet_did_not_make_is_refused_and_its_keys_never_adopted(project):
    """As a state_dir linked to /etc with a role named `ssh` would be: a directory of other files."""
    system = project / "etc"
    (system / "ssh").mkdir(parents=True)
    (system / "ssh" / "ssh_host_ed25519_key").write_text("someone else's key\n")
    (system / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    system.chmod(0o755)
    (project / "state").symlink_to(system)
    config = project / "cluster.yaml"
    config.write_text(config.read_text().replace("{name: node, count: 2, memory: 256M}", "{name: ssh}") + "state_dir: state\n")
    line = one_line_error(setup(project))
    assert f"state_dir {system} holds files kubenet did not make (hint: point state_dir at a new or empty directory" in line
    assert system.stat().st_mode & 0o777 == 0o755  # its mode untouched
    assert sorted(path.name for path in system.rglob("*")) == ["passwd", "ssh", "ssh_host_ed25519_key"]


def test_an_empty_directory_or_one_an_earlier_kubenet_made_is_adopted_and_marked(project):
    state = project / ".kubenet"
    state.mkdir(mode=0o700)
    setup(project).check_returncode()
    assert (state / ".kubenet-state").is_file()

    # what an earlier kubenet left, without the mark: only kubenet's own files
    (state / ".kubenet-state").unlink()
    run_invoke("ls", "--config", str(project / "cluster.yaml"), check=True)
    setup(project).check_returncode()
    assert (state / ".kubenet-state").is_file()


def test_a_host_key_that_is_a_link_is_never_adopted(project):
    setup(project).check_returncode()
    key = project / ".kubenet" / "node0" / "ssh_host_ed25519_key"
    elsewhere = project / "foreign_key"
    shutil.move(key, elsewhere)
    key.symlink_to(elsewhere)
    line = one_line_error(setup(project, "--seed"))
    assert f"{key} is not a file kubenet wrote (a link)" in line


# ---- 4. a cluster file reached through a symlinked directory ---------------------------------


def test_a_cluster_reached_through_a_linked_directory_is_the_same_cluster(short_dir, tmux_server):
    from test_tmux import write_cluster

    real = short_dir / "real"
    real.mkdir()
    config = write_cluster(real, "  - {name: node, count: 2, memory: 128M}\n")
    link = short_dir / "link"
    link.symlink_to(real)
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_QEMU": str(STUBS / "qemu_qmp.py"), "KUBENET_ACCEL": "tcg"}
    state = real / ".kubenet"
    try:
        run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
        assert wait_for(lambda: len(list(state.glob("*/qmp.sock"))) == 2)
        through_link = str(link / "cluster.yaml")
        rows = json.loads(run_invoke("ls", "--json", "--config", through_link, env=env, check=True).stdout)
        assert [(row["state"], row["pid"] is not None) for row in rows] == [("running", True)] * 2
        pids = [row["pid"] for row in rows]
        vde = int((state / "vde.pid").read_text())
        done = run_invoke("down", "--timeout", "10", "--config", through_link, env=env, check=True)
        assert sorted(line for line in done.stderr.splitlines() if line.endswith("powered off")) == [
            "kubenet: node0: powered off", "kubenet: node1: powered off",
        ]  # fmt: skip
        assert "kubenet: stopped the VDE switch" in done.stderr
        from kubenet.plumbing.process import pid_alive

        assert wait_for(lambda: not any(pid_alive(pid) for pid in [*pids, vde]))
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


# ---- 8. what a killed setup leaves ---------------------------------------------------------


def test_the_temporaries_of_a_killed_setup_are_cleaned_by_the_next(project):
    setup(project).check_returncode()
    vm = project / ".kubenet" / "node1"
    left = [vm / ".disk.img.x1y2z3.tmp", vm / ".cidata.iso.abc_12.tmp", project / ".kubenet" / ".ssh_config.q9.tmp"]
    for path in left:
        path.write_bytes(b"half a file")  # what SIGKILL of `make setup` in the middle of a write leaves
    mine = vm / ".notes.tmp"
    mine.write_text("not kubenet's\n")
    setup(project).check_returncode()
    assert [path for path in left if path.exists()] == []
    assert mine.exists()
