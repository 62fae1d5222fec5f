"""How much `invoke ls` and `invoke argv` cost on top of a bare invoke task.

Both are used in shell pipelines; the target is at most 50 ms above a no-op
task on the same machine. Run: `make bench` (or python bench/cli_latency.py).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Time what users get: Python caches compiled modules unless told not to.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

ROOT = Path(__file__).resolve().parent.parent
INVOKE = str(Path(sys.executable).parent / "invoke")
RUNS = 15
TARGET_MS = 50


def median_ms(argv: list[str], cwd: Path) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    with tempfile.TemporaryDirectory() as empty:
        Path(empty, "tasks.py").write_text("from invoke import task\n\n@task\ndef noop(c):\n    pass\n")
        baseline = median_ms([INVOKE, "noop"], Path(empty))
    print(f"bare invoke task      {baseline:6.1f} ms (median of {RUNS})")
    worst = 0.0
    for args in (["ls"], ["ls", "--json"], ["argv", "--id", "5"], ["argv", "--id", "5", "--host", "darwin-arm64"]):
        took = median_ms([INVOKE, *args], ROOT)
        worst = max(worst, took - baseline)
        print(f"invoke {' '.join(args):<30} {took:6.1f} ms  (+{took - baseline:5.1f} ms)")
    verdict = "within" if worst <= TARGET_MS else "OVER"
    print(f"worst overhead {worst:.1f} ms: {verdict} the {TARGET_MS} ms target")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
