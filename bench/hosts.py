"""The cluster over two hosts against the same VMs on one: the network between VMs and `make up`.

A second host is a network namespace with its own sshd and user, as in the test
(tests/netns/two_hosts.py, run as root): gateway and node1 run here, node0 on it. From
node1, 20 pings and a 64 MiB TCP stream (busybox dd into nc) go to the gateway (same
host) and to node0 (across the VDE cable over SSH); then the same three VMs all run
here, and each layout's `make up` from nothing is timed. Targets: the cross-host round
trip within 3x the same-host one, and above 100 Mbit/s. The cable alone is measured too:
frames offered at 100 to 800 Mbit/s by a plug in this host's switch, counted by a plug in
the other's, with no guest in the way (under TCG the guests' own network stack is slower
than the cable).
Run: `make bench-hosts` (or python bench/hosts.py [ROUNDS]), as root.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_several_hosts import run_two_hosts  # noqa: E402


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench-hosts: run as root (the second host is a network namespace with its own sshd)")
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    runs = {"two hosts": [], "one host": []}
    for _ in range(rounds):
        runs["two hosts"].append(run_two_hosts("bench"))
        runs["one host"].append(run_two_hosts("bench-one-host"))
    for layout, facts in runs.items():
        failed = [f for f in facts if f["up"]["code"] != 0 or f.get("down", {}).get("code") != 0]
        if failed:
            sys.exit(f"bench-hosts: {layout}: make up or down failed: {failed[0]['up']['stderr'][-2000:]}")

    def median(layout: str, key: str) -> float:
        values = [f["bench"][key] for f in runs[layout] if f["bench"][key] is not None]
        return statistics.median(values) if values else float("nan")

    def mbits(layout: str, key: str) -> float:
        """Mbit/s of the streams that arrived whole (a short one is a failed measurement, not a rate)."""
        streams = [f["bench"][key] for f in runs[layout]]
        rates = [s["bytes"] * 8 / s["seconds"] / 1e6 for s in streams if s["bytes"] == s["sent"] and s["seconds"]]
        return statistics.median(rates) if rates else float("nan")

    up = {layout: statistics.median(f["up"]["seconds"] for f in facts) for layout, facts in runs.items()}
    same_rtt, cross_rtt = median("two hosts", "rtt_same_ms"), median("two hosts", "rtt_cross_ms")
    same_rate, cross_rate = mbits("two hosts", "stream_same"), mbits("two hosts", "stream_cross")
    print(f"{rounds} rounds, medians; 3 tiny VMs (256 MiB, TCG), node1 -> gateway (same host) and node1 -> node0 (across the cable)")
    print(f"  ping RTT      same host {same_rtt:.2f} ms   across hosts {cross_rtt:.2f} ms   ratio {cross_rtt / same_rtt:.2f} (target <= 3)")
    print(f"  TCP, 64 MiB   same host {same_rate:.0f} Mbit/s   across hosts {cross_rate:.0f} Mbit/s (target > 100)")
    print(f"  make up       two hosts {up['two hosts']:.1f} s   one host {up['one host']:.1f} s")
    # the cable alone: frames offered by a plug in this host's switch, counted at desk's
    for offered in [entry["offered"] for entry in runs["two hosts"][0]["bench"]["cable"]]:
        got = [e for f in runs["two hosts"] for e in f["bench"]["cable"] if e["offered"] == offered]
        loss = statistics.median(1 - e["received"] / e["sent"] for e in got)
        print(f"  cable alone   offered {offered} Mbit/s: carried {statistics.median(e['mbits'] for e in got):.0f} Mbit/s, {loss:.1%} lost")
    ok = cross_rtt <= 3 * same_rtt and cross_rate > 100
    print("  within target" if ok else "  OVER target")


if __name__ == "__main__":
    main()
