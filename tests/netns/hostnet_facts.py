"""Run inside a private network and mount namespace: `invoke hostnet` and its undoing, and what
each leaves on the host. Prints the facts as JSON for tests/test_hostnet.py.

argv: invoke search-root config
"""

import json
import os
import random
import shlex
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from hostside import host_side
from kubenet.model.config import load_cluster
from kubenet.machine.probe import bridge_side_gaps

INVOKE, ROOT, CONFIG = sys.argv[1:4]
NFS_FOLDER = Path(CONFIG).parent / "nfs-pvs"
STATE = Path(os.environ["KUBENET_HOSTNET_DIR"])
# it lets the prober close first, so no TIME_WAIT keeps the port from the server that follows
TAKE_NFS_PORT = (
    "import socket; s = socket.socket(); s.bind(('0.0.0.0', 2049)); s.listen(); print('listening', flush=True)\n"
    "while True: s.accept()[0].recv(1)"
)


def folder(path: Path) -> dict:
    return {"is_dir": True, "owner": [path.stat().st_uid, path.stat().st_gid]} if path.is_dir() else {"is_dir": False}


def invoke(*args: str) -> dict:
    done = subprocess.run([INVOKE, "--search-root", ROOT, "hostnet", *args, "--config", CONFIG], capture_output=True, text=True)
    return {"code": done.returncode, "stderr": done.stderr}


def resolve(name: str, server: str = "192.168.1.1") -> str | None:
    """An A query for `name`, asked of `server`: the address it answers, if any."""
    ident = random.randrange(65536)
    question = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    query = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(2)
        for _ in range(10):
            try:
                udp.sendto(query, (server, 53))
                reply = udp.recv(512)
                break
            except OSError:
                time.sleep(0.2)
        else:
            return None
    answers = struct.unpack(">H", reply[6:8])[0]
    return socket.inet_ntoa(reply[-4:]) if answers else None


def doctor() -> dict:
    """`invoke doctor` of the cluster (no VM runs: the host's checks), as root: NAT is read too."""
    done = subprocess.run([INVOKE, "--search-root", ROOT, "doctor", "--json", "--outside", "", "--config", CONFIG],
                          capture_output=True, text=True, env={**os.environ, "KUBENET_ACCEL": "tcg"})  # fmt: skip
    checks = json.loads(done.stdout) if done.stdout.strip() else []
    return {"code": done.returncode, "stderr": done.stderr, "failed": {c["name"]: c["fix"] for c in checks if c["status"] == "failed"},
            "ok": sorted(c["name"] for c in checks if c["status"] == "ok")}  # fmt: skip


def state() -> dict:
    side = host_side("kubenet-kh")
    names = ("control0.kubenet", "worker0", "vmhost", "kubernetes.kubenet")
    return {**side, "dns": {name: resolve(name) for name in names} if side["bridge"] else {}}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


