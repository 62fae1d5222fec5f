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


def check_output(argv: list[str], missing_hint: str | None = None, timeout: float = 30) -> str:
    """A quick command's output; a failure carries the command and what it said.

    `missing_hint` (how to install the program) is given only when it is missing.
    """
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise errors.HostError(f"{argv[0]}: command not found", missing_hint) from None
    except subprocess.TimeoutExpired:
        raise errors.LaunchError(f"`{_short(argv)}` did not finish within {timeout} s") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise errors.LaunchError(f"`{_short(argv)}` failed: {said[-1] if said else f'exit code {done.returncode}'}")
    return done.stdout


def outcome(argv: list[str], timeout: float = 30) -> tuple[int, str]:
    """Exit code and the last line of stderr, for commands whose failure is an answer (ssh probes)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    said = done.stderr.strip().splitlines()
    return done.returncode, said[-1] if said else ""


def outcome_with_output(argv: list[str], timeout: float = 30) -> tuple[int, str]:
    """Exit code and stdout, for queries whose failure means "nothing there"."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 127, ""
    return done.returncode, done.stdout


def succeeds(argv: list[str], timeout: float = 30) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _short(argv: list[str], limit: int = 300) -> str:
    text = shlex.join(argv)
    return text if len(text) <= limit else text[:limit] + " ..."


def run(argv: list[str], missing_hint: str | None = None, **kwargs) -> str:
    """Run a program to completion; a failure carries the command and its output.

    `missing_hint` (how to install the program) is given only when it is missing.
    """
    import sh

    try:
        return str(sh.Command(argv[0])(*argv[1:], _err_to_out=True, **kwargs))
    except sh.CommandNotFound:
        raise errors.HostError(f"{argv[0]}: command not found", missing_hint) from None
    except sh.ErrorReturnCode as failure:
        output = failure.stdout.decode(errors="replace").strip()
        last = output.splitlines()[-1] if output else "no output"
        raise errors.LaunchError(f"`{_short(argv)}` failed with exit code {failure.exit_code}: {last}") from None


def replace_process(argv: list[str], missing_hint: str | None = None) -> None:
    """exec: the program takes over this process, its console and its Ctrl-C."""
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise errors.HostError(f"{argv[0]}: command not found", missing_hint) from None
