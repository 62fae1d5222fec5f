"""Glue between invoke tasks and the library: option parsing, VM selection, output.

Kept free of heavy imports: `invoke ls` and `invoke argv` run in pipelines.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

from . import errors
from .cluster import VM, Cluster


def user_errors(function: Callable) -> Callable:
    """Every error a user can cause becomes one line on stderr and a non-zero exit, no traceback.

    A closed stdout (`invoke ls | head -1`) ends the task at once and quietly,
    with the exit status of a process killed by SIGPIPE, as other tools do.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from invoke import Exit

        try:
            try:
                result = function(*args, **kwargs)
                sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
                return result
            except errors.KubenetError as error:
                fail(str(error))
            except UnicodeError as error:
                fail(f"text that is not UTF-8: {error}", "save your files (cluster.yaml, templates, keys) as UTF-8")
            except BrokenPipeError:
                raise
            except OSError as error:
                fail(*describe_os_error(error))
            except KeyboardInterrupt:
                print("kubenet: interrupted", file=sys.stderr, flush=True)
                raise Exit(code=130) from None
        except BrokenPipeError:
            silence_output()
            raise Exit(code=SIGPIPE_STATUS) from None

    return wrapper


SIGPIPE_STATUS = 128 + 13  # what a shell reports for a process killed by SIGPIPE


def fail(message: str, hint: str | None = None) -> None:
    """Print the one-line error and exit 1."""
    from invoke import Exit

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
    import errno

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
    import math

    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise errors.KubenetError(f"{option} {text!r} is not a number of seconds", f"e.g. {option} {default:g}") from None
    if not math.isfinite(value) or value < 0:
        raise errors.KubenetError(f"{option} {text!r} is not a number of seconds", f"give 0 or more, e.g. {option} {default:g}")
    return value


def open_cluster(config: str | None) -> Cluster:
    from .config import config_path, load_cluster

    return load_cluster(config_path(config))


def pick_vms(cluster: Cluster, ids: Iterable[str] = (), names: Iterable[str] = (), roles: Iterable[str] = ()) -> list[VM]:
    """The VMs named by --id/--name/--role options, in cluster order; all of them when none is given."""
    ids, names, roles = list(ids or ()), list(names or ()), list(roles or ())
    if not ids and not names and not roles:
        return list(cluster.vms)
    chosen = {pick_vm(cluster, vm_id, None).id for vm_id in ids}
    chosen |= {pick_vm(cluster, None, name).id for name in names}
    for role in roles:
        members = cluster.vms_of_role(role)
        if not members:
            known = ", ".join(r.name for r in cluster.roles)
            raise errors.UnknownVMError(f"no VMs of role {role!r} in {cluster.source}; roles are {known}")
        chosen |= {vm.id for vm in members}
    return [vm for vm in cluster.vms if vm.id in chosen]


def pick_vm(cluster: Cluster, vm_id: str | int | None, name: str | None) -> VM:
    last = cluster.vms[-1].id
    if vm_id is None and not name:
        raise errors.UnknownVMError("give a VM with --id N or --name NAME", f"ids are 0-{last}; `invoke ls` lists them")
    if vm_id is not None and name:
        raise errors.UnknownVMError("give either --id or --name, not both")
    if name:
        vm = cluster.vm_by_name(name)
        if vm is None:
            raise errors.UnknownVMError(
                f"no VM named {name!r} in {cluster.source}; names are {', '.join(v.name for v in cluster.vms)}"
            )
        return vm
    text = str(vm_id).strip()
    vm = cluster.vm_by_id(int(text)) if text.isascii() and text.isdigit() else None
    if vm is None:
        raise errors.UnknownVMError(f"no VM with id {text!r} in {cluster.source}; ids are 0-{last}")
    return vm


def pick_host(described: str | None = None, cluster: Cluster | None = None, accel_option: str | None = None):
    """This machine, probed, or the kind of machine named by --host.

    The accelerator is probed (by running qemu) only for tasks that build a
    qemu command (they pass `cluster`) and only when no override chooses it.
    """
    from .host import ACCEL_ENV, host_profile, probe_host

    if described:
        return host_profile(described)
    from .paths import cache_dir

    chosen = cluster is None or bool(accel_option or os.environ.get(ACCEL_ENV) or cluster.accel)
    firmware_needed = cluster is None or cluster.image.kind == "cloud"
    return probe_host(accel_chosen=chosen, firmware_needed=firmware_needed, cache=cache_dir() / "probe")


def effective_accel(cluster: Cluster, host, accel_option: str | None) -> str:
    from .host import choose_accel

    return choose_accel(host, cluster.accel, os.environ, accel_option)


