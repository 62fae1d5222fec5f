"""Apply layout.SessionSpec to tmux, and read back what tmux runs.

A whole session is built by ONE tmux process: its commands go in a single
argv, separated by ";" arguments. Within such a sequence each new session,
window or pane becomes the target of the commands after it, so nothing is
addressed by index and users' base-index/pane-base-index do not matter.
(Building 7 panes this way takes ~20 ms; one tmux process per command, as
libtmux does it, ~170 ms plus ~60 ms to import.) Big clusters take a few
calls, as tmux limits the size of one; every call names its targets.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, replace
from typing import Callable

from ..plumbing import errors
from ..plumbing.process import absolute_program, run
from .layout import SESSION_COLUMNS, SESSION_ROWS, PaneSpec, SessionSpec, WindowSpec, more_qemu_windows, window_capacity

SOCKET_ENV = "KUBENET_TMUX_SOCKET"  # a socket path, for a private server (tests, CI)
ROOT_SOCKET_SUFFIX = ".root"  # root's private server, beside the user's
VM_OPTION = "@kubenet-vm"  # pane option naming the pane's VM; titles can be changed by programs
# Marks kubenet's sessions (for the synchronize-panes key) with the state
# directory of the cluster that owns it, checked before one is adopted or killed.
SESSION_OPTION = "@kubenet"
SYNC_KEY = "C-s"
TMUX_HINT = "install tmux (`apt install tmux`, `brew install tmux`)"
# tmux refuses a client message over 16 KiB ("command too long"); stay well below.
MESSAGE_LIMIT = 12_000
PANE_FORMAT = "\t".join(
    ["#{pane_id}", "#{window_id}", "#{window_name}", "#{pane_dead}", "#{pane_pid}", "#{pane_dead_status}", "#{pane_dead_signal}",
     "#{" + VM_OPTION + "}", "#{" + SESSION_OPTION + "}"]
)  # fmt: skip


@dataclass(frozen=True)
class Pane:
    id: str
    window_id: str
    window_name: str
    dead: bool
    pid: int
    dead_status: int | None  # a dead pane's exit status (0: qemu ended cleanly, as when the guest powered off)
    dead_signal: int | None  # or the signal that ended it
    vm: str
    owner: str  # the session's owner mark: the state directory of its cluster


def with_zombie_status(pane: Pane) -> Pane:
    """A dead pane whose exit tmux has not recorded yet, with the status its unreaped process holds."""
    if pane.dead_status is not None or pane.dead_signal is not None:
        return pane
    from ..plumbing.process import zombie_exit

    ended = zombie_exit(pane.pid)
    return pane if ended is None else replace(pane, dead_status=ended[0], dead_signal=ended[1])


@dataclass(frozen=True)
class Tmux:
    """The tmux server of the cluster's sessions: always named by its socket, so it is the
    same server whichever shell or tmux session a command is typed in (inside tmux,
    tmux would otherwise use the server of $TMUX)."""

    socket: str | None = None  # $KUBENET_TMUX_SOCKET; None: the user's default server
    # root's server, as in the tutorial's `sudo tmux`, for qemus whose network needs root
    # (asroot.py). Its sudo never asks (-n): the command asked once, up front.
    sudo: bool = False
    tmpdir: str = "/tmp"  # where tmux keeps default servers' sockets ($TMUX_TMPDIR)

    @classmethod
    def from_environment(cls, environ=os.environ, sudo: bool = False) -> "Tmux":
        return cls(socket=environ.get(SOCKET_ENV) or None, sudo=sudo, tmpdir=environ.get("TMUX_TMPDIR") or "/tmp")

    @property
    def server_socket(self) -> str:
        """The server's socket: $KUBENET_TMUX_SOCKET (root's beside it), else tmux's default one
        of the user (or of root: sudo clears TMUX_TMPDIR)."""
        if self.socket:
            return f"{self.socket}{ROOT_SOCKET_SUFFIX}" if self.sudo else self.socket
        if self.sudo:
            return "/tmp/tmux-0/default"
        return os.path.join(self.tmpdir, f"tmux-{os.getuid()}", "default")

    @property
    def is_default(self) -> bool:
        return self.socket is None

    def argv(self, commands: list[list[str]], asking: bool = False) -> list[str]:
        """The tmux command; `asking` (for the user to type, so shown as plainly as it works)
        lets sudo ask for a password, and leaves out the user's own default socket."""
        where = [] if asking and self.is_default else ["-S", self.server_socket]
        tmux = ["tmux", *where, *join(commands)]
        return ["sudo", *([] if asking else ["-n"]), *absolute_program(tmux)] if self.sudo else tmux

    def run(self, commands: list[list[str]], doing: str | None = None) -> str:
        """Run a command sequence; a failure says what kubenet was `doing` and what tmux said,
        in one line (not the whole batched command)."""
        if self.is_default and not self.sudo:
            # tmux makes its directory for a default server, not for one named with -S
            os.makedirs(os.path.dirname(self.server_socket), mode=0o700, exist_ok=True)
        done = run(self.argv(commands), check=False, missing_hint=TMUX_HINT)
        if done.code != 0:
            said = (done.stderr.strip() or done.stdout.strip() or f"exit code {done.code}").splitlines()[-1]
            raise errors.LaunchError(f"tmux failed {doing or 'running ' + commands[0][0]} (server {self.server_socket}): {said}")
        return done.stdout

    def run_groups(self, groups: list["Group"], doing: str) -> None:
        for batch in batches(groups):
            self.run(batch, doing)

    def server_has(self, session: str) -> bool:
        """Whether `session` may exist, judged without starting a process: no server socket, no session."""
        if self.sudo and self.is_default:
            return True  # root's default socket is not ours to see: ask
        return os.path.exists(self.server_socket)

    def panes(self, session: str) -> list[Pane]:
        """The session's panes, with kubenet's marks; none when the session (or the server) does
        not exist. One `tmux list-panes`, not libtmux: `ls` and `up` read sessions, and
        importing libtmux alone costs them about 95 ms (measured by `make bench`), twice the
        budget of `ls` over a bare task."""
        if not self.server_has(session):
            return []
        done = run(self.argv([["list-panes", "-s", "-t", f"={session}", "-F", PANE_FORMAT]]), check=False, missing_hint=TMUX_HINT)
        return [parse_pane(line) for line in done.stdout.splitlines() if line] if done.code == 0 else []

    def session_owner(self, name: str) -> str | None:
        """Whose session `name` is (its owner mark, "" if it has none); None if there is no such session."""
        panes = self.panes(name)
        return panes[0].owner if panes else None

    def pane_text(self, pane_id: str, lines: int = 40) -> str:
        """What a pane shows, its last `lines` lines included (a dead pane keeps its program's last words)."""
        # -J: a line the pane wrapped comes back whole, not cut in the middle of a word
        done = run(self.argv([["capture-pane", "-p", "-J", "-t", pane_id, "-S", f"-{lines}"]]), check=False, missing_hint=TMUX_HINT)
        return done.stdout if done.code == 0 else ""

    def last_words(self, session: str) -> dict[str, str]:
        """For each VM whose pane in `session` is dead: the last lines its qemu printed."""
        return {vm: words for vm, (_, words) in self.exits(session).items()}

    def exits(self, session: str) -> dict[str, tuple[int | None, str]]:
        """For each VM whose pane in `session` is dead: its qemu's exit status and last lines."""
        if not self.server_has(session):
            return {}
        for _ in range(10):
            # tmux sees a pane die (its terminal closes) before it learns how, and it may leave
            # its child unreaped for a while (tmux 3.3); Linux keeps a zombie's status meanwhile
            dead = [with_zombie_status(pane) for pane in self.panes(session) if pane.dead and pane.vm]
            if all(pane.dead_status is not None or pane.dead_signal is not None for pane in dead):
                break
            time.sleep(0.05)
        return {pane.vm: (pane.dead_status, last_words(self.pane_text(pane.id))) for pane in dead}

    def kill_session(self, name: str) -> None:
        self.run([["kill-session", "-t", f"={name}"]])

    def remove_own_session(self, name: str, ours: Callable[[str], bool]) -> str | None:
        """Kill the session `name` only if its owner mark says `ours`: "removed", "foreign"
        (left alone), or None (there is none). The user's server is asked through libtmux,
        the session as an object (found, read, killed: `down` and `destroy`, where its import
        is small against powering VMs off); root's, which libtmux cannot reach through sudo,
        in batched calls."""
        if self.sudo:
            owner = self.session_owner(name)
            if owner is not None and ours(owner):
                self.kill_session(name)
            return None if owner is None else "removed" if ours(owner) else "foreign"
        if not self.server_has(name):
            return None
        import libtmux
        from libtmux import exc

        try:
            session = libtmux.Server(socket_path=self.server_socket).sessions.get(session_name=name, default=None)
            if session is None:
                return None
            if not ours(session.show_option(SESSION_OPTION) or ""):
                return "foreign"
            session.kill()
        except exc.LibTmuxException as failed:
            raise errors.LaunchError(f"tmux failed removing session {name} (server {self.server_socket}): {failed}") from None
        return "removed"

    def serves(self, environ=os.environ) -> bool:
        """Whether this is the server of the tmux session we are typed in ($TMUX)."""
        inside = environ.get("TMUX", "").split(",")[0]
        return bool(inside) and os.path.realpath(inside) == os.path.realpath(self.server_socket)

    def attach_command(self, session: str, window: str | None, inside_tmux: bool) -> list[str]:
        """`attach`, or `switch-client` from inside tmux, where attach would nest."""
        target = f"={session}:{window}" if window else f"={session}"
        return ["switch-client" if inside_tmux else "attach-session", "-t", target]

    def bind_sync_key(self) -> None:
        """prefix + C-s toggles synchronize-panes in kubenet's sessions, unless the user bound C-s already."""
        bound = self.run([["list-keys", "-T", "prefix"]])
        mine = [line for line in bound.splitlines() if f" {SYNC_KEY} " in line]
        if not mine or any(SESSION_OPTION in line for line in mine):
            self.run(sync_key_commands())


