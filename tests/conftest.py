"""Shared helpers: writing cluster files and running the real `invoke` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"


def run_invoke(*args: str, cwd: Path = ROOT, env: dict | None = None, check: bool = False):
    """Run `invoke ARGS` with this repository's tasks.py, as a user would."""
    environment = {**os.environ, **(env or {})}
    environment.pop("KUBENET_CONFIG", None) if env is None or "KUBENET_CONFIG" not in env else None
    done = subprocess.run(
        [str(INVOKE), "--search-root", str(ROOT), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"invoke {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture
def cluster_file(tmp_path):
    """Write a cluster.yaml into a temp dir and return its path."""

    def write(text: str, name: str = "cluster.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
