"""Run as root inside a private network and mount namespace (tests/test_root_network.py).

The namespace plays a Linux host: `invoke hostnet` makes its bridge side, and a
second namespace plays the world outside (a web listener and a DNS server,
reached only through the host's NAT). A throwaway user with passwordless sudo
then runs a two-VM bridge-mode cluster whose qemu must start as root (the
bridge helper is not setuid, as on a host set up by the tutorial's script).
Prints what it saw as JSON; the test judges it.

argv: invoke search-root work-dir kernel initrd
"""

import json
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

from hostside import HELPER, host_side
from peer import peer_namespace

INVOKE, ROOT, WORK, KERNEL, INITRD = sys.argv[1:6]
WORK_DIR = Path(WORK)
USER = "kntest"
EDGE, OUTSIDE = "10.77.0.1", "10.77.0.2"  # the host's address toward the outside, and the outside's
HOME = WORK_DIR / "home"
CONFIG = HOME / "cluster.yaml"
STATE = HOME / "state"
NFS_FOLDER = HOME / "nfs-pvs"  # made by hostnet (nfs: in the cluster file), as the user's
TMUX_SOCKET = WORK_DIR / "tmux" / "sock"
SUDO_LOG = HOME / "sudo.log"

# Answers every connection with the address it came from: behind NAT, the host's.
LISTENER = f"""
import socket
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("{OUTSIDE}", 8080))
server.listen()
while True:
    client, (address, _) = server.accept()
    client.recv(4096)
    client.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(address), address.encode()))
    client.close()
"""


def run(*argv: str, check: bool = True, **options) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, **options)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


def as_user(step: str, *argv: str, timeout: float = 300) -> dict:
    """Run as the throwaway user, with a clean environment and a `sudo` that notes each call."""
    env = {
        "HOME": str(HOME),
        "PATH": f"{HOME / 'bin'}:{Path(INVOKE).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "KUBENET_TMUX_SOCKET": str(TMUX_SOCKET),
        "KUBENET_ACCEL": "tcg",
        "KN_STEP": step,
        "LANG": "C.UTF-8",
    }
    done = run("runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv,
               check=False, cwd=HOME, timeout=timeout)  # fmt: skip
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def invoke(step: str, task: str, *args: str, timeout: float = 300) -> dict:
    return as_user(step, INVOKE, "--search-root", ROOT, task, "--config", str(CONFIG), *args, timeout=timeout)


def listing(step: str) -> dict:
    done = invoke(step, "ls", "--json")
    rows = json.loads(done["stdout"]) if done["code"] == 0 else []
    return {"code": done["code"], "stderr": done["stderr"], "vms": {row["name"]: row for row in rows}}


def make_user() -> pwd.struct_passwd:
    HOME.mkdir()
    run("useradd", "--no-log-init", "--no-create-home", "--home-dir", str(HOME), "--shell", "/bin/sh", USER)
    sudoers = Path("/etc/sudoers.d/kubenet-test")
    sudoers.write_text(f"Defaults:{USER} !syslog\n{USER} ALL=(root) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    (HOME / "bin").mkdir()
    shim = HOME / "bin" / "sudo"
    shim.write_text(f'#!/bin/sh\necho "$KN_STEP $*" >> {SUDO_LOG}\nexec /usr/bin/sudo "$@"\n')
    shim.chmod(0o755)
    for source in (KERNEL, INITRD):
        (HOME / Path(source).name).write_bytes(Path(source).read_bytes())
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(HOME / "id_ed25519"))
    CONFIG.write_text(
        "name: kr\n"
        "roles:\n"
        "  - {name: control, count: 1, vcpus: 1, memory: 256M}\n"
        "  - {name: worker, count: 1, vcpus: 1, memory: 256M}\n"
        "network: {mode: bridge}\n"
        "pod_routes: true\n"
        "nfs: {path: nfs-pvs}\n"
        f"image: {{kind: kernel, kernel: {HOME / Path(KERNEL).name}, initrd: {HOME / Path(INITRD).name}}}\n"
        f"ssh_key: {HOME / 'id_ed25519.pub'}\n"
        f"state_dir: {STATE}\n"
        "accel: tcg\n"
        "ready: ssh\n"
        "disk_size: 64M\n"
    )
    TMUX_SOCKET.parent.mkdir(mode=0o700)
    user = pwd.getpwnam(USER)
    for path in (HOME, TMUX_SOCKET.parent, *HOME.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid)
    return user