# the user's own way to a pod network (a VPN, say), beyond an interface of theirs
ip("link", "add", "u0", "type", "bridge")
ip("addr", "add", "10.250.0.1/24", "dev", "u0")
ip("link", "set", "u0", "up")
facts = {"before": state()}
try:
    ip("route", "add", "10.1.0.0/16", "via", "10.250.0.2")
    facts["route_taken"] = invoke()  # refused: nothing is made, the user's route stays
    facts["route_taken_left"] = state()
    ip("route", "del", "10.1.0.0/16", "via", "10.250.0.2")
    ip("route", "add", "10.9.0.0/16", "via", "10.250.0.2")  # another of the user's, for something else
    facts["dry_run"] = invoke("--dry-run")
    facts["after_dry_run"] = state()
    # a server of the host's own on the NFS port, on every address: refused in one line, nothing of the export made
    taken = subprocess.Popen([sys.executable, "-c", TAKE_NFS_PORT], stdout=subprocess.PIPE)
    try:
        taken.stdout.readline()  # it listens
        facts["port_taken"] = invoke()
        facts["port_taken_left"] = {"state": sorted(path.name for path in STATE.glob("ganesha-*")), "folder": folder(NFS_FOLDER)}
    finally:
        taken.kill()
        taken.wait()
    facts["first"] = invoke()
    facts["set_up"] = state()
    facts["nfs_folder"] = folder(NFS_FOLDER)
    facts["gaps"] = bridge_side_gaps(load_cluster(Path(CONFIG)).network)  # what bridge-mode `up` checks before launching
    facts["second"] = invoke()
    # the unit that makes the host side again at boot; doctor sees it all in place
    facts["persist"] = invoke("--persist")
    unit = Path("/etc/systemd/system/kubenet-hostnet-kh.service")
    facts["unit"] = unit.read_text() if unit.is_file() else None
    facts["enabled"] = os.path.realpath("/etc/systemd/system/multi-user.target.wants/kubenet-hostnet-kh.service") == str(unit)
    facts["doctor_set_up"] = doctor()

    # one thing broken at a time: doctor names it, and passes again once `hostnet` repaired it
    def broken(breaking, repairing=lambda: invoke()) -> dict:
        breaking()
        time.sleep(0.2)
        found = doctor()
        repairing()
        return {"broken": found, "repaired": doctor()}

    def stop_dnsmasq() -> None:
        os.kill(int((STATE / "dnsmasq-kh.pid").read_text().split()[0]), 9)

    def stop_ganesha() -> None:
        os.kill(int((STATE / "ganesha-kh.pid").read_text().split()[0]), 9)

    def hosts_block_gone() -> None:
        text = Path("/etc/hosts").read_text()  # the overlay's copy
        Path("/etc/hosts").write_text(text[: text.index("# BEGIN kubenet kh")] + text[text.index("# END kubenet kh\n") + 17 :])

    facts["broken"] = {
        "forwarding": broken(lambda: Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")),  # this namespace's own
        "hosts": broken(hosts_block_gone),
        "pod_route": broken(lambda: ip("route", "del", "10.1.0.0/16")),
        "nfs": broken(stop_ganesha),
        "dnsmasq": broken(stop_dnsmasq),
        "nat": broken(lambda: subprocess.run(["nft", "delete", "table", "ip", "kubenet-kh"], check=True)),
        # the home LAN's route into the cluster's subnet, on another interface
        "route": broken(lambda: ip("route", "add", "192.168.1.128/25", "dev", "u0"), lambda: ip("route", "del", "192.168.1.128/25", "dev", "u0")),
    }
    # a reboot, as the host side sees it: the bridge gone (its address and routes with it), the
    # firewall empty, dnsmasq and the NFS server killed
    subprocess.run(["ip", "link", "delete", "kubr0"], check=True)
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    for server in ("dnsmasq-kh.pid", "ganesha-kh.pid"):
        pid_file = STATE / server
        if pid_file.is_file():
            os.kill(int(pid_file.read_text().split()[0]), 9)
    time.sleep(0.5)
    facts["doctor_rebooted"] = doctor()
    # what the unit runs at boot, word for word
    command = next(line for line in (facts["unit"] or "").splitlines() if line.startswith("ExecStart="))
    boot = subprocess.run(shlex.split(command.removeprefix("ExecStart=")), capture_output=True, text=True)
    facts["boot"] = {"code": boot.returncode, "stderr": boot.stderr}
    facts["doctor_after_boot"] = doctor()
    # the user takes worker0's pod network over after hostnet: --remove leaves their route
    ip("route", "replace", "10.1.0.0/16", "via", "10.250.0.2")
finally:
    facts["remove"] = invoke("--remove")  # also when a step above failed: dnsmasq must not outlive the test
facts["removed"] = state()
facts["nfs_folder_after"] = folder(NFS_FOLDER)
facts["config"] = CONFIG
print(json.dumps(facts))
