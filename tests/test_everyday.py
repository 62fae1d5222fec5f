"""The everyday path told truthfully: a broken accelerator named with its fix, qemu's words
as lines, and the other things a learner meets between `make up` and chapter 4. Real
invoke, tmux, make and stub qemus (tests/stubs)."""

from __future__ import annotations

import pytest

from conftest import STUBS, run_invoke, stop_vde_switch
from test_tmux import write_cluster


# ---- a broken accelerator ----------------------------------------------------------------


KVM_ASSERTION = "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:2893: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed."


@pytest.mark.parametrize(
    "words, accel, named",
    [
        ("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n" + KVM_ASSERTION, "kvm", True),
        ("qemu-system-x86_64: failed to initialize kvm: Permission denied", "kvm", True),
        ("qemu-system-aarch64: Error: HV_UNSUPPORTED", "hvf", True),
        ("qemu-system-aarch64: hv_vm_create failed: HV_ERROR", "hvf", True),
        ("qemu-system-x86_64: -drive file=disk.img: Could not open 'disk.img': Permission denied", "kvm", False),
        ("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69", "tcg", False),  # already software
    ],
)
def test_an_accelerator_failure_is_recognised_in_what_qemu_said(words, accel, named):
    from kubenet.run.launch import accelerator_failure

    hint = accelerator_failure(words, accel)
    assert (hint is not None) == named
    if named:
        assert hint == (
            f"the accelerator ({accel}) cannot run guests on this host: set `accel: tcg` in cluster.yaml, "
            "or run `invoke up --accel tcg` (slower: software emulation)"
        )


def test_a_qemu_killed_by_its_accelerator_is_shown_line_by_line_with_the_fix(short_dir, tmux_server):
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_QEMU": str(STUBS / "qemu-kvm-broken"), "KUBENET_ACCEL": "kvm"}
    try:
        done = run_invoke("up", "--config", str(config), env=env)
    finally:
        stop_vde_switch(short_dir / ".kubenet")  # up started it for the VM that died
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    said = lines.index("kubenet: node0: qemu exited as it started; it said:")
    assert lines[said + 1 : said + 3] == ["  qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69", f"  {KVM_ASSERTION}"]
    assert lines[-1] == (
        "kubenet: error: 1 VMs did not start: node0 (hint: the accelerator (kvm) cannot run guests on this host: "
        "set `accel: tcg` in cluster.yaml, or run `invoke up --accel tcg` (slower: software emulation))"
    )


# ---- the kubenet command's --config; make's noise; Ctrl-C while up waits -------------------


def test_kubenet_takes_config_before_the_task_and_shows_its_own_options(short_dir, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    kubenet = Path(sys.executable).parent / "kubenet"
    config = write_cluster(short_dir, "  - {name: solo, count: 1, memory: 128M}\n")
    for args in (["--config", str(config), "ls", "--names"], [f"--config={config}", "ls", "--names"], ["ls", "--names", "--config", str(config)]):
        done = subprocess.run([str(kubenet), *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert (done.returncode, done.stdout) == (0, "solo0\n"), (args, done.stderr)
    shown = subprocess.run([str(kubenet), "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "--config=STRING" in shown and "the cluster file, before or after the task" in shown
    for invokes_own in ("sudo", "--pty", "--echo", "--dry", "--hide", "--warn-only", "--command-timeout"):
        assert invokes_own not in shown


def test_a_cluster_file_mistake_under_make_is_kubenets_one_line_and_a_status(short_dir):
    import os
    import subprocess

    from conftest import ROOT

    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    config.write_text(config.read_text() + "bogus: 1\n")
    done = subprocess.run(["make", "-C", str(ROOT), "up", f"CONFIG={config}"], capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [f"kubenet: error: {config}: bogus: unknown key; allowed: " + done.stderr.split("allowed: ", 1)[1].strip()]
    assert "make" not in done.stderr and "No such file" not in done.stderr


def test_ctrl_c_while_up_waits_ends_it_at_once_and_names_the_vms_that_keep_running(short_dir, stub_env, cleanup):
    import os
    import signal
    import subprocess

    from conftest import INVOKE, ROOT

    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    up = subprocess.Popen(
        [str(INVOKE), "--search-root", str(ROOT), "up", "--timeout", "300", "--config", str(config)],
        env={**os.environ, **stub_env, "PYTHONFAULTHANDLER": "1"}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    said = []
    try:
        for line in up.stderr:  # the stub guests print no marks and answer no login: up waits
            said.append(line)
            if "waiting up to" in line:
                break
        up.send_signal(signal.SIGINT)
        try:
            status = up.wait(timeout=30)  # ended by the Ctrl-C, not by its 300 s wait (how fast: bench/ctrl_c.py)
        except subprocess.TimeoutExpired:
            up.send_signal(signal.SIGABRT)  # its threads, as faulthandler shows them, say where it hung
            up.wait()
            raise AssertionError("up did not end on Ctrl-C:\n" + "".join(said + up.stderr.readlines())) from None
        assert status == 130
        said += up.stderr.readlines()
    finally:
        up.kill()
        up.wait()
    assert "kubenet: stopped waiting; still running: node0 node1 (`make up` waits for them again, `make down` stops them)\n" in said, said
    assert said[-1] == "kubenet: interrupted\n"


# ---- changes that have not reached the running VMs; `invoke restart` ------------------------


def test_running_vms_whose_seed_changed_are_named_and_restart_applies_it(short_dir, stub_env, cleanup):
    from conftest import ls_rows, wait_for

    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    state = short_dir / ".kubenet"
    for vm in ("node0", "node1"):  # each VM's seed as `make setup` notes it: its instance-id
        (state / vm / "meta-data").write_text(f"instance-id: {vm}-000000000001\nlocal-hostname: {vm}\n")
    run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
    assert wait_for(lambda: [row["state"] for row in ls_rows(config, stub_env)] == ["running", "running"])
    listed = run_invoke("ls", "--config", str(config), env=stub_env, check=True)
    assert "seed changed" not in listed.stderr

    # a template changed: `make setup` gave node1 a new seed, which its running guest has not seen
    (state / "node1" / "meta-data").write_text("instance-id: node1-000000000002\nlocal-hostname: node1\n")
    note = "kubenet: node1: its seed changed since it booted (a template, or the cluster); it takes it at the next boot: `invoke restart` restarts it now"
    assert note in run_invoke("ls", "--config", str(config), env=stub_env, check=True).stderr
    assert note in run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True).stderr
    pids = {row["name"]: row["pid"] for row in ls_rows(config, stub_env)}

    restarted = run_invoke("restart", "--no-wait", "--config", str(config), env=stub_env, check=True)  # those whose seed changed
    assert "kubenet: node1: powered off" in restarted.stderr and "node0: powered off" not in restarted.stderr, restarted.stderr
    assert "kubenet: node1 re-provisions at this boot" in restarted.stderr
    assert wait_for(lambda: [row["state"] for row in ls_rows(config, stub_env)] == ["running", "running"])
    after = {row["name"]: row["pid"] for row in ls_rows(config, stub_env)}
    assert after["node0"] == pids["node0"] and after["node1"] != pids["node1"]
    assert "seed changed" not in run_invoke("ls", "--config", str(config), env=stub_env, check=True).stderr
    nothing = run_invoke("restart", "--no-wait", "--config", str(config), env=stub_env, check=True)
    assert nothing.stderr.strip() == "kubenet: no running VM's seed changed since it booted; nothing to restart (--id, --name or --role pick VMs)"
