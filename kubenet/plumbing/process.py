"""The one place that runs, watches and signals other programs.

- `run`: a program to completion, with one result shape; a failure carries the
  command, its exit code and what it said, and a missing program says how to
  install it.
- `run_leaving_daemon`: the same for a program that forks a daemon (`ssh -f`).
- `start`: a program in the background whose output lines go to callbacks
  (`invoke exec`).
- `run_attached`: a program on this terminal, unhurried (sudo asking for a password).
- `replace_process`: exec, for programs that take over the terminal (qemu, ssh, tmux attach).
- pids: the one reader of pid files, whether a pid is alive, and whether it is
  provably the process we started.

Programs run through the `sh` library, imported on first use: inside an invoke
process it adds about 17 ms once (invoke has already loaded most of what it
needs; standalone it is about 60 ms), so the pipeline tasks (`ls`, `argv`), which
usually run nothing, do not pay for it. Its TTY for stdout is off: output is read
as data, never shown on a pseudo-terminal.
"""

from __future__ import annotations

import os
import queue
import shlex
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import errors


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: str
    stderr: str


STOP_POLL_SECONDS = 0.05  # how soon a program is killed once its command ends

# What every call of a program through sh shares: no pseudo-terminal, any exit code is
# ours to judge, output that is not UTF-8 decoded with replacement rather than lost, and
# errors of a background command left to its waiter. (sh's own timeouts, `_timeout` and
# `wait(timeout=)`, poll every 0.1 s, which every call would pay, and the latter returns
# before the output is read: a timer kills a program that overstays instead.)
PLAIN = {"_tty_out": False, "_ok_code": range(256), "_decode_errors": "replace", "_bg": True, "_bg_exc": False}


def _command(argv: list[str], missing_hint: str | None):
    import sh

    try:
        return sh, sh.Command(argv[0])
    except sh.CommandNotFound:
        raise errors.HostError(f"{argv[0]}: command not found", missing_hint) from None


def _stdin(data):
    """What sh feeds a program: `data` (bytes, or a queue.Queue of chunks ended by None, for a
    conversation), or /dev/null (no feeding thread) when there is none."""
    return data if data is not None and (not isinstance(data, bytes) or data) else open(os.devnull, "rb")


def run(
    argv: list[str], check: bool = True, timeout: float = 30, missing_hint: str | None = None, input: bytes = b"",
    stop: threading.Event | None = None,
) -> Completed:
    """Run `argv` to completion, with `input` as its whole stdin (none: /dev/null).
    With `check`, a non-zero exit raises LaunchError. `missing_hint` (how to install the
    program) is given only when it is missing. `stop` set (a Ctrl-C heard by another
    thread) kills the program at once and raises Stopped."""
    return _finish(argv, check, timeout, missing_hint, stop, _in=_stdin(input))


def run_leaving_daemon(argv: list[str], log: Path, check: bool = True, timeout: float = 30, missing_hint: str | None = None) -> Completed:
    """Run a program that forks a daemon and exits (`ssh -f`): its output goes to `log`, not
    to pipes, which the daemon would hold open and a reader would wait on for ever; what
    it said there comes back as its stderr."""
    with open(log, "wb") as output:
        done = _finish(argv, False, timeout, missing_hint, None, _in=open(os.devnull, "rb"), _out=output, _err=output)
    said = log.read_text(errors="replace")
    if check and done.code != 0:
        lines = said.strip().splitlines()
        raise errors.LaunchError(f"`{short(argv)}` failed with exit code {done.code}: {lines[-1] if lines else 'no output'}")
    return Completed(done.code, "", said)


class Stopped(KeyboardInterrupt):
    """A program was killed because the command is ending (a Ctrl-C heard by another thread)."""


def _finish(argv: list[str], check: bool, timeout: float, missing_hint: str | None, stop: threading.Event | None, **streams) -> Completed:
    sh, command = _command(argv, missing_hint)
    try:
        running = command(*argv[1:], **streams, **PLAIN)
    except OSError as error:
        raise errors.HostError(f"{argv[0]}: cannot run it: {error.strerror}", missing_hint) from None
    overstayed, stopped, finished = threading.Event(), threading.Event(), threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not finished.wait(STOP_POLL_SECONDS if stop is not None else max(0.0, deadline - time.monotonic())):
            if stop is not None and stop.is_set():
                stopped.set()
            elif time.monotonic() >= deadline:
                overstayed.set()
            else:
                continue
            _kill_quietly(running)
            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        running.wait()
    except sh.SignalException:
        pass  # killed by a signal: judged below like an exit code, 128 + N
    finally:
        finished.set()
    if stopped.is_set():
        raise Stopped()
    if overstayed.is_set():
        raise errors.LaunchError(f"`{short(argv)}` did not finish within {timeout:g} s")
    code = _exit_code(running.exit_code)
    stdout, stderr = _text(running.stdout), _text(running.stderr)
    if check and code != 0:
        said = (stderr.strip() or stdout.strip()).splitlines()
        reason = said[-1] if said else "no output"
        raise errors.LaunchError(f"`{short(argv)}` failed with exit code {code}: {reason}")
    return Completed(code, stdout, stderr)


def _exit_code(code: int) -> int:
    """sh gives a signal's death as -N; a shell says 128 + N."""
    return code if code >= 0 else 128 - code


def _kill_quietly(running) -> None:
    try:
        running.kill()
    except OSError:
        pass  # it ended meanwhile


def _text(data: bytes | str) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data


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

    def kill(self) -> None:
        if self.alive():
            try:
                self._running.kill()
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
        return _exit_code(self._running.exit_code)


