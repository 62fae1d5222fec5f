"""Shared helpers: writing cluster files and running the real `invoke` command."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
_BLANK_DISKS: dict[str, bytes] = {}


def blank_disk(path: Path, size: str = "64M") -> Path:
    """A real, empty qcow2 image at `path` (made once by qemu-img, then copied): what a stub
    qemu is given as a VM's disk, and what kubenet checks before launching it."""
    if size not in _BLANK_DISKS:
        made = Path(os.environ.get("TMPDIR", "/tmp")) / f"kubenet-blank-{os.getpid()}-{size}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(made), size], check=True)
        _BLANK_DISKS[size] = made.read_bytes()
        made.unlink()
    path.write_bytes(_BLANK_DISKS[size])
    return path


def image_bytes(path: Path) -> bytes:
    """What a qcow2 image (a VM's variable store, say) holds, as the guest sees it."""
    with tempfile.TemporaryDirectory() as directory:
        raw = Path(directory) / "raw"
        subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(path), str(raw)], check=True, capture_output=True)
        return raw.read_bytes()


def run_invoke(*args: str, cwd: Path = ROOT, env: dict | None = None, check: bool = False):
    """Run `invoke ARGS` with this repository's tasks.py, as a user would."""
    environment = {**os.environ, **(env or {})}
    environment.pop("KUBENET_CONFIG", None) if env is None or "KUBENET_CONFIG" not in env else None
    done = subprocess.run(
        [str(INVOKE), "--search-root", str(ROOT), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"invoke {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def make_up(config: Path, env: dict) -> subprocess.CompletedProcess:
    """`make up CONFIG=...` from this repository, as a user runs it; fails the test if it fails."""
    done = subprocess.run(
        ["make", "-C", str(ROOT), "up", f"CONFIG={config}"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def cluster_file(tmp_path):
    """Write a cluster.yaml into a temp dir and return its path."""

    def write(text: str, name: str = "cluster.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


STUBS = Path(__file__).parent / "stubs"


@pytest.fixture
def short_dir():
    """A directory with a short path: unix socket paths (QMP, tmux) must stay under ~100 bytes."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="kn"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_image() -> tuple[Path, Path]:
    """The tiny test image (kernel, initrd), built once per recipe (tests/tinyimage)."""
    import platform
    import shutil

    if platform.system() != "Linux" or platform.machine() != "x86_64" or not shutil.which("apt-get"):
        pytest.skip("the tiny image is built from Debian's amd64 packages")
    from tinyimage.build import build

    return build()


@pytest.fixture
def tmux_server(short_dir):
    """A private tmux server socket; every server process on it is killed afterwards."""
    socket = short_dir / "tmux.sock"
    yield str(socket)
    subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True)


@pytest.fixture
def stub_env(tmux_server):
    """The environment of a cluster run by stub qemus (tests/stubs/qemu_qmp.py) on the test's tmux server."""
    return {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_QEMU": str(STUBS / "qemu_qmp.py"), "KUBENET_ACCEL": "tcg"}


@pytest.fixture
def cleanup(short_dir):
    """Afterwards: the stub qemus and the VDE switch of the cluster in short_dir are gone."""
    yield
    kill_recorded_qemus(short_dir / ".kubenet")
    stop_vde_switch(short_dir / ".kubenet")


def ls_rows(config: Path, env: dict) -> list[dict]:
    """`invoke ls --json`, read."""
    import json

    return json.loads(run_invoke("ls", "--json", "--config", str(config), env=env, check=True).stdout)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll until `predicate()` holds or `timeout` seconds pass; says whether it held."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def on_vm(state: Path, vm: str, command: str, root: bool = False, timeout: float = 60) -> str:
    """What `command` printed in the tiny guest, through the cluster's ssh_config; it must
    succeed. `root`: as root, whom the test image lets in with the same key."""
    import subprocess

    done = subprocess.run(["ssh", "-F", str(state / "ssh_config"), "-o", "BatchMode=yes", *(["-l", "root"] if root else []), vm, command],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def stop_vde_switch(state_dir: Path) -> None:
    import signal

    pid_file = state_dir / "vde.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def kill_recorded_qemus(state_dir: Path) -> None:
    """Kill what a test's stub qemus left running, by the pids they recorded."""
    import signal

    for pid_file in state_dir.glob("*/qemu.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


class Client:
    """A real tmux client in a pseudo-terminal of 200x60, to press keys as a user would."""

    def __init__(self, socket: str, target: str, columns: int = 200, rows: int = 60):
        import fcntl
        import pty
        import struct
        import termios

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(
            ["tmux", "-S", socket, "attach-session", "-t", target],
            stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm"}, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        # Read what the client draws, so a full terminal never stalls it.
        import threading

        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            while os.read(self.master, 65536):
                pass
        except OSError:
            pass

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        os.close(self.master)


# ---- a real HTTP server on 127.0.0.1, for the base image download ----


class Server(http.server.ThreadingHTTPServer):
    """Serves `files`; honours Range; can cut a body short once (`cut_after` bytes)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.cut_after: int | None = None
        self.requests: list[tuple[str, str | None]] = []


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server: Server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None and self.path.endswith(".img"):
            self.wfile.write(body[: server.cut_after])
            server.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# ---- tests as root in namespaces of their own (tests/netns) ----------------------------------


def namespace_script(work: Path) -> str:
    """Mounts that keep every change inside the test's mount namespace: overlays over /etc
    (the user, sudoers, bridge.conf, /etc/hosts) and qemu's helper directory, and a /run of
    its own (sudo's timestamps, and a /dev/net/tun open to all); directories above the repository and its Python that the
    throwaway user could not enter get an overlay that lets it in."""
    mounts = []
    python = Path(os.path.realpath(sys.executable))
    openings = dict(closed_ancestors(ROOT) + closed_ancestors(python.parent))  # the repository, its venv's python
    for index, (lower, mode) in enumerate([("/etc", None), ("/usr/lib/qemu", None), *sorted(openings.items())]):
        upper, scratch = work / f"upper{index}", work / f"scratch{index}"
        upper.mkdir()
        scratch.mkdir()
        if mode is not None:
            upper.chmod(mode)
        mounts.append(f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={scratch} {lower}")
    # /dev/net/tun as a stock Debian has it (0666; this machine's is 0600), for the setuid helper
    tun = "mknod -m 666 /run/tun c 10 200 && mount --bind /run/tun /dev/net/tun"
    return " && ".join([*mounts, "mount -t tmpfs tmpfs /run", tun, "mount -t sysfs sysfs /sys", "ip link set lo up", 'exec "$@"'])


def closed_ancestors(path: Path) -> list[tuple[str, int]]:
    """Directories above `path` that others cannot enter, with the mode that opens them."""
    closed = []
    for directory in [*reversed(path.parents), path]:
        mode = directory.stat().st_mode & 0o777
        if not mode & 0o001:
            closed.append((str(directory), mode | 0o055))
    return closed


def namespaced_facts(script: str, prefix: str, *extra: str) -> dict:
    """tests/netns/SCRIPT run as root in a network and mount namespace of its own (see
    namespace_script), given invoke, this repository, a scratch directory and the tiny
    image; what it printed, as JSON. The scratch directory goes afterwards."""
    import json
    import shutil

    from tinyimage.build import build

    kernel, initrd = build()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)  # a throwaway user lives below it
    try:
        done = subprocess.run(
            ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", namespace_script(work), "sh",
             sys.executable, str(ROOT / "tests" / "netns" / script), str(INVOKE), str(ROOT), str(work), str(kernel), str(initrd), *extra],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
