"""Faults and bad input: what a demanding user tries, with real invoke, make, tmux and qemu.

kubenet acts only on what is provably its own (sessions, pids), never swaps
data under a disk, never lets cluster.yaml reach a shell or a makefile as
code, ends quietly when a pipeline closes, and answers every mistake with one
line.
"""

from __future__ import annotations

import hashlib
import json
import re
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import INVOKE, ROOT, STUBS, Server, blank_disk, kill_recorded_qemus, run_invoke, stop_vde_switch, wait_for
from test_tmux import pane_rows, write_cluster

from kubenet.plumbing.process import pid_alive

TWO_NODES = "  - {name: node, count: 2, memory: 256M}\n"


def processes_naming(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (ours: it names our temp dirs).
    tmux servers are left out: they keep the command line of the client that started them."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if text in command and Path(command.split("\0")[0]).name != "tmux" and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed task; fails the test on a traceback or anything more."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kubenet: error: "), done.stderr
    return lines[0]


# ---- 1. two checkouts with the same cluster name ---------------------------------


def test_two_clusters_with_the_same_name_never_touch_each_others_vms(short_dir, stub_env, tmux_server):
    first, second = short_dir / "a", short_dir / "b"
    first.mkdir()
    second.mkdir()
    first_config, second_config = write_cluster(first, TWO_NODES), write_cluster(second, TWO_NODES)
    try:
        run_invoke("up", "--no-wait", "--config", str(first_config), env=stub_env, check=True)
        assert wait_for(lambda: len(list(first.glob(".kubenet/*/qemu.pid"))) == 2)
        panes = pane_rows(tmux_server, "kt-qemu")

        refused = run_invoke("up", "--no-wait", "--config", str(second_config), env=stub_env)
        line = one_line_error(refused)
        assert f"tmux session kt-qemu belongs to the cluster whose state is in {os.path.realpath(first / '.kubenet')}" in line
        assert "give this cluster another name" in line
        assert pane_rows(tmux_server, "kt-qemu") == panes  # nothing added to the first's session

        listed = run_invoke("ls", "--config", str(second_config), env=stub_env, check=True)
        assert [line.split()[-3] for line in listed.stdout.splitlines()[1:]] == ["stopped", "stopped"]
        assert listed.stderr.splitlines()[-1] == "kubenet: 0 of 2 VMs running"  # the first's sessions are not named as ours

        down = run_invoke("down", "--config", str(second_config), env=stub_env, check=True)
        assert "kubenet: left tmux session kt-qemu alone: it is not this cluster's" in down.stderr
        assert pane_rows(tmux_server, "kt-qemu") == panes
        assert all(pid_alive(row["pid"]) for row in panes)
        assert pid_alive(int((first / ".kubenet" / "vde.pid").read_text()))
        rows = json.loads(run_invoke("ls", "--json", "--config", str(first_config), env=stub_env, check=True).stdout)
        assert [row["state"] for row in rows] == ["running", "running"]
    finally:
        for directory in (first, second):
            kill_recorded_qemus(directory / ".kubenet")
            stop_vde_switch(directory / ".kubenet")


# ---- 2. a stale pid file whose pid was reused ------------------------------------


def test_a_reused_pid_in_a_stale_pid_file_is_neither_trusted_nor_signalled(short_dir, stub_env):
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 256M}\n")
    state = short_dir / ".kubenet"
    unrelated = subprocess.Popen(["sleep", "300"])
    try:
        (state / "node0" / "qemu.pid").write_text(f"{unrelated.pid}\n")  # what qemu leaves after SIGKILL
        (state / "vde.ctl").mkdir(mode=0o700)
        (state / "vde.ctl" / "ctl").touch()
        (state / "vde.pid").write_text(f"{unrelated.pid}\n")

        rows = json.loads(run_invoke("ls", "--json", "--config", str(config), env=stub_env, check=True).stdout)
        assert (rows[0]["state"], rows[0]["pid"]) == ("stopped", None)
        stopped = run_invoke("stop", "--name", "node0", "--config", str(config), env=stub_env, check=True)
        assert stopped.stderr.strip() == "kubenet: node0: not running"
        run_invoke("down", "--timeout", "1", "--config", str(config), env=stub_env, check=True)
        assert unrelated.poll() is None  # never signalled

        run_invoke("reset", "--name", "node0", "--yes", "--config", str(config), env=stub_env, check=True)
        blank_disk(state / "node0" / "disk.img")
        started = run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
        assert "kubenet: started node0" in started.stderr
        assert wait_for(lambda: (state / "node0" / "qemu.pid").read_text().strip() != str(unrelated.pid))
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()
        kill_recorded_qemus(state)
        stop_vde_switch(state)


