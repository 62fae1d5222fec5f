"""How long `make setup` and a repeated `make up` take, as a user runs them.

- fresh: `make setup` of the tutorial's 7 VMs from nothing (UEFI cloud image
  kind, a local 64 MiB base image already present), the cluster's make
  variables included. Target: under 1 s.
- nothing to do: `make setup` again. Target: under 0.05 s.
- up, all running: `make up` when all 7 tiny test VMs (tests/tinyimage) run
  and answer SSH. Target: under 0.5 s.

Run: `make bench-setup` (or python bench/setup.py).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # time what users get: compiled modules are cached

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
INVOKE = str(Path(sys.executable).parent / "invoke")
RUNS = 5


def make(config: Path, goal: str, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), goal, f"CONFIG={config}"], env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(done.stdout + done.stderr)
    return took


def cloud_cluster(directory: Path) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(directory / "base.qcow2"), "64M"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "id_test")], check=True)
    config = directory / "cluster.yaml"
    config.write_text("image: {url: base.qcow2}\nssh_key: id_test.pub\nnetwork: {mode: user}\naccel: tcg\n")
    return config


def time_setup() -> tuple[float, float]:
    fresh, again = [], []
    for _ in range(RUNS):
        directory = Path(tempfile.mkdtemp(prefix="kns"))
        try:
            config = cloud_cluster(directory)
            fresh.append(make(config, "setup", dict(os.environ)))
            again += [make(config, "setup", dict(os.environ)) for _ in range(3)]
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return statistics.median(fresh), statistics.median(again)


def time_up_when_running() -> float:
    from tinyimage.build import build
    from tinyimage.cluster import write_cluster

    kernel, initrd = build()
    directory = Path(tempfile.mkdtemp(prefix="knu"))
    env = {**os.environ, "KUBENET_TMUX_SOCKET": str(directory / "tmux.sock")}
    config = write_cluster(directory, kernel, initrd)
    try:
        make(config, "up", env)
        return statistics.median(make(config, "up", env) for _ in range(RUNS))
    finally:
        subprocess.run([INVOKE, "--search-root", str(ROOT), "down", "--timeout", "30", "--config", str(config)], env=env, capture_output=True)
        subprocess.run(["tmux", "-S", str(directory / "tmux.sock"), "kill-server"], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    fresh, again = time_setup()
    print(f"make setup, 7 fresh VMs:        {fresh:.3f} s (median of {RUNS}; target under 1 s)")
    print(f"make setup, nothing to do:      {again:.3f} s (median of {3 * RUNS}; target under 0.05 s)")
    running = time_up_when_running()
    print(f"make up, all 7 running and ready: {running:.3f} s (median of {RUNS}; target under 0.5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
