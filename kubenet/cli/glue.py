"""Glue between invoke tasks and the library: option parsing, VM selection, output.

Kept free of heavy imports: `invoke ls` and `invoke argv` run in pipelines.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import signal
import sys
import threading
from typing import Callable, Iterable

from invoke import Exit

from ..model.cluster import Cluster, ReadyWhen
from ..plumbing import errors


def user_errors(function: Callable) -> Callable:
    """Every error a user can cause becomes one line on stderr and a non-zero exit, no traceback.

    A closed stdout (`invoke ls | head -1`) ends the task at once and quietly,
    with the exit status of a process killed by SIGPIPE, as other tools do.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        signal.signal(signal.SIGTERM, _terminated)  # `timeout` and service managers send it: clean up as for Ctrl-C
        try:
            try:
                result = function(*args, **kwargs)
                sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
                return result
            except errors.ConfigProblems as problems:
                for line in problems.lines()[:-1]:
                    print(f"kubenet: error: {line}", file=sys.stderr)
                fail(problems.lines()[-1])
            except errors.KubenetError as error:
                fail(str(error))
            except UnicodeError as error:
                fail(f"text that is not UTF-8: {error}", "save your files (cluster.yaml, templates, keys) as UTF-8")
            except BrokenPipeError:
                raise
            except OSError as error:
                fail(*describe_os_error(error))
            except Terminated:
                print("kubenet: terminated", file=sys.stderr, flush=True)
                raise Exit(code=128 + signal.SIGTERM) from None
            except KeyboardInterrupt:
                print("kubenet: interrupted", file=sys.stderr, flush=True)
                raise Exit(code=130) from None
        except BrokenPipeError:
            silence_output()
            raise Exit(code=SIGPIPE_STATUS) from None

    return wrapper


SIGPIPE_STATUS = 128 + 13  # what a shell reports for a process killed by SIGPIPE


class Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds like Ctrl-C (so what a command started is stopped), and says so."""


def _terminated(signum, frame) -> None:
    raise Terminated()


def fail(message: str, hint: str | None = None) -> None:
    """Print the one-line error and exit 1."""
    print(f"kubenet: error: {message}" + (f" (hint: {hint})" if hint else ""), file=sys.stderr, flush=True)
    raise Exit(code=1) from None


def silence_output() -> None:
    """Point stdout and stderr at /dev/null, so nothing fails again as Python exits."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass
    os.close(devnull)


def describe_os_error(error: OSError) -> tuple[str, str | None]:
    """What failed, on which file, and what usually helps."""
    where = f"{error.filename}: " if error.filename else ""
    what = error.strerror or str(error)
    hints = {
        errno.ENOSPC: "free some space on that file system, or move state_dir elsewhere",
        errno.EDQUOT: "free some space on that file system, or move state_dir elsewhere",
        errno.EROFS: "that file system is read-only: point state_dir at a writable directory",
        errno.EACCES: "you may not write there: point state_dir at a directory you own",
        errno.EPERM: "you may not write there: point state_dir at a directory you own",
        errno.ENAMETOOLONG: "use shorter names in cluster.yaml, or a shorter state_dir",
        errno.ENOTDIR: "a file stands where kubenet needs a directory",
        errno.EISDIR: "a directory stands where kubenet needs a file",
    }
    return f"{where}{what}", hints.get(error.errno)


def parse_timeout(text: str | float | None, default: float, option: str = "--timeout") -> float:
    """Seconds from the command line: a finite number, 0 or more."""
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise errors.KubenetError(f"{option} {text!r} is not a number of seconds", f"e.g. {option} {default:g}") from None
    if not math.isfinite(value) or value < 0:
        raise errors.KubenetError(f"{option} {text!r} is not a number of seconds", f"give 0 or more, e.g. {option} {default:g}")
    return value


def parse_ready(text: str | None) -> ReadyWhen | None:
    """--ready: ssh or cloud-init; None leaves it to the cluster file."""
    if text is None:
        return None
    if text not in ReadyWhen.values():
        raise errors.KubenetError(f"--ready {text!r} is not known; allowed: {', '.join(ReadyWhen.values())}")
    return ReadyWhen(text)


def open_cluster(config: str | None, state: bool = True) -> Cluster:
    """The cluster file, loaded and validated; with `state`, its state_dir checked to be
    safely kubenet's (commands that only describe or fetch skip that)."""
    from ..model.config import config_path, load_cluster

    cluster = load_cluster(config_path(config))
    if state:
        from ..store.statedir import check_state

        check_state(cluster)
    return cluster


def format_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    cells = [["-" if row[h] is None else str(row[h]).lower() if isinstance(row[h], bool) else str(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = [[h.upper() for h in headers], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def format_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)


_SAYING = threading.Lock()


def say(message: str) -> None:
    """Progress for people goes to stderr, a whole line at a time whichever thread says it;
    stdout is for data (flushed first, so a closed pipe ends us here)."""
    with _SAYING:
        sys.stdout.flush()
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on a terminal; elsewhere only --yes says yes."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise errors.KubenetError(f"{question} needs confirmation", "pass --yes to confirm without a terminal")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


# ---- a task whose bare words are paths, as many as typed (`cp SRC... DEST`, as scp takes them)


def bare_words(argv: list[str], task_names: tuple[str, ...], value_flags: set[str]) -> int:
    """How many bare words follow the task on the command line: not flags, not the values
    of flags that take one, nothing after `--`."""
    start = next((index for index, word in enumerate(argv[1:], 1) if word in task_names), None)
    if start is None:
        return 0
    count, words = 0, iter(argv[start + 1 :])
    for word in words:
        if word == "--":
            break
        if word.startswith("-") and len(word) > 1:
            if word in value_flags:
                next(words, None)
            continue
        count += 1
    return count


def paths_task(*args, **kwargs):
    """`@task`, for a task whose first parameter takes every bare word typed. invoke's parser
    fills a positional argument while it is missing and has no argument that takes any
    number of words; this one counts the words typed after the task (in sys.argv) and stays
    missing until it holds them all, at least two."""
    import invoke
    from invoke.parser import Argument

    class Paths(Argument):
        wanted = 2

        @property
        def value(self):
            given = self._value or []
            return given if len(given) >= self.wanted else None

        @value.setter
        def value(self, arg):
            self.set_value(arg)

        def set_value(self, value, cast=True):
            self.raw_value = value
            self._value = [*(self._value or []), value]

    class PathsTask(invoke.Task):
        def get_arguments(self, ignore_unknown_help=None):
            arguments = super().get_arguments(ignore_unknown_help)
            first = arguments[0]
            paths = Paths(names=first.names, kind=list, default=[], help=first.help, positional=True)
            value_flags = {f"--{name.replace('_', '-')}" for argument in arguments[1:] if argument.takes_value for name in argument.names}
            names = (self.name, *self.aliases) if self.name else (self.body.__name__,)
            paths.wanted = max(2, bare_words(sys.argv, names, value_flags))
            return [paths, *arguments[1:]]

    return invoke.task(*args, klass=PathsTask, **kwargs)


def say_all(lines: Iterable[str]) -> None:
    for line in lines:
        say(line)


def symbols() -> dict[str, str]:
    """✓ ✗ – where stdout can show them, else plain words."""
    from ..doctor.report import PLAIN, SYMBOLS

    try:
        "✓✗–".encode(sys.stdout.encoding or "ascii")
        return SYMBOLS
    except (UnicodeError, LookupError):
        return PLAIN
