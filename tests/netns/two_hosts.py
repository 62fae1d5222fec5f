"""Run as root inside a private network and mount namespace (tests/test_several_hosts.py).

The namespace plays the controlling host; a second network namespace beyond a veth pair
plays another host, `desk`, with an sshd of its own for a throwaway user whose home is
that host's disk (its kubenet directory, state_dir and KUBENET_CACHE). A three-VM cluster
(gateway and node1 here, node0 on desk) is set up and started from here with `make up`;
what each step showed is printed as JSON for the test to judge.

argv: invoke search-root work-dir kernel initrd [bench | bench-one-host]
(`make bench-hosts`: the same cluster measured, then stopped; bench-one-host puts node0 here too)
"""

import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from peer import peer_namespace

INVOKE, ROOT, WORK = sys.argv[1:4]
KERNEL, INITRD = sys.argv[4:6]
MODE = (sys.argv[6:7] or [""])[0]
BENCH = MODE.startswith("bench")
NODE_HOSTS = "local" if MODE == "bench-one-host" else "[desk, local]"
WORK_DIR = Path(WORK)
USER = "knhost"
HERE, THERE = "10.99.0.1", "10.99.0.2"
DESK_HOME = WORK_DIR / "desk"
CONTROL = WORK_DIR / "control"
CONFIG = CONTROL / "cluster.yaml"
STATE = CONTROL / ".kubenet"
SSHD = WORK_DIR / "sshd"
KUBENET = str(Path(INVOKE).with_name("kubenet"))
ENV = {**os.environ, "KUBENET_TMUX_SOCKET": str(WORK_DIR / "tmux.sock"), "KUBENET_CACHE": str(WORK_DIR / "cache"), "KUBENET_ACCEL": "tcg"}


def run(*argv: str, check: bool = True, timeout: float = 600, **options) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **options)
    except subprocess.TimeoutExpired as late:  # what it said until then, for the test to show
        text = [part.decode(errors="replace") if isinstance(part, bytes) else part or "" for part in (late.stdout, late.stderr)]
        done = subprocess.CompletedProcess(argv, -1, text[0], text[1] + f"\n(killed after {timeout:g} s)")
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stdout.strip()} {done.stderr.strip()}")
    return done


def said(done: subprocess.CompletedProcess, seconds: float | None = None) -> dict:
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "seconds": seconds}


def invoke(task: str, *args: str, timeout: float = 600) -> dict:
    started = time.monotonic()
    done = run(INVOKE, "--search-root", ROOT, task, "--config", str(CONFIG), *args, check=False, timeout=timeout, env=ENV)
    return said(done, time.monotonic() - started)


def listing() -> dict:
    done = invoke("ls", "--json")
    rows = json.loads(done["stdout"]) if done["code"] == 0 else []
    return {**done, "vms": {row["name"]: row for row in rows}}


def on_vm(vm: str, command: str, timeout: float = 120) -> dict:
    done = run("ssh", "-F", str(STATE / "ssh_config"), "-o", "BatchMode=yes", vm, command, check=False, timeout=timeout)
    return said(done)


