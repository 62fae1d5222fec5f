"""Networks that need root (vmnet-shared; a bridge whose helper is not setuid), for a
user who is not root.

qemu has to open such a network as root, and only that: root's tmux starts each
qemu through handover.py, which gives it a QMP socket made as the user, and qemu
drops to the user (`-runas`) once its network is open. The pid file and console log
are made by the user beforehand, so every file of the VM stays the user's, and
`ls`, `stop`, `down`, `exec` and `ssh-all` reach the VM without root. Starting VMs
(`up`, `start`, `invoke vm`) and removing root's tmux session (`down`) ask sudo
once, in the foreground (`sudo -v`); every later sudo of that command is `sudo -n`,
which never asks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from ..machine.target import Target
from ..model.cluster import NetworkMode
from ..plumbing import errors
from ..plumbing.process import run_attached

HANDOVER = Path(__file__).with_name("handover.py")


def handover_argv(user: str, qmp: Path, guest_agent: Path, qemu_argv: list[str]) -> list[str]:
    """What root's pane runs: handover.py (by path, isolated from the user's environment), then qemu."""
    return [sys.executable, "-I", str(HANDOVER), user, str(qmp), str(guest_agent), "--", *qemu_argv]


def why_root(target: Target) -> str:
    if target.mode == NetworkMode.VMNET_SHARED:
        return "macOS's vmnet-shared network opens only for root"
    return "qemu's bridge helper is not setuid root; `make hostnet` makes it so"


def authorize(target: Target, doing: str, say: Callable[[str], None]) -> None:
    """Let sudo ask for the password once, here, for the whole command."""
    say(f"kubenet: {doing} needs root ({why_root(target)}); sudo may ask for your password")
    code = run_attached(["sudo", "-v"], "install sudo, or run kubenet as root")
    if code != 0:
        raise errors.HostError(
            f"sudo did not grant root (exit code {code}), which {doing} needs",
            "run it again and give your password, or set network.mode: user in cluster.yaml (no root at all)",
        )
