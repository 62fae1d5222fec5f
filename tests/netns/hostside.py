"""What the host side of bridge mode looks like in the test's namespace, as the
namespace drivers (hostnet_facts.py, root_bridge.py) record it before and after
`invoke hostnet`."""

import json
import subprocess
from pathlib import Path

BRIDGE = "kubr0"
BRIDGE_CONF = Path("/etc/qemu/bridge.conf")
HELPER = Path("/usr/lib/qemu/qemu-bridge-helper")


def out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


def host_side(nat_table: str) -> dict:
    link = json.loads(out("ip", "-j", "addr", "show", "dev", BRIDGE) or "[]")
    return {
        "bridge": bool(link),
        "addresses": [f"{a['local']}/{a['prefixlen']}" for entry in link for a in entry.get("addr_info", []) if a.get("family") == "inet"],
        "up": bool(link) and "UP" in link[0]["flags"],
        "forwarding": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "nat": out("nft", "list", "table", "ip", nat_table),
        "bridge_conf": BRIDGE_CONF.read_text() if BRIDGE_CONF.exists() else None,
        "hosts": Path("/etc/hosts").read_text(),
        "helper_mode": HELPER.stat().st_mode & 0o7777,
        "dns_listeners": out("ss", "-Hlnu", "sport = :53"),
        "nfs_listeners": out("ss", "-Hlnt", "sport = :2049"),
        "routes": sorted(f"{r['dst']} via {r['gateway']}" for r in json.loads(out("ip", "-j", "route", "show") or "[]") if "gateway" in r and r["dst"].startswith("10.")),
    }
