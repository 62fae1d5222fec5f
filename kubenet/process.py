"""The one place that runs, watches and signals other programs.

- `run`: a program to completion, with one result shape; a failure carries the
  command, its exit code and what it said, and a missing program says how to
  install it.
- `start`: a program in the background whose output lines go to callbacks
  (`invoke exec`), through the `sh` library.
- `run_attached`: a program on this terminal, unhurried (sudo asking for a password).
- `replace_process`: exec, for programs that take over the terminal (qemu, ssh, tmux attach).
- pids: whether one is alive, and whether it is provably the process we started.

`run` uses subprocess rather than `sh`: importing sh costs 50-100 ms, more than
`invoke up`'s whole budget for driving tmux, and the pipeline tasks (`ls`,
`argv`) must stay quick; its errors carry what sh's would.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from . import errors


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: str
    stderr: str


def run(argv: list[str], check: bool = True, timeout: float = 30, missing_hint: str | None = None) -> Completed:
    """Run `argv` to completion, stdin closed. With `check`, a non-zero exit raises LaunchError.

    `missing_hint` (how to install the program) is given only when it is missing.
    """
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise errors.HostError(f"{argv[0]}: command not found", missing_hint) from None
    except subprocess.TimeoutExpired:
        raise errors.LaunchError(f"`{short(argv)}` did not finish within {timeout:g} s") from None
    if check and done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        reason = said[-1] if said else "no output"
        raise errors.LaunchError(f"`{short(argv)}` failed with exit code {done.returncode}: {reason}")
    return Completed(done.returncode, done.stdout, done.stderr)


def short(argv: list[str], limit: int = 300) -> str:
    text = shlex.join(argv)
    return text if len(text) <= limit else text[:limit] + " ..."


class Background:
    """A program started by `start`, whose output lines go to callbacks as they come."""

    def __init__(self, running):
        self._running = running

    def alive(self) -> bool:
        return self._running.is_alive()

    def terminate(self) -> None:
        if self.alive():
            try:
                self._running.terminate()
            except OSError:
                pass  # it ended meanwhile

    def wait(self) -> int:
        """Its exit code; 128 + N when a signal N ended it."""
        import sh

        try:
            self._running.wait()
        except sh.SignalException as signalled:
            return 128 + abs(signalled.exit_code)
        except sh.ErrorReturnCode as failed:
            return failed.exit_code
        return self._running.exit_code


def start(argv: list[str], out: Callable[[str], bool | None], err: Callable[[str], bool | None]) -> Background:
    """Start `argv` with stdin closed; each output line is passed to `out` or `err`
    (a callback that returns True hears no more)."""
    import sh  # only `invoke exec` pays for it

    try:
        command = sh.Command(argv[0])
    except sh.CommandNotFound:
        raise errors.HostError(f"{argv[0]}: command not found") from None
    return Background(command(*argv[1:], _out=out, _err=err, _bg=True, _ok_code=range(256), _in=None, _bg_exc=False))


def run_attached(argv: list[str], missing_hint: str | None = None) -> int:
    """Run `argv` on this terminal, for as long as it takes (sudo asking for a password); its exit code."""
    try:
        return subprocess.call(argv)
    except FileNotFoundError:
        raise errors.HostError(f"{argv[0]}: command not found", missing_hint) from None


def absolute_program(argv: list[str]) -> list[str]:
    """For a command root runs: root's PATH is not the user's (sudo resets it; Homebrew's
    programs are not in root's), so name the program by its full path."""
    return [shutil.which(argv[0]) or argv[0], *argv[1:]]


def replace_process(argv: list[str], missing_hint: str | None = None) -> None:
    """exec: the program takes over this process, its console and its Ctrl-C."""
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise errors.HostError(f"{argv[0]}: command not found", missing_hint) from None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, but root's (a root-launched network mode)
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): kill(0) is our answer


def names_in_arguments(pid: int, marker: str) -> bool | None:
    """Whether the process's arguments include `marker`; None if they cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return marker in stream.read().decode(errors="replace").split("\0")
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False  # gone
    except OSError:
        return None
    # no /proc (macOS): ps shows the arguments joined by spaces
    try:
        done = run(["ps", "-ww", "-o", "args=", "-p", str(pid)], check=False)
    except errors.KubenetError:
        return None
    return marker in done.stdout if done.code == 0 else None


def is_own_process(pid: int, marker: str, fallback: Callable[[], bool]) -> bool:
    """Whether `pid` is alive and is the process we started: its arguments name `marker`,
    a path only it is given. A pid read from a file may have been reused since."""
    if pid <= 0 or not pid_alive(pid):
        return False
    named = names_in_arguments(pid, marker)
    return fallback() if named is None else named  # unreadable: another user's process on a hardened /proc


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
