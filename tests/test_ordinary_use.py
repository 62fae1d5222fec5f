"""What a learner hits in ordinary use, with a real tiny VM: paths with spaces, `%`, `#` and
quotes in state_dir and ssh_key; `invoke ssh` with a command; `exec` and its input, its
bytes, and its ending when it is terminated."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import INVOKE, ROOT, kill_recorded_qemus, run_invoke, stop_vde_switch, wait_for
from test_e2e import command_lines
from tinyimage.cluster import free_port_base

pytestmark = pytest.mark.e2e

HOSTILE = 'st a%d#"q'  # each of these characters meant something else to ssh_config


@pytest.fixture(scope="module")
def node(tiny_image):
    """One tiny VM whose state_dir and login key live under hostile paths, up and answering SSH;
    shared by the tests here, which each leave it as they found it."""
    import shutil
    import tempfile

    kernel, initrd = tiny_image
    short_dir = Path(tempfile.mkdtemp(prefix="kn"))
    tmux_server = str(short_dir / "tmux.sock")
    keys = short_dir / "key dir %h#"
    keys.mkdir()
    key = keys / "id ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = short_dir / "cluster.yaml"
    config.write_text(
        "name: ko\nroles:\n  - {name: node, vcpus: 1, memory: 256M}\n"
        f"network: {{mode: user, ssh_port_base: {free_port_base(1)}}}\n"
        f"image: {{kind: kernel, kernel: {kernel}, initrd: {initrd}}}\n"
        f"ssh_key: '{key}.pub'\nstate_dir: '{HOSTILE}'\naccel: tcg\ndisk_size: 64M\n"
    )
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    state = short_dir / HOSTILE
    try:
        run_invoke("vmsetup", "--config", str(config), env=env, check=True)
        up = run_invoke("up", "--ready", "ssh", "--timeout", "300", "--config", str(config), env=env)
        assert up.returncode == 0, up.stderr
        yield config, env, state
    finally:
        run_invoke("down", "--timeout", "20", "--config", str(config), env=env)
        kill_recorded_qemus(state)
        stop_vde_switch(state)
        subprocess.run(["tmux", "-S", tmux_server, "kill-server"], capture_output=True)
        shutil.rmtree(short_dir, ignore_errors=True)


def invoke(config: Path, env: dict, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(INVOKE), "--search-root", str(ROOT), *args[:1], "--config", str(config), *args[1:]],
        input=input if input is not None else b"", capture_output=True, timeout=timeout, env={**os.environ, **env},
    )  # fmt: skip


def test_paths_that_meant_something_to_ssh_config_work_for_ssh_exec_and_ssh_by_full_name(node):
    config, env, state = node
    done = invoke(config, env, "ssh", "--name", "node", "--", "hostname")
    assert (done.returncode, done.stdout) == (0, b"node\n"), done.stderr  # the command ran, not a login shell
    assert invoke(config, env, "ssh", "--name", "node", "--", "exit 3").returncode == 3  # with its exit status
    done = invoke(config, env, "exec", "--", "hostname")
    assert (done.returncode, done.stdout) == (0, b"node: node\n"), done.stderr
    by_domain = subprocess.run(
        ["ssh", "-F", str(state / "ssh_config"), "-o", "BatchMode=yes", "node.kubenet", "hostname"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert (by_domain.returncode, by_domain.stdout) == (0, "node\n"), by_domain.stderr


def test_exec_closes_the_remote_input_unless_asked_to_pass_it(node):
    config, env, _ = node
    done = invoke(config, env, "exec", "--", "cat", timeout=30)  # an input that never ends would hang it
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    done = invoke(config, env, "exec", "--", "read answer; echo got:$answer", timeout=30)  # a question nobody answers
    assert done.stdout == b"node: got:\n"
    done = invoke(config, env, "exec", "--stdin", "--", "cat > passed; wc -c < passed", input=b"x\ny\n", timeout=30)
    assert (done.returncode, done.stdout.split()) == (0, [b"node:", b"4"]), done.stderr
    assert invoke(config, env, "exec", "--", "cat passed").stdout == b"node: x\nnode: y\n"


def test_exec_passes_bytes_that_are_not_utf8_through(node):
    config, env, _ = node
    done = invoke(config, env, "exec", "--", r"printf 'caf\351\n'")
    assert (done.returncode, done.stdout) == (0, b"node: caf\xe9\n"), done.stderr
    assert b"1 of 1 VMs succeeded" in done.stderr


def test_a_terminated_exec_takes_its_ssh_and_the_remote_command_with_it(node):
    config, env, _ = node
    process = subprocess.Popen(
        [str(INVOKE), "--search-root", str(ROOT), "exec", "--config", str(config), "--", "sleep 300"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env},
    )  # fmt: skip
    try:
        ssh_running = lambda: any(b"ssh\0" in line and b"sleep 300" in line for line in command_lines())  # noqa: E731
        assert wait_for(ssh_running, timeout=30)
        time.sleep(1)  # the remote sleep has started
        process.send_signal(signal.SIGTERM)  # as `timeout 10 invoke exec ...` does
        _, err = process.communicate(timeout=30)
        assert process.returncode == 143 and b"kubenet: terminated" in err, err
        assert wait_for(lambda: not ssh_running(), timeout=10)
        remote = invoke(config, env, "exec", "--", "pgrep -f 'sleep 300' || echo gone")
        assert remote.stdout == b"node: gone\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
