"""Host ports into the cluster (`forward:`, `invoke tunnel`): the ssh command line (pure),
cluster.yaml's checks, and a real tunnel through the tiny image's gateway to a web
server that listens only on another VM's cluster address."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from conftest import kill_recorded_qemus, ls_rows, make_up, run_invoke, stop_vde_switch
from kubenet.plumbing import errors
from kubenet.model.cluster import Cluster, Forward
from kubenet.model.config import build_cluster
from kubenet.run.tunnel import forward_options, master_argv, socket_path, ssh_path_value
from tinyimage.cluster import free_port_base, write_cluster

# ---- pure -------------------------------------------------------------------------------


def test_each_forward_is_bound_to_the_loopback_only():
    forwards = (Forward(6443, "kubernetes", 6443), Forward(8080, "192.168.1.30", 80))
    assert forward_options(forwards) == ["-L", "127.0.0.1:6443:kubernetes:6443", "-L", "127.0.0.1:8080:192.168.1.30:80"]


def test_the_tunnel_is_a_control_master_on_state_dirs_socket_through_the_first_vm(short_dir):
    cluster = build_cluster(yaml.safe_load("forward: [{port: 6443, to: 'kubernetes:6443'}]"), short_dir / "cluster.yaml")
    argv = master_argv(cluster)
    assert argv[:5] == ["ssh", "-F", str(short_dir / ".kubenet" / "ssh_config"), "-S", str(short_dir / ".kubenet" / "tunnel.sock")]
    assert argv[-1] == "gateway"  # the tutorial's first VM
    assert {"-M", "-f", "-N", "ExitOnForwardFailure=yes", "BatchMode=yes"} <= set(argv)
    assert "127.0.0.1:6443:kubernetes:6443" in argv


def test_a_control_path_keeps_a_literal_percent_and_a_long_one_moves_to_the_runtime_directory(tmp_path):
    assert ssh_path_value(Path("/home/a%b/.kubenet/tunnel.sock")) == "/home/a%%b/.kubenet/tunnel.sock"
    deep = replace(Cluster(), state_dir=tmp_path / ("d" * 90))
    assert socket_path(deep).name.startswith("tunnel-") and len(str(socket_path(deep))) < 80


def test_every_bad_forward_is_one_line_of_its_own(tmp_path):
    text = "forward: [{port: 6443, to: kubernetes}, {port: 70000, to: 'a:1'}, {port: 1, to: 'a:99999'}, {port: 2, to: 'a:1', via: x}]"
    with pytest.raises(errors.ConfigError) as raised:
        build_cluster(yaml.safe_load(text), tmp_path / "cluster.yaml")
    said = str(raised.value)
    for expected in ("forward[0].to: 'kubernetes' is not allowed", "forward[1].port: 70000 is out of range",
                     "forward[2].to: port 99999 is out of range", "forward[3].via: unknown key"):  # fmt: skip
        assert expected in said
    with pytest.raises(errors.ConfigError, match="port 7 is forwarded twice"):
        build_cluster(yaml.safe_load("forward: [{port: 7, to: 'a:1'}, {port: 7, to: 'b:2'}]"), tmp_path / "cluster.yaml")


# ---- real: the tiny image's gateway and node under TCG -------------------------------------


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
        return answer.read().decode()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.e2e
def test_a_host_port_reaches_a_server_on_another_vms_cluster_address_through_the_gateway(tiny_image, short_dir, tmux_server):
    roles = "  - {name: gateway, vcpus: 1, memory: 256M}\n  - {name: node, count: 1, vcpus: 1, memory: 256M}\n"
    config = write_cluster(short_dir, *tiny_image, roles=roles, count=2)
    port = free_port_base(1)
    with open(config, "a") as more:
        more.write(f"forward: [{{port: {port}, to: '192.168.1.11:8080'}}]\n")
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}

    def invoke(*args: str):
        return run_invoke(*args, "--config", str(config), env=env)

    try:
        up = make_up(config, env)
        assert f"kubenet: tunnel through gateway: 127.0.0.1:{port} -> 192.168.1.11:8080" in up.stderr
        # node0 serves on its cluster address only: nothing but the cluster segment reaches it
        serve = "mkdir -p www && echo hello from node0 > www/index.html && busybox httpd -p 192.168.1.11:8080 -h www"
        served = subprocess.run(["ssh", "-F", str(state / "ssh_config"), "-o", "BatchMode=yes", "node0", serve],
                                timeout=60, stdin=subprocess.DEVNULL, capture_output=True, text=True)  # fmt: skip
        assert served.returncode == 0, served.stdout + served.stderr
        assert fetch(port) == "hello from node0\n"
        listed = invoke("ls")
        assert f"kubenet: tunnel through gateway: running, 127.0.0.1:{port} -> 192.168.1.11:8080" in listed.stderr
        assert len(ls_rows(config, env)) == 2  # --json stays an array of VMs

        stopped = invoke("tunnel", "--stop")
        assert stopped.returncode == 0 and "kubenet: tunnel through gateway: stopped" in stopped.stderr
        assert refused(port) and not socket_path(build_cluster(yaml.safe_load(config.read_text()), config)).exists()

        # a port another program holds: one line that says so, and nothing left running
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the fetch above may have left the port in TIME_WAIT
        holder.bind(("127.0.0.1", port))
        holder.listen()
        try:
            held = invoke("tunnel")
        finally:
            holder.close()
        lines = held.stderr.strip().splitlines()
        assert held.returncode == 1 and len(lines) == 1 and "did not start" in lines[0] and "Address already in use" in lines[0], held.stderr
        assert "Traceback" not in held.stderr

        again = invoke("tunnel")
        assert again.returncode == 0, again.stderr
        assert fetch(port) == "hello from node0\n"
        assert "already running" in invoke("tunnel").stderr

        down = invoke("down", "--timeout", "60")
        assert down.returncode == 0 and "kubenet: tunnel through gateway: stopped" in down.stderr, down.stderr
        assert refused(port)
    finally:
        invoke("tunnel", "--stop")
        kill_recorded_qemus(state)
        stop_vde_switch(state)
