"""How long `invoke doctor` takes on a healthy cluster of the tutorial's seven VMs (the tiny
test image under TCG, user mode): every host check and one login per VM, all at once.
Target: under 10 s. Run: `make bench-doctor` (or python bench/doctor.py [RUNS])."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tinyimage.build import build  # noqa: E402
from tinyimage.cluster import TUTORIAL_ROLES, tear_down, write_cluster  # noqa: E402

INVOKE = str(Path(sys.executable).parent / "invoke")
TARGET = 10.0


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    kernel, initrd = build()
    directory = Path(tempfile.mkdtemp(prefix="kndoc"))
    config = write_cluster(directory, kernel, initrd, TUTORIAL_ROLES, 7)
    env = {**os.environ, "KUBENET_TMUX_SOCKET": str(directory / "tmux.sock"), "KUBENET_ACCEL": "tcg"}
    invoke = [INVOKE, "--search-root", str(ROOT)]
    try:
        up = subprocess.run(["make", "-C", str(ROOT), "up", f"CONFIG={config}"], env=env, capture_output=True, text=True)
        if up.returncode:
            raise SystemExit(f"make up failed:\n{up.stderr}")
        times, checks = [], []
        for _ in range(runs):
            start = time.perf_counter()
            done = subprocess.run([*invoke, "doctor", "--json", "--outside", "", "--config", str(config)], env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            checks = json.loads(done.stdout)
            if done.returncode:
                raise SystemExit(f"doctor found faults in a healthy cluster:\n{done.stdout}")
        counts = {status: sum(check["status"] == status for check in checks) for status in ("ok", "failed", "n/a")}
        median = statistics.median(times)
        print(f"invoke doctor, 7 tiny VMs under TCG on {os.cpu_count()} cores: {median:.2f} s (median of {runs}; {min(times):.2f}-{max(times):.2f} s); "
              f"{len(checks)} checks: {counts['ok']} ok, {counts['failed']} failed, {counts['n/a']} not applicable")  # fmt: skip
        print(f"target, under {TARGET:g} s: {'met' if median < TARGET else 'NOT met'}")
        return 0 if median < TARGET else 1
    finally:
        tear_down(directory, config, env, invoke)


if __name__ == "__main__":
    sys.exit(main())
