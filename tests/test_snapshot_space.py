"""A live snapshot is refused, before any VM pauses, where its VMs' memory would not fit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from conftest import INVOKE, ROOT
from test_tmux import write_cluster
from test_trust import processes_naming


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="makes a mount namespace: needs root")
def test_a_live_save_without_room_for_the_vms_memory_is_refused_with_the_figures(short_dir, stub_env):
    prepared = short_dir / "prepared"
    prepared.mkdir()
    write_cluster(prepared, "  - {name: node, count: 2, memory: 256M}\n")
    small = short_dir / "small"
    small.mkdir()
    config = small / "cluster.yaml"
    # In a private mount namespace: the cluster on a 200 MiB tmpfs, its stub VMs running.
    script = (
        "set -e\n"
        f"mount -t tmpfs -o size=200M,mode=0755 tmpfs {small}\n"
        f"cp -a {prepared}/. {small}/\n"
        '"$1" --search-root "$2" up --no-wait --config "$3"\n'
        '"$1" --search-root "$2" snapshot save roomy --config "$3" && echo saved || echo "refused: $?"\n'
        f"ls -A {small}/.kubenet/snapshots 2>/dev/null | wc -l\n"
        '"$1" --search-root "$2" down --config "$3" >/dev/null 2>&1\n'
    )
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(INVOKE), str(ROOT), str(config)],
            env={**os.environ, **stub_env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.stdout.split() == ["refused:", "1", "0"], done.stdout + done.stderr  # nothing recorded
        line = next(line for line in done.stderr.splitlines() if "not enough space" in line)
        assert line.startswith(
            "kubenet: error: not enough space for a live snapshot: it needs about 768.0 MiB (the VMs' 512.0 MiB of memory and a margin), "
            f"the file system holding {small}/.kubenet/node0 has "
        ), line
        assert "(hint: free some space, remove an old snapshot" in line
    finally:
        for pid in processes_naming(f"{small}/.kubenet"):
            os.kill(pid, signal.SIGKILL)