# ---- 3. concurrent ups --------------------------------------------------------------


@pytest.mark.parametrize("existing_session", [False, True])
def test_four_ups_at_once_start_each_vm_exactly_once(short_dir, stub_env, tmux_server, existing_session):
    names = [f"node{index}" for index in range(7)]
    config = write_cluster(short_dir, "  - {name: node, count: 7, memory: 128M}\n")
    state = short_dir / ".kubenet"
    # The real tmux, reached 0.3 s late: the racers' look at the session and their
    # changes to it overlap, as they do by chance on a busy machine.
    slow = short_dir / "bin"
    slow.mkdir()
    (slow / "tmux").write_text(f"#!/bin/sh\nsleep 0.3\nexec {shutil.which('tmux')} \"$@\"\n")
    (slow / "tmux").chmod(0o755)
    env = {**os.environ, **stub_env, "PATH": f"{slow}:{os.environ['PATH']}"}
    try:
        if existing_session:
            run_invoke("up", "--no-wait", "--id", "0", "--config", str(config), env=stub_env, check=True)
        racers = [
            subprocess.Popen(
                [str(INVOKE), "--search-root", str(ROOT), "up", "--no-wait", "--config", str(config)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            for _ in range(4)
        ]
        outputs = [racer.communicate(timeout=120) for racer in racers]
        assert [racer.returncode for racer in racers] == [0] * 4, outputs
        started = [vm for _, err in outputs for line in err.splitlines() if line.startswith("kubenet: started ") for vm in line.split()[2:] if vm in names]
        expected = names[1:] if existing_session else names
        assert sorted(started) == sorted(expected)  # each VM started by exactly one racer
        qemus = lambda: processes_naming(f"\0-pidfile\0{state}/")  # noqa: E731
        assert wait_for(lambda: len(qemus()) == 7, timeout=20), [Path(f"/proc/{pid}/cmdline").read_bytes()[:120] for pid in qemus()]
        time.sleep(1.0)  # a late duplicate would show by now
        assert len(qemus()) == 7
        assert sorted(row["vm"] for row in pane_rows(tmux_server, "kt-qemu")) == sorted(names)
    finally:
        kill_all(processes_naming(f"{state}/"))
        stop_vde_switch(state)


# ---- 4. a new base image never replaces one that backs disks --------------------


def qcow2(path: Path, size: str) -> bytes:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path.read_bytes()


def test_a_new_image_at_the_same_url_never_replaces_the_one_under_existing_disks(tmp_path, server):
    old, new = qcow2(tmp_path / "old.qcow2", "64M"), qcow2(tmp_path / "new.qcow2", "128M")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id_test")], check=True)
    (tmp_path / "k").touch()
    url = f"http://127.0.0.1:{server.server_port}/images/base.qcow2"
    config = tmp_path / "cluster.yaml"

    def publish(data: bytes) -> None:
        server.files = {"/images/base.qcow2": data}
        config.write_text(
            f"name: t\nssh_key: id_test.pub\nnetwork: {{mode: user}}\nroles:\n  - {{name: node}}\n"
            f"image: {{kind: kernel, kernel: k, initrd: k, url: '{url}', sha256: {hashlib.sha256(data).hexdigest()}}}\n"
        )

    env = {"KUBENET_CACHE": str(tmp_path / "cache"), "KUBENET_ACCEL": "tcg"}
    publish(old)
    first = Path(run_invoke("image", "--config", str(config), env=env, check=True).stdout.strip())
    run_invoke("vmsetup", "--disk", "--config", str(config), env=env, check=True)
    disk = tmp_path / ".kubenet" / "node" / "disk.img"

    publish(new)
    fetched = run_invoke("image", "--config", str(config), env=env, check=True)
    second = Path(fetched.stdout.strip())
    assert second != first
    assert (first.read_bytes(), second.read_bytes()) == (old, new)
    assert f"disks made before keep the image they were made on ({first})" in fetched.stderr
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True, check=True).stdout)
    assert info["backing-filename"] == str(first)

    # two URLs that end in the same file name are two cache entries
    server.files["/other/base.qcow2"] = new
    config.write_text(config.read_text().replace("/images/base.qcow2", "/other/base.qcow2"))
    assert Path(run_invoke("image", "--config", str(config), env=env, check=True).stdout.strip()) == second
    unpinned = [
        Path(run_invoke("image", "--config", str(path), env=env, check=True).stdout.strip())
        for path in _unpinned_configs(tmp_path, server, new)
    ]
    assert unpinned[0] != unpinned[1] and unpinned[0].name == unpinned[1].name == "base.qcow2"


