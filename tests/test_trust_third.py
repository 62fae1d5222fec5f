"""Trust, third round: the new wings under faults and hostile input. Items proved elsewhere:
the NFS export's private places (test_config), qemu_args that open monitors, listen beyond
loopback, drop writes or reach kubenet's files (test_qemu), copies never written through
links (test_copy), snapshots killed part-way (test_snapshot). Here: hostile templates,
console logs that are links, the user's routes, and signals heard at once."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from conftest import INVOKE, ROOT, run_invoke
from test_trust import make, one_line_error
from test_trust_input import project  # noqa: F401 (a fixture)

BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
write_files: [{path: /etc/bomb, content: "x"}]
runcmd: [*i]
"""


# ---- 12. a YAML bomb in a role template ------------------------------------------------------


@pytest.mark.parametrize("where", ["node.yaml", "network-config/node.yaml"])
def test_a_yaml_bomb_in_a_template_is_refused_in_one_line_and_no_seed_is_written(project, where):  # noqa: F811
    templates = project / "templates"
    (templates / "network-config").mkdir(parents=True)
    (templates / where).write_text(BOMB)
    config = project / "cluster.yaml"
    config.write_text(config.read_text() + "templates: templates\n")
    for command in (lambda: run_invoke("vmsetup", "--config", str(config)), lambda: make(project, "setup")):
        done = command()
        assert done.returncode != 0
        assert done.stderr.strip().splitlines() == [
            f"kubenet: error: {templates / where}: refused: its aliases expand it to more than 100000 values (a YAML bomb?) "
            "(hint: write the template out plainly, without aliases of aliases)".replace("the template", "the template" if where == "node.yaml" else "the network-config extra")
        ], done.stderr
        assert not list(project.rglob("cidata.iso")) and not list(project.rglob("user-data"))


def test_a_yaml_bomb_is_measured_without_being_built():
    from kubenet.plumbing.yamltext import TooLarge, load

    with pytest.raises(TooLarge):
        load(BOMB)
    with pytest.raises(TooLarge, match="refers to itself"):
        load("a: &a [*a]\n")
    assert load("a: &a [1, 2]\nb: [*a, *a]\n") == {"a": [1, 2], "b": [[1, 2], [1, 2]]}  # aliases within the bound are fine


# ---- 9. a console log that is a link -------------------------------------------------------


def test_logs_never_follows_a_link_in_place_of_the_console_log(project):  # noqa: F811
    config = project / "cluster.yaml"
    run_invoke("vmsetup", "--config", str(config), check=True)
    secret = project / "secret.txt"
    secret.write_text("the user's secret\n")
    log = project / ".kubenet" / "node0" / "serial.log"
    log.unlink(missing_ok=True)
    log.symlink_to(secret)
    done = run_invoke("logs", "--name", "node0", "--config", str(config))
    assert done.returncode == 1 and "secret" not in done.stdout
    assert one_line_error(done) == f"kubenet: error: {log} is a link, not the console log kubenet writes; nothing shown (hint: remove it: the next start of node0 writes the log afresh)"


# ---- 11. signals heard at once -----------------------------------------------------------


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT])
def test_exec_ends_its_ssh_processes_at_once_on_a_signal(project, sent):  # noqa: F811
    config = project / "cluster.yaml"
    run_invoke("vmsetup", "--config", str(config), check=True)
    ssh_config = project / ".kubenet" / "ssh_config"
    # every VM's ssh is a stand-in that runs for long and, as ssh in the middle of a slow
    # guest's handshake, does not end on SIGTERM: the signal must end it, not wait for it
    fake = project / "bin"
    fake.mkdir()
    (fake / "ssh").write_text(f"#!/bin/sh\necho started\ntrap '' TERM\nexec sleep {STAND_IN}\n")
    (fake / "ssh").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    execution = subprocess.Popen([str(INVOKE), "--search-root", str(ROOT), "exec", "--config", str(config), "--", "true"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert execution.stdout.readline().strip() == "node0: started"
        execution.send_signal(sent)
        code = execution.wait(timeout=30)  # ended by the signal, not by the stand-in, which sleeps 299 s and ignores SIGTERM
        assert code == 128 + sent or code == 130, code
    finally:
        execution.kill()
        execution.wait()
        left = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _runs(pid, "sleep", STAND_IN)]
        for pid in left:  # the stand-ins this test started, found by their own odd argument
            os.kill(pid, signal.SIGKILL)
    assert left == []
    assert ssh_config.exists()


STAND_IN = "299.123"  # the stand-in ssh's sleep: no other process on the machine sleeps this long


def _runs(pid: str, *words: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return stream.read().split(b"\0")[: len(words)] == [word.encode() for word in words]
    except OSError:
        return False
