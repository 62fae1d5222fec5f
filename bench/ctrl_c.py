"""How fast a Ctrl-C ends `invoke up` while it waits for its VMs to be ready.

Two stub qemus (tests/stubs/qemu_qmp.py: a pid file, QMP answered, no guest, so no
login ever succeeds) on a private tmux server; `invoke up --timeout 300` is started,
and once it says it is waiting, it gets SIGINT. Timed: from the signal until the
process has ended. Target: under 1 s (its waits sleep on one event and its logins are
killed at once; nothing waits out a grace period). Run: `make bench` (or python bench/ctrl_c.py).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from launch import INVOKE, ROOT, StubCluster, clean  # noqa: E402

RUNS = 11
TARGET_SECONDS = 1.0
STUB = ROOT / "tests" / "stubs" / "qemu_qmp.py"


def interrupted_wait(cluster: StubCluster) -> float:
    """Seconds from SIGINT to the end of an `invoke up` that waits for its VMs."""
    env = {**cluster.env, "KUBENET_QEMU": str(STUB)}
    argv = [INVOKE, "--search-root", str(ROOT), "up", "--timeout", "300", "--config", str(cluster.config)]
    up = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in up.stderr:
            if "waiting up to" in line:
                break
        else:
            raise SystemExit(f"bench: `invoke up` ended before it waited (status {up.wait()})")
        start = time.perf_counter()
        up.send_signal(signal.SIGINT)
        status = up.wait(timeout=60)
        took = time.perf_counter() - start
        if status != 130:
            raise SystemExit(f"bench: `invoke up` ended with status {status} after Ctrl-C, not 130")
        return took
    finally:
        up.kill()
        up.wait()
        clean(cluster.directory, cluster.socket)


def main() -> int:
    cluster = StubCluster(2)
    try:
        times = [interrupted_wait(cluster) for _ in range(RUNS)]
    finally:
        cluster.close()
    median = statistics.median(times)
    print(f"Ctrl-C while `invoke up` waits for 2 VMs: ended {median * 1000:.0f} ms after it (median of {RUNS}; {min(times) * 1000:.0f}–{max(times) * 1000:.0f} ms)")
    print(f"target under {TARGET_SECONDS:g} s: {'met' if max(times) < TARGET_SECONDS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
