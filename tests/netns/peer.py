"""A second network namespace beyond a veth pair, for the namespace drivers (root_bridge.py,
two_hosts.py): the world outside a host, or another host."""

import os
import subprocess
import time


def peer_namespace(here: str, there: str, here_address: str, there_address: str) -> tuple[subprocess.Popen, list[str]]:
    """A namespace (held by a sleeping process, which the caller kills) joined to this one by the
    veth pair `here`-`there`, each end up with its address (/24); and the prefix that runs a
    command inside it."""
    held = subprocess.Popen(["unshare", "--net", "sleep", "3600"])
    mine = os.readlink("/proc/self/ns/net")
    for _ in range(100):
        if os.readlink(f"/proc/{held.pid}/ns/net") != mine:
            break
        time.sleep(0.02)
    inside = ["nsenter", f"--net=/proc/{held.pid}/ns/net", "--"]
    for argv in (
        ["ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", str(held.pid)],
        ["ip", "addr", "add", f"{here_address}/24", "dev", here],
        ["ip", "link", "set", here, "up"],
        [*inside, "ip", "addr", "add", f"{there_address}/24", "dev", there],
        [*inside, "ip", "link", "set", there, "up"],
        [*inside, "ip", "link", "set", "lo", "up"],
    ):
        subprocess.run(argv, check=True, capture_output=True)
    return held, inside
