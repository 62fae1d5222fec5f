"""Trust, second round: bad input is still one line, whatever its size or shape."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import INVOKE, ROOT, run_invoke
from test_trust import one_line_error


@pytest.fixture
def project(tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id_test")], check=True)
    (tmp_path / "k").touch()
    (tmp_path / "cluster.yaml").write_text(
        "name: t\nimage: {kind: kernel, kernel: k, initrd: k}\nssh_key: id_test.pub\nnetwork: {mode: user}\n"
        "roles:\n  - {name: node, count: 1, memory: 256M}\n"
    )
    return tmp_path


# ---- 18. numbers too big for what reads them --------------------------------------------


def test_a_pid_file_holding_a_huge_number_counts_as_stopped_everywhere(project):
    config = project / "cluster.yaml"
    run_invoke("vmsetup", "--config", str(config), check=True)
    pid_file = project / ".kubenet" / "node0" / "qemu.pid"
    for garbage in ("12345678901234567890\n", "-5\n", "0\n", "99999999\n", "x" * 100):
        pid_file.write_text(garbage)
        listed = run_invoke("ls", "--json", "--config", str(config), env={"KUBENET_ACCEL": "tcg"})
        assert listed.returncode == 0 and '"state": "stopped"' in listed.stdout, (garbage, listed.stderr)
        for args in (("stop", "--name", "node0"), ("down", "--timeout", "1")):
            done = run_invoke(*args, "--config", str(config), env={"KUBENET_ACCEL": "tcg"})
            assert (done.returncode, done.stderr.splitlines()[0]) == (0, "kubenet: node0: not running"), (garbage, done.stderr)
        done = run_invoke("reset", "--name", "node0", "--yes", "--config", str(config))
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("option", ["--id", "--name"])
def test_an_id_or_name_of_thousands_of_characters_is_one_short_line(option):
    value = "9" * 5000 if option == "--id" else "n" * 5000
    line = one_line_error(run_invoke("argv", option, value, "--config", str(ROOT / "cluster.yaml"), env={"KUBENET_ACCEL": "tcg"}))
    assert "(5000 characters)" in line and len(line) < 400


# ---- 23. the cluster file's own path through make -----------------------------------------


@pytest.mark.parametrize("how", ["CONFIG", "KUBENET_CONFIG"])
@pytest.mark.parametrize("name, shown", [("c$(shell touch {mark}).yaml", "'$' '(' ')' ' '"), ("my dir/cluster.yaml", "' '")])
def test_make_refuses_a_cluster_file_path_it_would_run_or_split(project, how, name, shown):
    mark = project / "PWNED"
    path = project / name.format(mark=mark)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((project / "cluster.yaml").read_text())
    args = [f"CONFIG={path}"] if how == "CONFIG" else []
    env = {**os.environ, **({"KUBENET_CONFIG": str(path)} if how == "KUBENET_CONFIG" else {})}
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "setup", *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and not mark.exists()
    errors = [line for line in done.stderr.splitlines() if line.startswith("kubenet: error:")]
    assert errors == [
        "kubenet: error: the cluster file's path (CONFIG or KUBENET_CONFIG) has characters that make cannot take in a file name: "
        f"{shown} (hint: use a path of letters, digits and / . _ - + , @ ~, or run the invoke tasks without make)"
    ], done.stderr
    assert not list(project.rglob("disk.img"))