def vm_argv(cluster: Cluster, vm: VM, host, accel: str, managed: bool = False) -> list[str]:
    from .launch import management_for
    from .network import resolve_mode
    from .qemu import qemu_argv

    management = management_for(cluster, vm) if managed else None
    return qemu_argv(cluster, vm, host, accel, resolve_mode(cluster.network, host), management)


def vm_rows(cluster: Cluster, mode: str) -> list[dict]:
    from .lifecycle import vm_state
    from .network import ssh_endpoint

    states = {vm.name: vm_state(cluster, vm) for vm in cluster.vms}
    return [
        {
            "id": vm.id,
            "name": vm.name,
            "role": vm.role,
            "vcpus": vm.vcpus,
            "memory": vm.memory,
            "mac": vm.mac,
            "ip": str(vm.ip),
            "ssh": str(ssh_endpoint(cluster.network, mode, vm)),
            "state": "running" if states[vm.name].running else "stopped",
            "pid": states[vm.name].pid,
            "ready": states[vm.name].ready,
        }
        for vm in cluster.vms
    ]


def format_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    cells = [["-" if row[h] is None else str(row[h]).lower() if isinstance(row[h], bool) else str(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = [[h.upper() for h in headers], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def format_json(rows: list[dict]) -> str:
    import json

    return json.dumps(rows, indent=2)


def shell_line(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def say(message: str) -> None:
    """Progress for people goes to stderr; stdout is for data (written first, so a closed pipe ends us here)."""
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)


def setup_context(cluster: Cluster, host):
    from .image import base_image_path
    from .network import resolve_mode
    from .vmsetup import SetupContext

    base = base_image_path(cluster, host) if cluster.image.url else None
    return SetupContext(cluster=cluster, host=host, mode=resolve_mode(cluster.network, host), base_image=base)


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on a terminal; elsewhere only --yes says yes."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise errors.KubenetError(f"{question} needs confirmation", "pass --yes to confirm without a terminal")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def make_variables(cluster: Cluster, host) -> str:
    """Make variable assignments describing the cluster, for the Makefile's per-VM rules.

    Every path is checked to be one that make takes literally: make has no quoting,
    so `$`, `#`, `%`, `:`, whitespace and the like would be read as make syntax.
    """
    from .seed import template_paths
    from .sshkeys import login_key_path
    from .vmsetup import needs_efivars

    context = setup_context(cluster, host)
    paths = {
        "state_dir": [cluster.state_dir],
        "image.url": [context.base_image] if context.base_image else [],
        "templates": template_paths(cluster),
        "ssh_key": [login_key_path(cluster)],
        # the seed is also remade when the code that writes it changes
        "the kubenet checkout": [Path(__file__).with_name("seed.py")],
    }
    for key, values in paths.items():
        for path in values:
            check_make_path(key, path)
    values = {
        "KUBENET_STATE": str(cluster.state_dir),
        "KUBENET_VMS": " ".join(vm.name for vm in cluster.vms),
        "KUBENET_BASE_IMAGE": str(context.base_image or ""),
        "KUBENET_SEED_INPUTS": " ".join(str(p) for key in ("templates", "ssh_key", "the kubenet checkout") for p in paths[key]),
        "KUBENET_EFIVARS": "yes" if needs_efivars(cluster, host) else "",
    }
    return "".join(f"{name} := {value}\n" for name, value in values.items())


MAKE_SAFE_PUNCTUATION = frozenset("/._-+,@~")


def check_make_path(key: str, path: Path) -> None:
    """Refuse a path that make would not read as a plain file name."""
    text = str(path)
    bad = sorted({char for char in text if not (char.isalnum() or char in MAKE_SAFE_PUNCTUATION)})
    if bad:
        shown = " ".join(repr(char) for char in bad)
        raise errors.SetupError(
            f"{key}: {text!r} has characters that make cannot take in a file name: {shown}",
            "use a path of letters, digits and / . _ - + , @ ~ (or run the invoke tasks without make)",
        )


def launch_and_wait(cluster: Cluster, vms: list[VM], host, accel: str, timeout: float | None) -> None:
    """Start what is not running, then (unless timeout is None) wait for SSH and report."""
    from .launch import launch_cluster

    result = launch_cluster(cluster, vms, host, accel)
    attach = f"{'sudo ' if result.sudo else ''}tmux attach -t {result.session}"
    if result.started:
        say(f"kubenet: started {' '.join(result.started)} in tmux session {result.session} (watch: {attach})")
    if result.already_running:
        say(f"kubenet: already running: {' '.join(result.already_running)}")
    if timeout is None:
        return
    from .network import resolve_mode
    from .ready import summary, wait_ready

    mode = resolve_mode(cluster.network, host)

    def report(readiness) -> None:
        if readiness.ready:
            say(f"kubenet: {readiness.vm} ready after {readiness.seconds:.1f} s")

    waiting = [vm for vm in vms]
    say(f"kubenet: waiting up to {timeout:.0f} s for SSH on {len(waiting)} VMs")
    results = wait_ready(cluster, waiting, mode, timeout, report)
    lines = summary(cluster, results)
    for line in lines:
        say(f"kubenet: {line}")
    if not all(r.ready for r in results):
        raise errors.LaunchError(f"{sum(not r.ready for r in results)} VMs did not become ready", "read their console logs named above")


def ssh_session(cluster: Cluster, attach: bool) -> None:
    from .launch import bind_sync_key
    from .layout import check_ours
    from .layout import ssh_session as layout
    from .paths import ssh_config_path
    from .run import replace_process
    from .tmux import TMUX_HINT, Tmux, session_groups

    tmux = Tmux.from_environment()
    spec = layout(cluster, ssh_config_path(cluster).absolute())
    window = None  # an existing session is attached as the user left it
    owner = tmux.session_owner(spec.name)
    check_ours(cluster, spec.name, owner)
    if owner is None:
        if not ssh_config_path(cluster).exists():
            raise errors.SetupError(f"{ssh_config_path(cluster)} does not exist", "run `make up` (or `make setup`) first")
        tmux.run_groups(session_groups(spec))
        window = spec.attach_window
        say(f"kubenet: opened tmux session {spec.name}")
    bind_sync_key(tmux)
    if not attach:
        print(spec.name)
        return
    inside = bool(os.environ.get("TMUX"))
    argv = tmux.attach_argv(spec.name, window, inside)
    if inside and tmux.socket is None:
        tmux.run([argv[-3:]])  # switch-client returns at once
    else:
        replace_process(argv, TMUX_HINT)


def ssh_one(cluster: Cluster, vm: VM) -> None:
    """An interactive session: ssh replaces this process, and may ask for a key's passphrase."""
    from .paths import ssh_config_path
    from .run import replace_process

    config = ssh_config_path(cluster).absolute()
    if not config.exists():
        raise errors.SetupError(f"{config} does not exist", "run `make up` (or `make setup`) first")
    replace_process(["ssh", "-F", str(config), vm.name], "install OpenSSH (`apt install openssh-client`)")


def exec_everywhere(cluster: Cluster, vms: list[VM], command: str) -> None:
    from .remote import run_everywhere

    if not command.strip():
        raise errors.KubenetError("no command given", "put it after `--`, e.g. invoke exec --role worker -- uname -a")
    results = run_everywhere(cluster, vms, command)
    failed = [r for r in results if r.exit_code != 0]
    ok = len(results) - len(failed)
    say(f"kubenet: exec: {ok} of {len(results)} VMs succeeded" + "".join(f"; {r.vm} exited {r.exit_code}" for r in failed))
    if failed:
        from invoke import Exit

        raise Exit(code=1)


def shut_down(cluster: Cluster, vms: list[VM], timeout: float, cleanup: bool) -> None:
    """Power VMs off in parallel; with cleanup and every VM down, remove sessions and the switch."""
    import threading

    from .layout import is_ours, qemu_session_name, ssh_session_name
    from .lifecycle import power_off, qemu_pid
    from .network import needs_root, resolve_mode
    from .tmux import Tmux

    lock = threading.Lock()

    def stop(vm: VM) -> None:
        how = power_off(cluster, vm, timeout)
        with lock:
            say(f"kubenet: {vm.name}: {how}")

    threads = [threading.Thread(target=stop, args=(vm,)) for vm in vms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    still = [vm.name for vm in vms if qemu_pid(cluster, vm) is not None]
    if still:
        raise errors.LaunchError(f"still running: {' '.join(still)}", "if they were started with sudo, stop them with sudo too")
    if cleanup and all(qemu_pid(cluster, vm) is None for vm in cluster.vms):
        host = pick_host()
        mode = resolve_mode(cluster.network, host)
        for tmux, session in (
            (Tmux.from_environment(sudo=needs_root(mode, host)), qemu_session_name(cluster)),
            (Tmux.from_environment(), ssh_session_name(cluster)),
        ):
            owner = tmux.session_owner(session)
            if owner is not None and is_ours(cluster, owner):
                tmux.kill_session(session)
                say(f"kubenet: removed tmux session {session}")
            elif owner is not None:
                say(f"kubenet: left tmux session {session} alone: it is not this cluster's")
        from .vde import stop_switch

        if stop_switch(cluster):
            say("kubenet: stopped the VDE switch")
