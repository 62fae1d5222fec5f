"""The one place that starts external programs.

Long-running and user-visible programs (qemu-img, tmux, ssh, qemu) go through
the `sh` library, imported lazily because it costs ~50 ms at start-up, which
`invoke ls` and `invoke argv` cannot afford. Tiny probes use subprocess for
the same reason.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from . import errors


def capture(argv: list[str], timeout: float = 10) -> str:
    """Output of a quick probe such as `qemu-system-x86_64 -accel help`."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise errors.HostError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise errors.HostError(f"`{shlex.join(argv)}` did not answer within {timeout} s") from None
    return done.stdout


def run(argv: list[str], hint: str | None = None, **kwargs) -> str:
    """Run a program to completion; a failure carries the command and its output."""
    import sh

    try:
        return str(sh.Command(argv[0])(*argv[1:], _err_to_out=True, **kwargs))
    except sh.CommandNotFound:
        raise errors.HostError(f"{argv[0]}: command not found", hint) from None
    except sh.ErrorReturnCode as failure:
        output = failure.stdout.decode(errors="replace").strip()
        last = output.splitlines()[-1] if output else "no output"
        raise errors.LaunchError(
            f"`{shlex.join(argv)}` failed with exit code {failure.exit_code}: {last}", hint
        ) from None


def replace_process(argv: list[str]) -> None:
    """exec: the program takes over this process, its console and its Ctrl-C."""
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise errors.HostError(f"{argv[0]}: command not found", "install qemu, or set KUBENET_QEMU") from None