def _unpinned_configs(tmp_path: Path, server: Server, data: bytes) -> list[Path]:
    paths = []
    for directory in ("images", "other"):
        server.files[f"/{directory}/SHA256SUMS"] = f"{hashlib.sha256(data).hexdigest()} *base.qcow2\n".encode()
        server.files[f"/{directory}/base.qcow2"] = data
        path = tmp_path / f"{directory}.yaml"
        path.write_text(f"image: {{kind: kernel, kernel: k, initrd: k, url: 'http://127.0.0.1:{server.server_port}/{directory}/base.qcow2'}}\n")
        paths.append(path)
    return paths


# ---- 5 and 6. make repairs what it must; setup checks before it writes ----------


@pytest.fixture
def project(tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id_test")], check=True)
    (tmp_path / "k").touch()
    (tmp_path / "cluster.yaml").write_text(
        "name: t\nimage: {kind: kernel, kernel: k, initrd: k}\nssh_key: id_test.pub\nnetwork: {mode: user}\n"
        "roles:\n  - {name: control, count: 1, memory: 256M}\n  - {name: worker, count: 2, memory: 256M}\n"
    )
    return tmp_path


def make(project: Path, *args: str, env: dict | None = None, config: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), f"CONFIG={config or project / 'cluster.yaml'}", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_make_setup_remakes_a_deleted_known_hosts_and_a_damaged_seed(project):
    from test_seed import read_iso

    assert make(project, "setup").returncode == 0
    state = project / ".kubenet"
    known_hosts = (state / "known_hosts").read_text()
    seeds = {vm: (state / vm / "cidata.iso") for vm in ("control0", "worker0", "worker1")}
    whole = {vm: read_iso(seed) for vm, seed in seeds.items()}
    times = {vm: seed.stat().st_mtime_ns for vm, seed in seeds.items()}

    (state / "known_hosts").unlink()
    seeds["worker0"].write_bytes(seeds["worker0"].read_bytes()[:4096])  # truncated, and newer than its inputs
    done = make(project, "setup")
    assert done.returncode == 0, done.stderr
    assert (state / "known_hosts").read_text() == known_hosts
    assert read_iso(seeds["worker0"]) == whole["worker0"]
    assert {vm: seeds[vm].stat().st_mtime_ns for vm in ("control0", "worker1")} == {vm: times[vm] for vm in ("control0", "worker1")}
    assert (make(project, "setup").stderr, list(project.glob(".*.todo"))) == ("", [])  # nothing more to make


def test_make_keeps_seeds_and_ssh_files_when_interrupted_and_leaves_no_temporary(project):
    assert make(project, "setup").returncode == 0
    database = make(project, "-p", "-q", "setup").stdout
    precious = next(line for line in database.splitlines() if line.startswith(".PRECIOUS:")).split()
    state = project / ".kubenet"
    for path in [*(state / vm / "cidata.iso" for vm in ("control0", "worker0", "worker1")), state / "known_hosts", state / "ssh_config"]:
        assert str(path) in precious

    (project / "cluster.yaml").write_text("roles:\n  - {name: worker, count: 3, memory: 4X}\n")
    failed = make(project, "setup")
    assert failed.returncode != 0 and "roles[0].memory: '4X' is not allowed" in failed.stderr
    assert not [p.name for p in project.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("breakage", ["template", "key"])
def test_setup_checks_templates_and_key_before_it_writes_anything(project, breakage):
    config = project / "cluster.yaml"
    if breakage == "template":
        (project / "templates").mkdir()
        (project / "templates" / "worker.yaml").write_text("packages: [a\n")
        config.write_text(config.read_text() + "templates: templates\n")
    else:
        config.write_text(config.read_text().replace("ssh_key: id_test.pub", "ssh_key: id_test"))  # the private key
    for command in (lambda: run_invoke("vmsetup", "--config", str(config)), lambda: make(project, "setup")):
        done = command()
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        assert not list(project.glob(".kubenet/*/disk.img")), done.stderr
        assert not list(project.glob(".kubenet/*/efivars.qcow2"))


# ---- 7. config never runs as a command ----------------------------------------------


def test_a_hostile_state_dir_does_not_run_through_ssh_all(short_dir, tmux_server):
    marker = short_dir / "PWNED"
    hostile = "st'; touch \"$KT_MARK\"; echo '"
    config = short_dir / "cluster.yaml"
    config.write_text(f"name: kt\nstate_dir: {json.dumps(hostile)}\nnetwork: {{mode: user}}\nroles:\n  - {{name: node}}\n")
    (short_dir / hostile).mkdir()
    (short_dir / hostile / "ssh_config").write_text("Host node\n  HostName 127.0.0.1\n  Port 9\n")
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KT_MARK": str(marker)}
    run_invoke("ssh-all", "--no-attach", "--config", str(config), env=env, check=True)
    rows = pane_rows(tmux_server, "kt-ssh")
    assert wait_for(lambda: processes_naming(str(short_dir / hostile / "ssh_config")) != [], timeout=10)  # ssh ran, with that path
    time.sleep(0.5)
    assert not marker.exists()
    assert len(rows) == 1


@pytest.mark.parametrize(
    "key, shown",
    [
        ("state_dir", "' ' '$' '(' ')'"),
        ("ssh_key", "' ' '$' '(' ')'"),
        ("templates", "'#' ':'"),
    ],
)
def test_make_refuses_paths_it_would_read_as_syntax(project, key, shown):
    marker = project / "PWNED"
    config = project / "cluster.yaml"
    text = config.read_text()
    if key == "state_dir":
        text += "state_dir: 'st$(shell touch $$KT_MARK)'\n"
    elif key == "ssh_key":
        shutil.copy(project / "id_test.pub", project / "id$(shell touch $$KT_MARK).pub")
        text = text.replace("ssh_key: id_test.pub", "ssh_key: 'id$(shell touch $$KT_MARK).pub'")
    else:
        (project / "my#tem:plates").mkdir()
        (project / "my#tem:plates" / "worker.yaml").write_text("packages: [jq]\n")
        text += "templates: 'my#tem:plates'\n"
    config.write_text(text)
    done = make(project, "setup", env={"KT_MARK": str(marker)})
    assert done.returncode != 0
    assert not marker.exists()
    errors = [line for line in done.stderr.splitlines() if line.startswith("kubenet: error:")]
    assert len(errors) == 1 and f"has characters that make cannot take in a file name: {shown}" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not list(project.glob("**/disk.img"))


def test_a_newline_in_a_path_cannot_add_options_to_ssh_config(cluster_file):
    path = cluster_file('state_dir: "st\\n  ProxyCommand touch /tmp/kubenet-pwned"\n')
    line = one_line_error(run_invoke("ls", "--config", str(path)))
    assert "state_dir: 'st\\n  ProxyCommand touch /tmp/kubenet-pwned' is not a usable path" in line


# ---- 8. pipelines that close early (exec | head is in test_e2e) --------------------


@pytest.mark.parametrize(
    "args",
    [("ls", "--names"), ("ls",), ("ls", "--json"), ("argv", "--id", "1", "--host", "darwin-arm64")],
)
def test_a_closed_stdout_ends_the_task_quietly_with_sigpipes_status(args):
    read, write = os.pipe()
    os.close(read)  # the reader (head -1) is gone before the first write
    try:
        done = subprocess.run(
            [str(INVOKE), "--search-root", str(ROOT), *args, "--config", str(ROOT / "cluster.yaml")],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, env={**os.environ, "KUBENET_ACCEL": "tcg"},
        )  # fmt: skip
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


# ---- 9. down's ladder with a real qemu ---------------------------------------------


def test_down_of_a_real_qemu_that_ignores_the_button_says_quit_within_the_timeout(short_dir, tmux_server, project):
    # A paused real qemu: no guest answers the power button, and qemu closes QMP as it quits.
    wrapper = short_dir / "qemu-paused"
    wrapper.write_text('#!/bin/sh\nexec qemu-system-x86_64 "$@" -S\n')
    wrapper.chmod(0o755)
    config = project / "cluster.yaml"
    qcow2(project / "base.qcow2", "64M")
    config.write_text(
        config.read_text().replace("count: 2", "count: 1").replace("{kind: kernel, kernel: k, initrd: k}", "{url: base.qcow2}")
        + f"state_dir: {short_dir / 'state'}\n"
    )  # UEFI firmware, so that the paused qemu starts without a kernel to load
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_QEMU": str(wrapper), "KUBENET_ACCEL": "tcg"}
    state = short_dir / "state"
    try:
        run_invoke("vmsetup", "--config", str(config), env=env, check=True)
        run_invoke("up", "--no-wait", "--config", str(config), env=env, check=True)
        assert wait_for(lambda: all((state / vm / "qmp.sock").exists() for vm in ("control0", "worker0")), timeout=30)
        pids = [row["pid"] for row in json.loads(run_invoke("ls", "--json", "--config", str(config), env=env, check=True).stdout)]
        assert all(pids)
        began = time.monotonic()
        done = run_invoke("down", "--timeout", "1", "--config", str(config), env=env, check=True)
        took = time.monotonic() - began
        assert sorted(line for line in done.stderr.splitlines() if ": quit" in line or ": killed" in line) == [
            "kubenet: control0: quit", "kubenet: worker0: quit",
        ]  # fmt: skip
        assert took < 6, f"down --timeout 1 took {took:.1f} s"  # the timeout bounds the whole ladder (it was 10 s and more)
        assert not any(pid_alive(pid) for pid in pids)
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


# ---- 10. every mistake is one line ----------------------------------------------------

BAD_CONFIGS = {
    "state_dir null": ("state_dir: null\n", "state_dir: expected a directory path, got nothing"),
    "role name too long": (f"roles:\n  - {{name: {'w' * 300}}}\n", "300 characters; VM names are host names"),
    "unknown field in url": ("image: {url: 'http://x/{release}/a.img'}\n", "image.url: {release} is not known"),
    "stray brace in url": ("image: {url: 'http://x/{arch/a.img'}\n", "image.url: 'http://x/{arch/a.img'"),
    "name with a newline": ('name: "kt\\n"\n', "name: 'kt\\n' is not allowed"),
    "role with a newline": ('roles:\n  - {name: "worker\\n"}\n', "roles[0].name: 'worker\\n' is not allowed"),
    "a hundred million VMs": ("roles:\n  - {name: w, count: 100000000}\n", "roles: 100000000 VMs, but 192.168.1.0/24"),
    "multicast MAC": ("network: {mac_prefix: '01:00:5e:00:00'}\n", "network.mac_prefix: 01:00:5e:00:00 is a multicast prefix"),
    "host is the network": ("network: {host_address: 192.168.1.0}\n", "network.host_address: 192.168.1.0 is 192.168.1.0/24's own network"),
    "API is the host": ("network: {api_address: 192.168.1.1}\n", "network.api_address: 192.168.1.1 is also network.host_address"),
    "dhcp_end outside": ("network: {dhcp_end: 192.168.2.20}\n", "network.dhcp_end: 192.168.2.20 is outside 192.168.1.0/24"),
    "subnet of user mode": (
        "network: {mode: user, subnet: 10.0.2.0/24, host_address: 10.0.2.1, api_address: 10.0.2.100, dhcp_end: 10.0.2.9}\n",
        "network.subnet: 10.0.2.0/24 overlaps 10.0.2.0/24, user mode's own network",
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_a_bad_cluster_file_is_one_line(cluster_file, case):
    text, expected = BAD_CONFIGS[case]
    path = cluster_file(text)
    line = one_line_error(run_invoke("ls", "--config", str(path), env={"KUBENET_ACCEL": "tcg"}))
    assert expected in line


def test_files_that_are_not_what_they_should_be_are_one_line(project):
    config = project / "cluster.yaml"
    (project / "afile").write_text("")
    config.write_text(config.read_text() + "state_dir: afile\n")
    assert "state_dir: " in one_line_error(run_invoke("vmsetup", "--config", str(config)))

    config.write_bytes(b"name: t\xff\xfe\n")
    assert "cluster.yaml: not UTF-8 text" in one_line_error(run_invoke("ls", "--config", str(config)))

    base = "name: t\nimage: {kind: kernel, kernel: k, initrd: k}\nnetwork: {mode: user}\nroles:\n  - {name: worker}\n"
    (project / "latin1.pub").write_bytes(b"ssh-ed25519 AAAA caf\xe9\n")
    config.write_text(base + "ssh_key: latin1.pub\n")
    assert "latin1.pub is not an SSH public key: not UTF-8 text" in one_line_error(run_invoke("vmsetup", "--config", str(config)))

    (project / "tpl").mkdir()
    (project / "tpl" / "worker.yaml").write_bytes(b"packages: [caf\xe9]\n")
    config.write_text(base + "ssh_key: id_test.pub\ntemplates: tpl\n")
    assert "worker.yaml: not UTF-8 text" in one_line_error(run_invoke("vmsetup", "--config", str(config)))


@pytest.mark.parametrize(
    "args, expected",
    [
        (("down", "--timeout", "abc"), "--timeout 'abc' is not a number of seconds"),
        (("down", "--timeout", "nan"), "--timeout 'nan' is not a number of seconds"),
        (("down", "--timeout", "-1"), "--timeout '-1' is not a number of seconds"),
        (("up", "--timeout", "inf", "--no-wait"), "--timeout 'inf' is not a number of seconds"),
        (("argv", "--id", "³"), "no VM with id '³'"),
        (("argv", "--id", "٣"), "no VM with id '٣'"),  # an Arabic-Indic three is not id 3
        (("argv", "--id", "1", "--accel", "bogus"), "--accel 'bogus' is not an accelerator; allowed: hvf, kvm, tcg (hint: leave out --accel"),
    ],
)
def test_bad_options_are_one_line(args, expected):
    line = one_line_error(run_invoke(*args, "--config", str(ROOT / "cluster.yaml"), env={"KUBENET_ACCEL": "tcg"}))
    assert expected in line


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="mounts a private tmpfs: needs root")
@pytest.mark.parametrize("mount_options, expected", [("size=16k", "No space left on device"), ("ro", "Read-only file system")])
def test_a_full_or_read_only_state_dir_is_one_line(project, mount_options, expected):
    """In a private mount namespace: a tiny (or read-only) tmpfs as state_dir, where kubenet itself
    writes (a lock, a host key, the seed ISO)."""
    state = project / "state"
    state.mkdir()
    config = project / "cluster.yaml"
    config.write_text(config.read_text() + "state_dir: state\n")
    script = f'mount -t tmpfs -o {mount_options},mode=0700 kubenet-test "$1" && exec "$2" --search-root "$3" vmsetup --seed --config "$4"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(state), str(INVOKE), str(ROOT), str(config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]  # after the progress of what did fit
    assert line.startswith("kubenet: error: ") and expected in line, done.stderr
    assert not list(state.iterdir())  # the mount went with its namespace


# ---- 11. hints that point at the real cause --------------------------------------


def test_a_directory_as_ssh_key_is_called_a_directory(project):
    config = project / "cluster.yaml"
    (project / "keys").mkdir()
    config.write_text(config.read_text().replace("ssh_key: id_test.pub", "ssh_key: keys"))
    line = one_line_error(run_invoke("vmsetup", "--config", str(config)))
    assert "keys is a directory (hint: point ssh_key at a public key file" in line


def test_a_failing_qemu_img_shows_its_own_reason_not_an_install_hint(project):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(project / "gone.qcow2"), "-F", "qcow2", "-u", str(project / "base.qcow2"), "64M"], check=True)
    config = project / "cluster.yaml"
    config.write_text(config.read_text().replace("initrd: k}", "initrd: k, url: base.qcow2}"))
    line = one_line_error(run_invoke("vmsetup", "--disk", "--config", str(config)))
    assert "Could not open backing image" in line and "install" not in line


def test_a_failing_tmux_shows_its_own_reason_not_an_install_hint(short_dir):
    config = write_cluster(short_dir, TWO_NODES)
    env = {"KUBENET_TMUX_SOCKET": str(short_dir / ("x" * 120)), "KUBENET_QEMU": str(STUBS / "qemu-sleep"), "KUBENET_ACCEL": "tcg"}
    try:
        line = one_line_error(run_invoke("up", "--no-wait", "--config", str(config), env=env))
        assert "File name too long" in line and "install" not in line
        assert "tmux failed opening tmux session kt-qemu" in line and "new-session" not in line  # what it did, not the batch
    finally:
        stop_vde_switch(short_dir / ".kubenet")


# ---- 12. private files stay private whatever the umask ---------------------------


def test_everything_private_under_state_dir_stays_private_with_umask_0(short_dir, stub_env, project):
    config = project / "cluster.yaml"
    state = short_dir / "state"
    config.write_text(config.read_text() + f"state_dir: {state}\n")
    env = {**os.environ, **stub_env}

    def invoke(*args: str) -> None:
        done = subprocess.run(
            [str(INVOKE), "--search-root", str(ROOT), *args, "--config", str(config)],
            env=env, capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(0),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def too_open() -> list[str]:
        wide = []
        for path in [state, *state.rglob("*")]:
            mode = path.lstat().st_mode & 0o777
            if mode & 0o077 and not path.name.endswith(".pub") and path.name != "argv.txt":  # public keys; the stub's record
                wide.append(f"{path.relative_to(short_dir)} {oct(mode)}")
        return wide

    try:
        invoke("vmsetup")
        invoke("up", "--no-wait")  # the tmux server, and so each pane, starts with umask 0
        assert wait_for(lambda: len(list(state.glob("*/qmp.sock"))) == 3 and len(list(state.glob("*/qemu.pid"))) == 3)
        assert (state / "vde.pid").exists() and (state / "launch.lock").exists()
        assert too_open() == []
        invoke("down", "--timeout", "5")
        shutil.rmtree(state / "control0")
        invoke("vmsetup", "--name", "control0", "--seed")  # makes the VM's directory again, under umask 0
        assert (state / "control0").is_dir()
        assert too_open() == []
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


# ---- issue: a local image's checksum is checked before the first disk ---------------


def test_setup_checks_a_local_images_sha256_before_the_first_disk_and_remembers_the_verdict(project, tmp_path):
    base = project / "base.qcow2"
    qcow2(base, "64M")
    config = project / "cluster.yaml"
    text = config.read_text().replace("initrd: k}", f"initrd: k, url: base.qcow2, sha256: '{'0' * 64}'}}")
    config.write_text(text)
    env = {"KUBENET_CACHE": str(tmp_path / "cache")}
    line = one_line_error(run_invoke("vmsetup", "--config", str(config), env=env))
    assert f"SHA-256 is {hashlib.sha256(base.read_bytes()).hexdigest()}, expected {'0' * 64}" in line
    assert not list(project.glob(".kubenet/*/disk.img"))

    config.write_text(text.replace("0" * 64, hashlib.sha256(base.read_bytes()).hexdigest()))
    run_invoke("vmsetup", "--config", str(config), env=env, check=True)
    assert len(list((tmp_path / "cache" / "verified").iterdir())) == 1  # the verdict, by path, size and mtime


# ---- a qemu that dies as it starts says why ----------------------------------------


def test_a_qemu_that_exits_as_it_starts_is_not_started_and_its_words_are_shown(short_dir, tmux_server, project):
    config = project / "cluster.yaml"
    qcow2(project / "base.qcow2", "64M")
    config.write_text(
        config.read_text().replace("count: 2", "count: 1").replace("{kind: kernel, kernel: k, initrd: k}", "{url: base.qcow2}")
        + f"state_dir: {short_dir / 'state'}\n"
    )
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    state = short_dir / "state"
    try:
        run_invoke("vmsetup", "--config", str(config), env=env, check=True)
        (project / "base.qcow2").unlink()  # the disks' backing file is gone
        for args in (("--no-wait",), ("--timeout", "30")):
            done = run_invoke("up", *args, "--config", str(config), env=env)
            assert done.returncode == 1, done.stderr
            assert "kubenet: started" not in done.stderr
            for vm in ("control0", "worker0"):
                # qemu's own lines, each a line
                assert re.search(rf"kubenet: {vm}: qemu exited as it started; it said:\n(  .*\n)*?  .*Could not open backing file", done.stderr), done.stderr
            assert done.stderr.strip().splitlines()[-1] == (
                "kubenet: error: 2 VMs did not start: control0 worker0 (hint: see what qemu said above)"
            )
        rows = json.loads(run_invoke("ls", "--json", "--config", str(config), env=env, check=True).stdout)
        assert all(row["state"] == "stopped" and "Could not open backing file" in row["exited"] for row in rows), rows
        table = run_invoke("ls", "--config", str(config), env=env, check=True)
        assert "kubenet: worker0: its qemu exited: " in table.stderr
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


def test_a_vm_bigger_than_the_machine_is_refused_before_launch_and_a_greedy_cluster_warned(short_dir, stub_env):
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    too_much = f"{total // 2**30 + 1}G"
    half = f"{total // 2**20 // 2 + 64}M"  # each fits, the two together do not
    try:  # whatever fails, nothing a launch started outlives the test
        config = write_cluster(short_dir, f"  - {{name: node, count: 1, memory: {too_much}}}\n")
        line = one_line_error(run_invoke("up", "--no-wait", "--config", str(config), env=stub_env))
        assert f"node0 asks for {too_much} of memory, more than this machine has" in line

        config = write_cluster(short_dir, "  - {name: node, count: 1, vcpus: 300, memory: 128M}\n")
        assert "node0 asks for 300 vCPUs; qemu gives one VM at most 288" in one_line_error(run_invoke("up", "--no-wait", "--config", str(config), env=stub_env))

        config = write_cluster(short_dir, f"  - {{name: node, count: 2, memory: {half}}}\n")
        done = run_invoke("up", "--no-wait", "--config", str(config), env=stub_env, check=True)
        assert "kubenet: warning: the cluster's VMs are likely to hold " in done.stderr and "kubenet: started node0 node1" in done.stderr
    finally:
        kill_recorded_qemus(short_dir / ".kubenet")
        stop_vde_switch(short_dir / ".kubenet")


def test_up_waits_on_a_vm_that_invoke_vm_runs_instead_of_calling_it_stopped(short_dir, tmux_server, project):
    """`invoke vm` leaves no pid file: readiness must see the qemu by its disk lock, as `ls` and `up` do."""
    from kubenet.prepare.disk import disk_in_use

    config = project / "cluster.yaml"
    qcow2(project / "base.qcow2", "64M")
    config.write_text(
        config.read_text().replace("{kind: kernel, kernel: k, initrd: k}", "{url: base.qcow2}")
        .replace("roles:\n  - {name: control, count: 1, memory: 256M}\n  - {name: worker, count: 2, memory: 256M}\n", "roles:\n  - {name: node, memory: 256M}\n")
        + f"state_dir: {short_dir / 'state'}\n"
    )  # fmt: skip
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    state = short_dir / "state"
    run_invoke("vmsetup", "--config", str(config), env=env, check=True)
    disk = state / "node" / "disk.img"
    qemu = subprocess.Popen(  # the VM as `invoke vm` runs it, paused: it holds its disk, answers nothing
        ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-S", "-display", "none", "-nodefaults",
         "-drive", f"file={disk},if=virtio,format=qcow2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for(lambda: disk_in_use(disk), timeout=30)
        done = run_invoke("up", "--timeout", "4", "--ready", "ssh", "--config", str(config), env=env)
        assert done.returncode == 1
        assert "kubenet: already running: node" in done.stderr
        assert "kubenet: node not ready: timed out (the guest has not said that sshd listens)" in done.stderr, done.stderr  # not "qemu is not running"
    finally:
        qemu.kill()
        qemu.wait()
        stop_vde_switch(state)