def make_outside() -> list[subprocess.Popen]:
    """A second namespace beyond a veth: the host's default route leads there, and it knows
    no way back to the cluster's subnet, so only NAT'ed traffic gets answers."""
    world, inside = peer_namespace("kn-edge", "kn-world", EDGE, OUTSIDE)
    run("ip", "route", "add", "default", "via", OUTSIDE)
    listener = subprocess.Popen([*inside, sys.executable, "-c", LISTENER])
    resolver = subprocess.Popen(
        [*inside, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
         "--bind-interfaces", f"--listen-address={OUTSIDE}", f"--address=/outside.test/{OUTSIDE}",
         f"--pid-file={WORK_DIR / 'outside-dns.pid'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    Path("/etc/resolv.conf").unlink()  # the overlay's copy: the host's own stays as it is
    Path("/etc/resolv.conf").write_text(f"nameserver {OUTSIDE}\n")  # the host's upstream DNS, outside
    return [listener, resolver, world]


def foreign_files(uid: int) -> list[str]:
    """Everything under the state directory that is not the user's."""
    return [str(path) for path in [STATE, *STATE.rglob("*")] if STATE.exists() and path.lstat().st_uid != uid]


def process_owners(pid: int | None) -> dict | None:
    """Who a qemu runs as, and who started it (its parent: the pane's tmux server)."""
    if not pid:
        return None

    def field(pid: int, name: str) -> str:
        line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(name + ":"))
        return line.split()[1]

    parent = int(field(pid, "PPid"))
    return {"uid": int(field(pid, "Uid")), "parent_uid": int(field(parent, "Uid")), "parent": Path(f"/proc/{parent}/comm").read_text().strip()}


def foreground_vm(uid: int) -> dict:
    """`invoke vm --managed` as the user: sudo in the foreground, then qemu as the user; `stop` ends it."""
    argv = [INVOKE, "--search-root", ROOT, "vm", "--config", str(CONFIG), "--name", "worker0", "--managed"]
    env = [f"HOME={HOME}", f"PATH={HOME / 'bin'}:/usr/bin:/bin:/usr/sbin:/sbin", "KN_STEP=vm", "KUBENET_ACCEL=tcg"]
    console = subprocess.Popen(["runuser", "-u", USER, "--", "env", "-i", *env, *argv], cwd=HOME,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen: dict = {}
    try:
        for _ in range(300):
            seen = listing("ls")
            row = seen["vms"].get("worker0", {})
            if row.get("pid") and (STATE / "worker0" / "qmp.sock").exists():
                break
            time.sleep(0.1)
        row = seen["vms"].get("worker0", {})
        facts = {"ls": row, "qemu": process_owners(row.get("pid")), "foreign_files": foreign_files(uid)}
        facts["stop"] = invoke("vm-stop", "stop", "--name", "worker0", "--timeout", "6")  # the guest may still be booting
        facts["exit"] = console.wait(timeout=60)
        facts["stderr"] = console.stderr.read()
        return facts
    finally:
        if console.poll() is None:
            console.kill()


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def owned_text(path: Path) -> dict | None:
    return {"uid": path.stat().st_uid, "text": path.read_text()} if path.is_file() else None


def main() -> None:
    facts: dict = {}
    helpers: list[subprocess.Popen] = []
    pids: set[int] = set()
    try:
        user = make_user()
        facts["user_uid"], facts["nfs_folder"] = user.pw_uid, str(NFS_FOLDER)
        helpers = make_outside()
        facts["before"] = host_side("kubenet-kr")
        hostnet_env = {**os.environ, "KUBENET_HOSTNET_DIR": str(WORK_DIR / "hostnet")}
        done = run(INVOKE, "--search-root", ROOT, "hostnet", "--config", str(CONFIG), check=False, env=hostnet_env)
        facts["hostnet"] = {"code": done.returncode, "stderr": done.stderr}
        facts["set_up_routes"] = host_side("kubenet-kr")["routes"]
        # A host whose bridge helper is not setuid (the tutorial's own set-up): qemu must start as root.
        HELPER.chmod(HELPER.stat().st_mode & ~0o4000)

        facts["up"] = as_user("up", "make", "-C", ROOT, "up", f"CONFIG={CONFIG}", timeout=600)
        if facts["up"]["code"] != 0:
            return  # nothing runs to look at; the test shows what `up` said
        facts["ls"] = listing("ls")
        pids |= {row["pid"] for row in facts["ls"]["vms"].values() if row["pid"]}
        facts["qemu"] = {name: process_owners(row["pid"]) for name, row in facts["ls"]["vms"].items()}
        facts["foreign_files"] = foreign_files(user.pw_uid)
        facts["qmp_modes"] = {vm: oct((STATE / vm / "qmp.sock").lstat().st_mode & 0o777) for vm in ("control0", "worker0")}
        facts["guest"] = {
            "control0": invoke("exec", "exec", "--name", "control0", "--",
                               "nslookup worker0.kubenet; nslookup vmhost; nslookup kubernetes; nslookup outside.test; "
                               "ping -c 1 -W 5 192.168.1.11; ping -c 1 -W 5 192.168.1.1; "
                               f"wget -q -O - http://{OUTSIDE}:8080/"),
            "worker0": invoke("exec", "exec", "--name", "worker0", "--", "nslookup control0; ping -c 1 -W 5 192.168.1.10"),
        }  # fmt: skip
        # the pods' network of worker0 (id 1), as a CNI would give it one: the host reaches it by hostnet's route
        facts["pod_address"] = as_user("pod-address", "ssh", "-F", str(STATE / "ssh_config"), "-o", "BatchMode=yes", "-l", "root",
                                       "worker0", "busybox ip addr add 10.1.0.1/32 dev lo")  # fmt: skip
        ping = run("ping", "-c", "1", "-W", "5", "10.1.0.1", check=False)
        facts["pod_ping"] = {"code": ping.returncode, "stdout": ping.stdout}
        # the provisioner's mount of ch. 7, by worker0's root: the file lands on the host as the folder's owner
        facts["nfs_mount"] = as_user("nfs-mount", "ssh", "-F", str(STATE / "ssh_config"), "-o", "BatchMode=yes", "-l", "root", "worker0",
                                     f"mkdir -p /mnt/pvs && mount -t nfs4 -o vers=4.1,addr=192.168.1.1 'vmhost:{NFS_FOLDER}' /mnt/pvs"
                                     " && echo written-by-worker0 > /mnt/pvs/claim && ls -ln /mnt/pvs && umount /mnt/pvs")  # fmt: skip
        facts["nfs_file"] = owned_text(NFS_FOLDER / "claim")
        facts["ls_notes"] = invoke("ls-notes", "ls")["stderr"].splitlines()
        facts["ssh_all"] = invoke("ssh-all", "ssh-all", "--no-attach")
        facts["stop"] = invoke("stop", "stop", "--name", "worker0", "--timeout", "30")
        facts["after_stop"] = listing("ls")
        facts["start"] = invoke("start", "start", "--name", "worker0", "--ready", "ssh")
        facts["after_start"] = listing("ls")
        pids |= {row["pid"] for row in facts["after_start"]["vms"].values() if row["pid"]}
        run("ip", "route", "del", "10.1.0.0/16")  # lost, as a network manager might flush it: `up` says so
        facts["up_again"] = as_user("up-again", "make", "-C", ROOT, "up", f"CONFIG={CONFIG}")
        facts["down"] = invoke("down", "down", "--timeout", "30")
        facts["after_down"] = listing("ls")
        facts["vm"] = foreground_vm(user.pw_uid)
        facts["reset"] = invoke("reset", "reset", "--name", "worker0", "--yes")
        facts["setup"] = as_user("setup", "make", "-C", ROOT, "setup", f"CONFIG={CONFIG}")
        facts["foreign_files_at_end"] = foreign_files(user.pw_uid)

        # Files an older kubenet left as root, then the helper setuid as `make hostnet` leaves
        # it: qemu runs as the user from the start, in the user's tmux, and nobody asks for root.
        for name in ("serial.log", "qemu.pid"):
            (STATE / "control0" / name).write_text("root's\n")
        HELPER.chmod(HELPER.stat().st_mode | 0o4000)
        facts["setuid_up"] = as_user("setuid-up", "make", "-C", ROOT, "up", f"CONFIG={CONFIG}", timeout=600)
        facts["setuid_ls"] = listing("ls")
        pids |= {row["pid"] for row in facts["setuid_ls"]["vms"].values() if row["pid"]}
        facts["setuid_qemu"] = {name: process_owners(row["pid"]) for name, row in facts["setuid_ls"]["vms"].items()}
        facts["setuid_foreign_files"] = foreign_files(user.pw_uid)
        facts["setuid_down"] = invoke("setuid-down", "down", "--timeout", "30")
        facts["sudo"] = SUDO_LOG.read_text().splitlines() if SUDO_LOG.exists() else []
    finally:
        done = run(INVOKE, "--search-root", ROOT, "hostnet", "--remove", "--config", str(CONFIG), check=False,
                   env={**os.environ, "KUBENET_HOSTNET_DIR": str(WORK_DIR / "hostnet")})  # fmt: skip
        facts["remove"] = {"code": done.returncode, "stderr": done.stderr}
        facts["nfs_file_after_remove"] = owned_text(NFS_FOLDER / "claim")  # what the cluster wrote is the user's, and stays
        facts["nfs_server_after_remove"] = run("ss", "-Hlnt", "sport = :2049").stdout
        facts["removed"] = host_side("kubenet-kr")
        for socket in (TMUX_SOCKET, Path(f"{TMUX_SOCKET}.root")):
            run("tmux", "-S", str(socket), "kill-server", check=False)
        pids |= {int(path.read_text()) for path in STATE.glob("*/qemu.pid") if path.read_text().strip().isdigit()}
        facts["leftover_qemus"] = [pid for pid in pids if str(STATE).encode() in cmdline(pid)]
        for pid in facts["leftover_qemus"]:
            os.kill(pid, 9)
        for process in helpers:
            process.kill()
            process.wait()
        run("userdel", USER, check=False)
        print(json.dumps(facts))


main()