def make_desk() -> tuple[subprocess.Popen, subprocess.Popen]:
    """desk: a network namespace beyond a veth, its sshd letting in the throwaway user only."""
    world, inside = peer_namespace("kn-here", "kn-desk", HERE, THERE)

    DESK_HOME.mkdir()
    # "*": no password, yet not locked (sshd without PAM refuses a locked account even a key)
    run("useradd", "--no-log-init", "--no-create-home", "--home-dir", str(DESK_HOME), "--shell", "/bin/sh", "--password", "*", USER)
    user = pwd.getpwnam(USER)
    os.chown(DESK_HOME, user.pw_uid, user.pw_gid)
    DESK_HOME.chmod(0o700)
    SSHD.mkdir()
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(SSHD / "host_key"))
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(CONTROL / "desk_login"))
    (SSHD / "authorized_keys").write_text((CONTROL / "desk_login.pub").read_text())
    (CONTROL / "desk_known_hosts").write_text(f"{THERE} {(SSHD / 'host_key.pub').read_text()}")
    (SSHD / "sshd_config").write_text(
        f"ListenAddress {THERE}\nPort 22\nHostKey {SSHD / 'host_key'}\nPidFile {SSHD / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {SSHD / 'authorized_keys'}\nAllowUsers {USER}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nMaxSessions 50\nMaxStartups 50\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    sshd = subprocess.Popen([*inside, "/usr/sbin/sshd", "-D", "-e", "-f", str(SSHD / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(SSHD / "log", "wb"))  # fmt: skip
    for _ in range(100):
        if run(*inside, "ss", "-Hlnt", f"src {THERE}").stdout.strip():
            break
        time.sleep(0.05)
    return world, sshd


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def end_sessions(listener: int) -> None:
    """sshd's sessions end before sshd itself, the deepest first, each reaped by its parent
    (this machine's init reaps no orphan: a session left behind would stay a zombie)."""
    for session in children(listener):
        for process in [*children(session), session]:
            try:
                os.kill(process, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_until(lambda: not Path(f"/proc/{process}").exists(), 5)


def write_cluster() -> None:
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(CONTROL / "id_ed25519"))
    CONFIG.write_text(
        "name: kh\n"
        "hosts:\n"
        f"  desk: {{ssh: {USER}@{THERE}, identity: desk_login, known_hosts: desk_known_hosts, kubenet: {KUBENET}}}\n"
        "roles:\n"
        "  - {name: gateway, vcpus: 1, memory: 256M}\n"
        f"  - {{name: node, count: 2, vcpus: 1, memory: 256M, host: {NODE_HOSTS}}}\n"
        f"network: {{mode: user, ssh_port_base: 2300}}\n"
        f"image: {{kind: kernel, kernel: {KERNEL}, initrd: {INITRD}}}\n"
        f"ssh_key: {CONTROL / 'id_ed25519.pub'}\n"
        "accel: tcg\n"
        "ready: ssh\n"
        "disk_size: 64M\n"
    )


def desk_processes() -> list[dict]:
    """The throwaway user's processes on desk (sshd's sessions for it left aside)."""
    uid = pwd.getpwnam(USER).pw_uid
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            words = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if words and words[0] and not words[0].startswith("sshd"):
            found.append({"pid": int(entry.name), "argv": words[:3]})
    return found


def our_processes() -> list[dict]:
    """What runs here for the cluster: its qemus, switch, cable (their arguments name its state_dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                words = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(STATE) in words:
                found.append({"pid": int(entry.name), "argv": words.split("\0")[:3]})
    return found


def cable_state() -> dict:
    try:
        return json.loads((STATE / "cable-desk.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_until(predicate, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def ping(vm: str, address: str, count: int = 3) -> dict:
    return on_vm(vm, f"ping -c {count} -W 5 {address}")


def rtt(text: str) -> float | None:
    match = re.search(r"= [\d.]+/([\d.]+)/", text)
    return float(match.group(1)) if match else None


def throughput(sender: str, receiver: str, address: str, megabytes: int = 64) -> dict:
    """A TCP stream of `megabytes` from `sender` to `receiver` (busybox dd into nc): the bytes
    that arrived and the seconds it took, on the sender's clock (/proc/uptime)."""
    # the listener outlives the ssh session that starts it (a session of its own), and its input
    # never ends (busybox nc hangs up when it does)
    on_vm(receiver, "rm -f got; busybox setsid sh -c 'busybox sleep 600 | busybox nc -l -p 5001 | busybox wc -c > got' </dev/null >/dev/null 2>&1 & sleep 0.5")
    send = (f"a=$(busybox cut -d' ' -f1 /proc/uptime); busybox dd if=/dev/zero bs=65536 count={megabytes * 16} 2>/dev/null"
            f" | busybox nc {address} 5001; b=$(busybox cut -d' ' -f1 /proc/uptime); echo $a $b")  # fmt: skip
    done = on_vm(sender, send, timeout=300)
    got = on_vm(receiver, "sleep 1; cat got")
    times = done["stdout"].split()
    seconds = float(times[1]) - float(times[0]) if len(times) == 2 else None
    first = (got["stdout"].split() or [""])[0]
    received = int(first) if first.isdigit() else None
    return {"bytes": received, "seconds": seconds, "sent": megabytes << 20, "said": done["stderr"][-300:] + got["stdout"][-300:]}


def vde_frame(destination: bytes, source: bytes, size: int) -> bytes:
    """An Ethernet frame of `size` bytes (an experimental ethertype) as vde_plug's byte stream
    carries it: its length in two bytes first."""
    body = destination + source + b"\x88\xb5" + bytes(size - 14)
    return len(body).to_bytes(2, "big") + body


def cable_capacity(rates: tuple[int, ...] = (100, 200, 400, 800), seconds: float = 2.0, size: int = 1514) -> list[dict]:
    """The cable alone, no guest: frames offered at each rate (Mbit/s) for `seconds` by a plug
    in this host's switch, counted by a plug in desk's (root reaches desk's switch socket on
    the shared file system), through the cable's SSH: what arrives, at what rate."""
    import threading

    reader_mac, writer_mac = bytes.fromhex("02000000aa01"), bytes.fromhex("02000000aa02")
    remote = DESK_HOME / "kubenet-kh" / "state" / "vde.ctl"
    reader = subprocess.Popen(["vde_plug", str(remote)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.Popen(["vde_plug", str(STATE / "vde.ctl")], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    seen = {"frames": 0, "last": 0.0}

    def count() -> None:
        while len(head := reader.stdout.read(2)) == 2:
            body = reader.stdout.read(int.from_bytes(head, "big"))
            if body[6:12] == writer_mac:
                seen["frames"] += 1
                seen["last"] = time.monotonic()

    threading.Thread(target=count, daemon=True).start()
    results = []
    try:
        reader.stdin.write(vde_frame(b"\xff" * 6, reader_mac, 60))  # both switches learn where the reader is
        reader.stdin.flush()
        time.sleep(1)
        burst = vde_frame(reader_mac, writer_mac, size) * 50
        for rate in rates:
            before, frames = seen["frames"], int(rate * 1e6 * seconds / (size * 8)) // 50 * 50
            began = time.monotonic()
            for index in range(frames // 50):
                pause = began + index * 50 * size * 8 / (rate * 1e6) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                writer.stdin.write(burst)
                writer.stdin.flush()
            wait_until(lambda: seen["frames"] - before >= frames or time.monotonic() - seen["last"] > 2, 30)
            got = seen["frames"] - before
            results.append({"offered": rate, "sent": frames, "received": got, "mbits": got * size * 8 / seconds / 1e6})
    finally:
        for plug in (writer, reader):
            plug.kill()
            plug.wait()
    return results


def bench(facts: dict) -> None:
    """make bench-hosts: same host (node1 -> gateway) and across hosts (node1 -> node0)."""
    same, cross = ping("node1", "192.168.1.10", 20), ping("node1", "192.168.1.11", 20)
    facts["bench"] = {
        "rtt_same_ms": rtt(same["stdout"]), "rtt_cross_ms": rtt(cross["stdout"]),
        "stream_same": throughput("node1", "gateway", "192.168.1.10"), "stream_cross": throughput("node1", "node0", "192.168.1.11"),
    }  # fmt: skip
    if NODE_HOSTS != "local":
        facts["bench"]["cable"] = cable_capacity()


def main() -> None:
    facts: dict = {}
    helpers: list[subprocess.Popen] = []
    try:
        CONTROL.mkdir()
        world, sshd = make_desk()
        helpers = [sshd, world]
        write_cluster()
        started = time.monotonic()
        facts["up"] = said(run("make", "-C", ROOT, "up", f"CONFIG={CONFIG}", check=False, env=ENV, timeout=300), time.monotonic() - started)
        if facts["up"]["code"] != 0:
            return
        facts["ls"] = listing()
        facts["ls_text"] = invoke("ls")
        facts["desk_qemus"] = [p for p in desk_processes() if "qemu" in p["argv"][0]]
        facts["desk_tmux"] = run("runuser", "-u", USER, "--", "tmux", "list-sessions", "-F", "#{session_name}", check=False).stdout.split()
        facts["by_name"] = on_vm("node0", "hostname")
        facts["cross_ping"] = on_vm("gateway", "ping -c 2 -W 5 node0 && ping -c 2 -W 5 192.168.1.11")
        facts["cross_banner"] = on_vm("gateway", "echo | busybox nc -w 5 node0 22 | head -c 20")
        facts["back_ping"] = on_vm("node0", "ping -c 2 -W 5 gateway && ping -c 2 -W 5 node1")
        if BENCH:
            bench(facts)
            facts["down"] = invoke("down", "--timeout", "30")
            return

        # up again changes nothing anywhere; one VM of desk stopped and started from here
        facts["up_again"] = said(run("make", "-C", ROOT, "up", f"CONFIG={CONFIG}", check=False, env=ENV, timeout=300))
        facts["ls_again"] = listing()
        facts["stop_remote"] = invoke("stop", "--name", "node0", "--timeout", "30")
        facts["ls_stopped"] = listing()
        facts["start_remote"] = invoke("start", "--name", "node0")
        facts["ls_started"] = listing()

        # the cable is cut (its plug here killed): its supervisor plugs it in again
        before = cable_state()
        facts["cable_before"] = before
        if isinstance(before.get("pid"), int):
            os.kill(before["pid"], signal.SIGKILL)
        facts["cable_back_seconds"] = wait_until(lambda: cable_state().get("state") == "connected" and cable_state().get("pid") != before.get("pid"), 30)
        facts["cable_after"] = cable_state()
        facts["ping_after_cable"] = on_vm("gateway", "ping -c 2 -W 5 node0")

        # desk goes away (its link down): ls says so within seconds, down stops the rest
        run("ip", "link", "set", "kn-here", "down")
        facts["ls_unreachable"] = listing()
        facts["ls_unreachable_text"] = invoke("ls")
        facts["down_unreachable"] = invoke("down", "--timeout", "30")
        facts["ls_after_partial_down"] = listing()
        facts["here_after_partial_down"] = our_processes()
        run("ip", "link", "set", "kn-here", "up")
        run("ip", "addr", "replace", f"{HERE}/24", "dev", "kn-here")
        facts["down"] = invoke("down", "--timeout", "30")
        time.sleep(1)
        facts["here_after_down"] = our_processes()  # down ended the shared connection too
        facts["desk_after_down"] = desk_processes()
        facts["ls_after_down"] = listing()  # (which opens it again, for ControlPersist's minute)
    finally:
        facts["cleanup_here"] = [p["pid"] for p in our_processes()]
        run("tmux", "-S", str(WORK_DIR / "tmux.sock"), "kill-server", check=False)
        for pid in facts["cleanup_here"]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            facts["cleanup_desk"] = [p["pid"] for p in desk_processes()]
            for pid in facts["cleanup_desk"]:
                os.kill(pid, signal.SIGKILL)
        except (KeyError, ProcessLookupError):
            pass
        for process in helpers:
            if process is helpers[0]:
                end_sessions(process.pid)
            process.kill()
            process.wait()
        uid = pwd.getpwnam(USER).pw_uid
        run("userdel", USER, check=False)
        for leftover in (Path(f"/tmp/tmux-{uid}"), Path(f"/tmp/kubenet-{uid}")):  # the user's tmux and runtime directories
            subprocess.run(["rm", "-rf", str(leftover)])
        print(json.dumps(facts))


main()
