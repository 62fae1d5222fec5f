"""Trust, second round: bad input is still one line, whatever its size or shape."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, run_invoke
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


# ---- 22. a login key that is not one, templates cloud-init would reject -----------------------


def test_a_login_key_that_does_not_parse_is_refused_before_anything_is_written(project):
    (project / "id_test.pub").write_text("ssh-ed25519 !!!not-a-key!!!\n")
    line = one_line_error(run_invoke("vmsetup", "--config", str(project / "cluster.yaml")))
    assert f"{project / 'id_test.pub'} is not an SSH public key that ssh-keygen can read" in line
    assert not list(project.rglob("cidata.iso"))


@pytest.mark.parametrize(
    "template, expected",
    [
        ("packages: 5\n", "node.yaml: packages: expected a list, got int (5)"),
        ('runcmd: "echo hi"\n', "node.yaml: runcmd: expected a list, got a string ('echo hi')"),
        ("write_files:\n  - content: x\n", "node.yaml: write_files[0]: has no `path`"),
        ("packages: [curl, {name: jq}]\n", "node.yaml: packages[1]: expected a string or a list, got a mapping"),
    ],
)
def test_templates_whose_merged_keys_have_the_wrong_type_are_refused(project, template, expected):
    (project / "tpl").mkdir()
    (project / "tpl" / "node.yaml").write_text(template)
    config = project / "cluster.yaml"
    config.write_text(config.read_text() + "templates: tpl\n")
    line = one_line_error(run_invoke("vmsetup", "--config", str(config)))
    assert expected in line
    assert not list(project.rglob("cidata.iso"))


@pytest.mark.skipif(not Path("/usr/lib/python3/dist-packages/cloudinit").is_dir(), reason="needs cloud-init installed")
@pytest.mark.parametrize(
    "template, expected",
    [
        ("pakages: [curl]\n", "node.yaml: 'pakages' is not a cloud-config key cloud-init knows (hint: did you mean 'packages'?)"),
        ("ntp: {enabled: maybe}\n", "the user-data of role node is not valid cloud-config (cloud-init schema): ntp.enabled: 'maybe' is not of type 'boolean'"),
    ],
)
def test_templates_cloud_init_would_reject_are_refused_by_its_own_schema(project, template, expected, tmp_path):
    (project / "tpl").mkdir()
    (project / "tpl" / "node.yaml").write_text(template)
    config = project / "cluster.yaml"
    config.write_text(config.read_text() + "templates: tpl\n")
    line = one_line_error(run_invoke("vmsetup", "--config", str(config), env={"KUBENET_CACHE": str(tmp_path / "cache")}))
    assert expected in line
    assert not list(project.rglob("cidata.iso"))
