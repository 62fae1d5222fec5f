"""What a whole-cluster snapshot costs: 7 tiny VMs (the tutorial's cluster, 256 MiB each)
under TCG, live and stopped, beside a fresh `make up`.

For the live snapshot, each of several rounds saves and restores and reports: the time of
the command, the longest any VM was paused and how far apart the first and last pause
were (what `save` and `restore` print), and the time from the restore's start until every
VM answers SSH again. For the stopped one: the save, the restore, and the `make up` that
boots from it. Then the disk space each snapshot holds (`invoke snapshots --json`).
Run: `make bench-snapshot` (or python bench/snapshot.py [rounds]).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tinyimage.build import build  # noqa: E402
from tinyimage.cluster import tear_down, write_cluster  # noqa: E402

INVOKE = str(Path(sys.executable).parent / "invoke")
PAUSED = re.compile(r"kubenet: paused ([0-9.]+) s at most, ([0-9]+) ms apart")


class Cluster:
    def __init__(self, directory: Path, config: Path):
        self.directory, self.config = directory, config
        self.env = {**os.environ, "KUBENET_TMUX_SOCKET": str(directory / "tmux.sock"), "KUBENET_ACCEL": "tcg"}

    def run(self, *args: str, make: bool = False) -> tuple[float, str]:
        """Seconds the command took, and what it said on stderr; a failure ends the benchmark."""
        options, command = (args[: args.index("--")], args[args.index("--") :]) if "--" in args else (args, ())
        invoked = [INVOKE, "--search-root", str(ROOT), *options, "--config", str(self.config), *command]
        argv = ["make", "-C", str(ROOT), args[0], f"CONFIG={self.config}"] if make else invoked
        start = time.perf_counter()
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        took = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
        return took, done.stderr + done.stdout

    def snapshots(self) -> list[dict]:
        argv = [INVOKE, "--search-root", str(ROOT), "snapshots", "--json", "--config", str(self.config)]
        return json.loads(subprocess.run(argv, env=self.env, capture_output=True, text=True, check=True).stdout)


def paused(said: str) -> tuple[float, int]:
    found = PAUSED.search(said)
    return (float(found[1]), int(found[2])) if found else (float("nan"), -1)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f}, min {min(values):.2f}, max {max(values):.2f}"


def live_rounds(cluster: Cluster, rounds: int) -> None:
    saves, restores, answers, save_pauses, restore_pauses, apart = [], [], [], [], [], []
    for number in range(rounds):
        name = f"round-{number}"
        took, said = cluster.run("snapshot", "save", name)
        saves.append(took)
        longest, ms = paused(said)
        save_pauses.append(longest)
        apart.append(ms)
        took, said = cluster.run("snapshot", "restore", name)
        restores.append(took)
        restore_pauses.append(paused(said)[0])
        start = time.perf_counter()
        cluster.run("exec", "--", "true")  # every VM
        answers.append(took + time.perf_counter() - start)
    print(f"live, {rounds} rounds:")
    print(f"  save    {spread(saves)} s; longest pause {spread(save_pauses)} s; pauses {min(apart)}-{max(apart)} ms apart")
    print(f"  restore {spread(restores)} s; longest pause {spread(restore_pauses)} s; every VM answers SSH {spread(answers)} s after the restore began")
    for row in cluster.snapshots():
        print(f"  {row['name']}: {row['size']} ({row['bytes'] / len(row['vm_names']) / 2**20:.0f} MiB a VM)")
    for number in range(rounds):
        cluster.run("snapshot", "rm", f"round-{number}")


def stopped_round(cluster: Cluster) -> None:
    cluster.run("down")
    save, _ = cluster.run("snapshot", "save", "cold")
    restore, _ = cluster.run("snapshot", "restore", "cold")
    up, _ = cluster.run("up", make=True)
    print(f"stopped: save {save:.2f} s, restore {restore:.2f} s, then make up to all ready {up:.1f} s")


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    kernel, initrd = build()
    print(f"tiny image: {kernel} + {initrd}; 7 VMs of 256 MiB; {os.cpu_count()} cores, TCG")
    directory = Path(tempfile.mkdtemp(prefix="knsnap"))
    cluster = Cluster(directory, write_cluster(directory, kernel, initrd))
    try:
        fresh, _ = cluster.run("up", make=True)
        print(f"fresh make up, from nothing to all ready: {fresh:.1f} s")
        live_rounds(cluster, rounds)
        stopped_round(cluster)
    finally:
        tear_down(directory, cluster.config, cluster.env, [INVOKE, "--search-root", str(ROOT)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