def last_words(text: str, count: int = 3) -> str:
    """The last lines a program printed before its pane died, without tmux's own notice, one
    a line (`one_line` puts them on one)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Pane is dead")]
    return "\n".join(lines[-count:]) or "no output"


def one_line(words: str) -> str:
    """Last words for a line of their own: their lines joined by ' | '."""
    return " | ".join(words.splitlines())


def join(commands: list[list[str]]) -> list[str]:
    """One argv for a command sequence; a trailing ';' in an argument would split it, so escape it."""
    argv: list[str] = []
    for command in commands:
        if argv:
            argv.append(";")
        argv += [arg + " " if arg.endswith(";") else arg for arg in command]
    return argv


def parse_pane(line: str) -> Pane:
    fields = line.split("\t", 8)
    pane_id, window_id, window_name, dead, pid, status, signal, vm, owner = fields + [""] * (9 - len(fields))  # empty marks may lose their tabs
    number = lambda text: int(text) if text.isdigit() else None  # noqa: E731
    return Pane(pane_id, window_id, window_name, dead == "1", int(pid or 0), number(status), number(signal), vm, owner)


Group = list[list[str]]  # commands that must reach tmux in one call, in order


def pane_commands(pane: PaneSpec) -> list[list[str]]:
    """Mark the current pane as the VM's."""
    return [["set-option", "-p", VM_OPTION, pane.vm], ["select-pane", "-T", pane.vm]]