def start(
    argv: list[str], out: Callable[[str], bool | None], err: Callable[[str], bool | None], input: bytes | queue.Queue = b""
) -> Background:
    """Start `argv` with `input` as its whole stdin (or, a queue.Queue, what is put in it,
    until None: a conversation); each output line is passed to `out` or `err` (a callback
    that returns True hears no more). Bytes that are not UTF-8 arrive as surrogate
    escapes, so `os.fsencode` gives them back unchanged."""
    sh, command = _command(argv, None)
    options = {**PLAIN, "_decode_errors": "surrogateescape"}
    return Background(command(*argv[1:], _out=out, _err=err, _in=_stdin(input), **options))


def run_attached(argv: list[str], missing_hint: str | None = None) -> int:
    """Run `argv` on this terminal, for as long as it takes (sudo asking for a password); its exit code."""
    sh, command = _command(argv, missing_hint)
    try:
        command(*argv[1:], _fg=True)  # sh takes no other option with _fg
        return 0
    except sh.SignalException as signalled:
        return 128 + abs(signalled.exit_code)
    except sh.ErrorReturnCode as failed:
        return failed.exit_code


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


# ---- pids ---------------------------------------------------------------------------

# The largest pid any system hands out (Linux's pid_max is at most 2^22; macOS's is lower):
# a larger number in a pid file is garbage, not a process to look at or signal.
MAX_PID = 1 << 22


def read_pid(path: Path) -> int | None:
    """The pid a pid file holds; None when it is missing, unreadable or not a plausible pid."""
    try:
        with open(path, "rb") as stream:
            text = stream.read(32).decode("ascii").strip()
    except (OSError, UnicodeError):
        return None
    if not (text.isdigit() and len(text) <= 8):
        return None
    pid = int(text)
    return pid if 0 < pid <= MAX_PID else None


def own_pid(pid_file: Path, marker: str, fallback: Callable[[], bool] = lambda: False) -> int | None:
    """The pid in `pid_file` if it is alive and provably the process we started with `marker`
    among its arguments; None otherwise (a pid file may outlive its process, and its pid be reused)."""
    pid = read_pid(pid_file)
    return pid if pid is not None and is_own_process(pid, marker, fallback) else None


def pid_alive(pid: int) -> bool:
    if not 0 < pid <= MAX_PID:
        return False
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


def zombie_exit(pid: int) -> tuple[int | None, int | None] | None:
    """(exit status, signal) of a process that ended but is not yet reaped by its parent, as
    Linux keeps it in /proc/PID/stat (field 52, in waitpid's form); None if it is not a zombie
    or cannot be read (no /proc: macOS)."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] != "Z" or len(fields) < 50:
        return None
    code = int(fields[-1])
    return (os.WEXITSTATUS(code), None) if os.WIFEXITED(code) else (None, os.WTERMSIG(code))


def arguments(pid: int) -> list[str] | None:
    """The process's arguments ([] when it is gone); None if they cannot be read. Without
    /proc (macOS) they come from ps, joined by spaces into one."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return stream.read().decode(errors="replace").split("\0")
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return []  # gone
    except OSError:
        return None
    try:
        done = run(["ps", "-ww", "-o", "args=", "-p", str(pid)], check=False)
    except errors.KubenetError:
        return None
    return [done.stdout.strip()] if done.code == 0 else None


def names_in_arguments(pid: int, marker: str) -> bool | None:
    """Whether the process's arguments include `marker` (as a whole argument where they can
    be told apart); None if they cannot be read."""
    words = arguments(pid)
    if words is None:
        return None
    return marker in words if os.path.isdir("/proc/self") else any(marker in word for word in words)


def mentions(pid: int, text: str) -> bool | None:
    """Whether any of the process's arguments contains `text` (e.g. a path inside `-nic vde,sock=…`)."""
    words = arguments(pid)
    return None if words is None else any(text in word for word in words)


def is_own_process(pid: int, marker: str, fallback: Callable[[], bool]) -> bool:
    """Whether `pid` is alive and is the process we started: its arguments name `marker`,
    a path only it is given. A pid read from a file may have been reused since."""
    if not pid_alive(pid):
        return False
    named = names_in_arguments(pid, marker)
    return fallback() if named is None else named  # unreadable: another user's process on a hardened /proc


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def kill_group(pid: int, sig: int = signal.SIGTERM) -> None:
    """Signal the process group `pid` leads (a program started with a group of its own, and its children)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass  # it ended meanwhile


def wait_for_exit(pid: int, timeout: float, stop=None) -> bool:
    """Whether `pid` exits within `timeout` seconds; gives up early once `stop` (an Event) is set."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return False
        time.sleep(0.05)
    return True


END_SECONDS = 0.3  # how long a program asked to end (SIGTERM) may take before it is killed


def end_all(programs: list[Background], seconds: float = END_SECONDS) -> None:
    """Ask every program to end, then kill those that have not within `seconds`: ssh in the
    middle of its handshake only looks at SIGTERM once the server answers, which on a slow
    guest takes seconds."""
    for program in programs:
        program.terminate()
    deadline = time.monotonic() + seconds
    while any(program.alive() for program in programs) and time.monotonic() < deadline:
        time.sleep(0.02)
    for program in programs:
        program.kill()
    for program in programs:
        program.wait()


class held_signals:
    """While programs start: Ctrl-C and SIGTERM are noted, not acted on, so none lands
    between a program's start and its being counted among those to stop; on leaving, a
    noted signal is acted on as it would have been (its handler runs then)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "held_signals":
        self.noted: list[int] = []
        self.previous = {number: signal.signal(number, lambda number, frame: self.noted.append(number)) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        if self.noted and exc[0] is None:
            handler = self.previous[self.noted[0]]
            if callable(handler):
                handler(self.noted[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(self.noted[0])
