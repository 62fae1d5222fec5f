"""A cluster file that boots the tiny test image: user-mode networking with VDE, TCG; and
such a cluster gone again.

Shared by the end-to-end tests and the benchmarks of real VMs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
from pathlib import Path

# The tutorial's roles and names, at the test image's size.
TUTORIAL_ROLES = (
    "  - {name: gateway, vcpus: 1, memory: 256M}\n"
    "  - {name: control, count: 3, vcpus: 1, memory: 256M}\n"
    "  - {name: worker, count: 3, vcpus: 1, memory: 256M}\n"
)


def free_port_base(count: int) -> int:
    """A base port with `count` free ports on 127.0.0.1 after it, for the VMs' forwarded SSH."""
    for _ in range(100):
        base = random.randrange(20000, 60000)
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no free range of ports on 127.0.0.1")


def write_cluster(directory: Path, kernel: Path, initrd: Path, roles: str = TUTORIAL_ROLES, count: int = 7) -> Path:
    """cluster.yaml in `directory`, with a login key of its own beside it."""
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    path = directory / "cluster.yaml"
    path.write_text(
        "name: kt\n"
        f"roles:\n{roles}"
        f"network: {{mode: user, ssh_port_base: {free_port_base(count)}}}\n"
        f"image: {{kind: kernel, kernel: {kernel}, initrd: {initrd}}}\n"
        f"ssh_key: {key}.pub\n"
        "accel: tcg\n"
        "disk_size: 64M\n"
    )
    return path


def tear_down(directory: Path, config: Path, env: dict, invoke: list[str], seconds: int = 30) -> None:
    """A throwaway cluster gone: `invoke down` (`invoke` its command, with --search-root), its
    tmux server, any qemu or VDE switch that `down` could not stop (by their pid files), and
    its directory."""
    subprocess.run([*invoke, "down", "--timeout", str(seconds), "--config", str(config)], env=env, capture_output=True)
    subprocess.run(["tmux", "-S", str(directory / "tmux.sock"), "kill-server"], capture_output=True)
    for pid_file in [*directory.glob(".kubenet/*/qemu.pid"), directory / ".kubenet/vde.pid"]:
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # only if `down` could not stop it
        except (OSError, ValueError):
            pass
    shutil.rmtree(directory, ignore_errors=True)