def targeted(commands: list[list[str]], target: str) -> list[list[str]]:
    """The same commands aimed at `target` instead of the sequence's current window or pane."""
    return [[command[0], "-t", target, *command[1:]] for command in commands]


def window_options(remain_on_exit: bool) -> list[list[str]]:
    commands = [
        ["set-option", "-w", "pane-border-status", "top"],
        ["set-option", "-w", "pane-border-format", " #{" + VM_OPTION + "} "],
    ]
    if remain_on_exit:
        commands.append(["set-option", "-w", "remain-on-exit", "on"])
    return commands


def split_groups(panes: tuple[PaneSpec, ...] | list[PaneSpec], layout: str, target: str) -> list[Group]:
    """One split of `target` per pane; the new pane is current for the commands after its split,
    and re-tiling after every split leaves room for the next."""
    return [
        [["split-window", "-t", target, *pane.command], *pane_commands(pane), ["select-layout", "-t", target, layout]]
        for pane in panes
    ]


def window_groups(session: str, window: WindowSpec, remain_on_exit: bool, create: list[str]) -> list[Group]:
    """Create a window with `create` (whose last arguments run its first pane) and fill it."""
    target = f"={session}:{window.name}"
    first = [create, *targeted(window_options(remain_on_exit) + pane_commands(window.panes[0]), target)]
    return [first, *split_groups(window.panes[1:], window.layout, target)]


