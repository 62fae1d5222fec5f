"""handover.py for real, as root: the QMP socket it gives qemu is the user's, and it
never follows a link planted where the socket goes."""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kubenet.run.asroot import HANDOVER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="handover.py runs as root")

# Stands in for qemu: what it was given on fds 3 (QMP) and 4 (guest agent), whether it is
# bound to the path given for it, and who owns each socket file; and that nothing else leaked.
CHECK = (
    "import os, socket, stat, sys\n"
    "for fd, path in ((3, sys.argv[1]), (4, sys.argv[2])):\n"
    "    s = socket.socket(fileno=fd)\n"
    "    print(s.family == socket.AF_UNIX, s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), s.getsockname() == path,\n"
    "          os.lstat(path).st_uid, oct(os.lstat(path).st_mode & 0o777), stat.S_ISSOCK(os.lstat(path).st_mode))\n"
    "print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))\n"
)


@pytest.fixture
def users_dir():
    nobody = pwd.getpwnam("nobody")
    directory = Path(tempfile.mkdtemp(prefix="knh"))
    os.chown(directory, nobody.pw_uid, nobody.pw_gid)  # the user's own 0700 VM directory
    yield directory, nobody
    shutil.rmtree(directory, ignore_errors=True)


def handover(user: str, socket: Path, *command: str) -> subprocess.CompletedProcess:
    agent = socket.with_name("qga.sock")
    return subprocess.run(
        ["sh", "-c", 'umask 077 && exec "$0" "$@"', sys.executable, "-I", str(HANDOVER), user, str(socket), str(agent), "--", *command],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_qemu_gets_a_listening_socket_that_is_the_users_in_place_of_a_planted_link(users_dir):
    directory, nobody = users_dir
    precious = Path(tempfile.mkstemp(prefix="knh-root-")[1])
    try:
        socket_path = directory / "qmp.sock"
        socket_path.symlink_to(precious)  # a link where the socket goes: replaced, never followed
        agent_path = directory / "qga.sock"
        done = handover("nobody", socket_path, sys.executable, "-c", CHECK, str(socket_path), str(agent_path))
        assert done.returncode == 0, done.stderr
        qmp, agent, fds = done.stdout.splitlines()
        assert qmp.split() == agent.split() == ["True", "1", "True", str(nobody.pw_uid), "0o700", "True"]
        assert fds == "[0, 1, 2, 3, 4]"  # the copies made on the way are not passed on
        assert precious.stat().st_uid == 0 and precious.read_bytes() == b""
    finally:
        precious.unlink()


def test_a_user_that_does_not_exist_is_one_line_and_no_qemu(users_dir):
    directory, _ = users_dir
    done = handover("no-such-user-kn", directory / "qmp.sock", "/bin/echo", "qemu ran")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("kubenet: cannot start /bin/echo for no-such-user-kn") and done.stderr.count("\n") == 1