def session_groups(spec: SessionSpec, columns: int = SESSION_COLUMNS, rows: int = SESSION_ROWS) -> list[Group]:
    """Every tmux command that builds `spec`. Windows are named, never numbered."""
    groups: list[Group] = []
    for index, window in enumerate(spec.windows):
        if index == 0:
            create = ["new-session", "-d", "-s", spec.name, "-n", window.name, "-x", str(columns), "-y", str(rows)]
        else:
            create = ["new-window", "-d", "-t", f"={spec.name}:", "-n", window.name]
        groups += window_groups(spec.name, window, spec.remain_on_exit, [*create, *window.panes[0].command])
        if index == 0:
            groups[0].append(["set-option", "-t", f"={spec.name}:", SESSION_OPTION, spec.owner or "1"])  # "=name" alone would name a window
    if spec.attach_window and spec.attach_window != spec.windows[0].name:
        groups.append([["select-window", "-t", f"={spec.name}:{spec.attach_window}"]])
    return groups


def batches(groups: list[Group], limit: int = MESSAGE_LIMIT) -> list[list[list[str]]]:
    """Pack groups into as few tmux calls as its message size allows."""
    packed: list[list[list[str]]] = []
    size = limit
    for group in groups:
        group_size = sum(len(arg) + 2 for command in group for arg in command)
        if size + group_size > limit:
            packed.append([])
            size = 0
        packed[-1] += group
        size += group_size
    return packed


def sync_key_commands() -> list[list[str]]:
    """prefix + C-s toggles synchronize-panes in kubenet's sessions and does nothing elsewhere."""
    toggle = "set-window-option synchronize-panes; display-message 'synchronize-panes #{?synchronize-panes,on,off}'"
    return [["bind-key", SYNC_KEY, "if-shell", "-F", "#{" + SESSION_OPTION + "}", toggle]]


# Panes inherit the umask of the tmux server, which may be anyone's; qemu's pid
# file and QMP socket must be private, so sh sets it, then becomes the program.
PRIVATE_EXEC = 'umask 077 && exec "$0" "$@"'


def pane_command(argv: list[str]) -> tuple[str, ...]:
    """What a pane runs: the program, under a private umask, with its pid the pane's
    (sh execs it; tmux runs a command given as several arguments without a shell of
    its own). An argument ending in ';' would split tmux's command sequence, so such
    a command is passed to sh as one quoted line instead."""
    if any(arg.endswith(";") for arg in argv):
        return ("sh", "-c", "umask 077 && exec " + shlex.join(argv))
    return ("sh", "-c", PRIVATE_EXEC, *argv)


def extend_groups(session: str, panes: list[Pane], commands: dict[str, tuple[str, ...]]) -> list[Group]:
    """Restart dead panes in place and add panes for VMs that have none, never over a window's room."""
    groups: list[Group] = []
    dead = {pane.vm: pane for pane in panes if pane.dead}
    new = []
    for vm, command in commands.items():
        if vm in dead:
            groups.append([["respawn-pane", "-k", "-t", dead[vm].id, *command]])
        else:
            new.append(PaneSpec(vm, command))
    counts: dict[str, int] = {}
    for pane in panes:
        counts[pane.window_id] = counts.get(pane.window_id, 0) + 1
    for window_id, count in counts.items():
        room = max(0, window_capacity() - count)
        groups += split_groups(new[:room], "tiled", window_id)
        new = new[room:]
    for window in more_qemu_windows({pane.window_name for pane in panes}, new):
        create = ["new-window", "-d", "-t", f"={session}:", "-n", window.name, *window.panes[0].command]
        groups += window_groups(session, window, True, create)
    return groups


def missing_pane_groups(spec: SessionSpec, panes: list[Pane]) -> list[Group]:
    """What an existing session lacks of `spec` (a grown cluster; a pane closed by a logout):
    each missing pane split into its window, a missing window made whole."""
    groups: list[Group] = []
    present = {(pane.window_name, pane.vm) for pane in panes}
    windows = {pane.window_name: pane.window_id for pane in panes}
    for window in spec.windows:
        missing = [pane for pane in window.panes if (window.name, pane.vm) not in present]
        if not missing:
            continue
        if window.name in windows:
            groups += split_groups(missing, window.layout, windows[window.name])
        else:
            whole = WindowSpec(window.name, window.layout, tuple(missing))
            create = ["new-window", "-d", "-t", f"={spec.name}:", "-n", window.name, *missing[0].command]
            groups += window_groups(spec.name, whole, spec.remain_on_exit, create)
    return groups
