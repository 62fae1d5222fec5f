"""The cluster over several hosts: what the controlling checkout's commands do on the
other hosts that run some of its VMs (`hosts:`, and `host:` per role).

Each host runs its own VMs as one host does: kubenet there, given its copy of the
cluster file (bundle), sets them up, starts them in its own `<cluster>-qemu` session,
waits until they are ready, stops them, lists them. The controlling kubenet asks every
host at once, over each host's shared SSH connection (remote), shows what each said
under its name, and joins the hosts' switches into one segment with VDE cables (cable).
A host that does not answer in time is `unreachable`: its VMs are listed as such, and a
command that needed it says so and fails, after doing what it could elsewhere.
"""

from __future__ import annotations

import json
from typing import Callable

from ..model.cluster import LOCAL, VM, Cluster, NetworkMode, RemoteHost
from ..plumbing import errors
from ..plumbing.parallel import for_each
from ..prepare.sshkeys import ALIAS_PREFIX
from .remote import Answer, run_on

SETUP_SECONDS = 3600.0  # a host may download and verify the base image itself
MARGIN_SECONDS = 60.0  # beyond a host's own bound (its --timeout), for SSH and kubenet's start there


def relay(host: RemoteHost, say: Callable[[str], None]) -> Callable[[str], None]:
    """A host's progress lines, each under its name."""
    return lambda line: say(f"kubenet: on {host.name}: {line.removeprefix('kubenet: ')}")


def refuse_failures(answers: list[Answer], what: str) -> None:
    """One line for every host that failed, with the hint for the first kind of failure found."""
    failed = [answer for answer in answers if not answer.ok]
    if failed:
        said = "; ".join(f"{answer.host}: {'unreachable: ' if not answer.reachable else ''}{answer.reason()}" for answer in failed)
        raise errors.RemoteError(f"{what} failed on {len(failed)} host{'s' if len(failed) > 1 else ''}: {said}", failure_hint(failed))


def failure_hint(failed: list[Answer]) -> str:
    """What to do: pin a host key never seen, install kubenet where it is missing, else look as kubenet does."""
    unseen = next((answer.host for answer in failed if "Host key verification failed" in answer.stderr), None)
    if unseen:
        return f"kubenet never accepts a host key it has not seen: ssh to {unseen} once by hand to check and keep its key, or point its known_hosts: at a file that holds it"
    missing = next((answer.host for answer in failed if answer.code == 127), None)  # the remote shell found no such program
    if missing:
        return f"install kubenet on {missing} (docs/several-hosts.md), or give its path there as hosts.{missing}.kubenet"
    return f"look with `ssh -F <state_dir>/ssh_config {ALIAS_PREFIX}{failed[0].host}`, as kubenet reaches it"


def here_and_there(jobs: list, work: Callable, what: str, say: Callable[[str], None]) -> None:
    """`work(None)` for this host, in this thread (so its own Ctrl-C handling is as on one
    host), while `work(name)` (a list of answers) runs for each other host in a thread of
    its own; then this host's error if it had one (the others' failures said first), else
    the others' failures."""
    import threading

    results: dict = {}

    def guarded(job):
        try:
            results[job] = work(job)
        except errors.KubenetError as error:
            results[job] = error

    threads = [threading.Thread(target=guarded, args=(job,), daemon=True) for job in jobs if job is not None]
    for thread in threads:
        thread.start()
    guarded(None)
    for thread in threads:
        while thread.is_alive():
            thread.join(0.1)  # short joins: a Ctrl-C is heard at once
    others = [results.get(job) for job in jobs if job is not None]
    answers = [answer for result in others if isinstance(result, list) for answer in result]
    failures = [result for result in others if isinstance(result, errors.KubenetError)]
    if isinstance(results[None], errors.KubenetError):
        try:
            refuse_failures(answers, what)
        except errors.RemoteError as remote:
            say(f"kubenet: error: {remote.message}")
        raise results[None]
    if failures:
        raise failures[0]
    refuse_failures(answers, what)


def id_options(vms: list[VM]) -> list[str]:
    return [word for vm in vms for word in ("--id", str(vm.id))]


# ---- make setup ----------------------------------------------------------------------------


def setup_hosts(cluster: Cluster, say: Callable[[str], None]) -> None:
    """Send each host its files, have it set its VMs up, and pin the host keys it made."""
    from .bundle import members, pack

    hosts = cluster.placed_hosts()
    if not hosts:
        say("kubenet: no VMs are placed on other hosts; nothing to send")
        return

    def setup(host: RemoteHost) -> Answer:
        return run_on(cluster, host, "host-setup", timeout=SETUP_SECONDS, input=pack(members(cluster, host)), relay=relay(host, say))

    answers = for_each(hosts, setup)
    for host, answer in zip(hosts, answers):
        if answer.ok:
            pin_host_keys(cluster, host, answer.stdout)
    from ..prepare.sshkeys import write_ssh_files

    for path in write_ssh_files(cluster, NetworkMode.USER):
        say(f"kubenet: wrote {path}")
    refuse_failures(answers, "setup")


def pin_host_keys(cluster: Cluster, host: RemoteHost, said: str) -> None:
    """Keep the public host keys a host says its VMs have (only its own VMs', well-formed)."""
    from ..plumbing.fsutil import write_atomic
    from ..model.paths import vm_paths
    from ..store.statedir import ensure_state, vm_dir

    try:
        keys = json.loads(said)
    except ValueError:
        raise errors.RemoteError(f"{host.name}: its setup did not answer with its VMs' host keys", "run the same kubenet on both hosts") from None
    ensure_state(cluster)
    for vm in cluster.vms:
        key = keys.get(vm.name) if isinstance(keys, dict) else None
        if vm.host == host.name and isinstance(key, str) and key.startswith("ssh-ed25519 ") and "\n" not in key:
            vm_dir(cluster, vm)
            public = vm_paths(cluster, vm).host_key
            write_atomic(public.with_name(public.name + ".pub"), (key.strip() + "\n").encode(), 0o644)


def host_setup(config: str, stream, say: Callable[[str], None]) -> dict[str, str]:
    """On a host: take in what the controlling host sent, set this host's VMs up (base
    image, disks, seeds, host keys), and give back their public host keys."""
    if stream.isatty():
        raise errors.KubenetError("host-setup reads what the controlling host sends on its input", "it is run by `make setup` on the controlling host, over SSH")
    from pathlib import Path

    from .bundle import unpack
    from ..model.config import load_cluster
    from ..model.paths import ssh_config_path
    from ..prepare.vmsetup import prepare_cluster
    from ..prepare.sshkeys import ensure_host_login_key, read_host_key_public
    from ..store.statedir import check_state
    from ..machine.target import resolve_target

    unpack(stream, Path(config).absolute().parent)
    cluster = load_cluster(Path(config))
    check_state(cluster)
    if cluster.here == LOCAL:
        raise errors.SetupError(f"{config} is not a copy sent to a host (it has no `here:`)")
    ensure_host_login_key(cluster)
    target = resolve_target(cluster)
    if cluster.image.url:
        from ..prepare.image import fetch_image

        fetch_image(cluster, target.host, say=say)
    plan = host_plan(cluster, target)
    prepare_cluster(cluster, target, plan, any(plan.values()) or not ssh_config_path(cluster).is_file(), say)
    return {vm.name: key for vm in cluster.local_vms if (key := read_host_key_public(cluster, vm.name))}


def host_plan(cluster: Cluster, target) -> dict[VM, list[str]]:
    """What this host's VMs lack, as make decides it on the controlling host: a disk that is
    missing, a seed that is missing or would now be made differently (so a second `make up`
    rewrites nothing)."""
    from ..model.host import needs_efivars
    from ..model.paths import vm_paths
    from ..prepare.vmsetup import read_seed_inputs, seed_is_current

    inputs = read_seed_inputs(cluster)
    efivars = needs_efivars(cluster, target.host)
    plan = {}
    for vm in cluster.local_vms:
        paths = vm_paths(cluster, vm)
        disk = paths.disk.exists() and (paths.efivars.exists() or not efivars)
        plan[vm] = ([] if disk else ["disk"]) + ([] if seed_is_current(cluster, target, vm, inputs) else ["seed"])
    return plan


# ---- up, start -----------------------------------------------------------------------------


def start_cables(cluster: Cluster, say: Callable[[str], None]) -> None:
    from . import cable

    for host in cluster.placed_hosts():
        cable.start(cluster, host, say)


def up_hosts(cluster: Cluster, chosen: dict[str, list[VM]], options: list[str], timeout: float | None, say: Callable[[str], None]) -> list[Answer]:
    """`up` of the chosen VMs on each host, every host at once; `options` as the user gave them."""
    bound = (timeout if timeout is not None else SETUP_SECONDS) + MARGIN_SECONDS
    hosts = [cluster.remote_host(name) for name in chosen]
    return for_each(hosts, lambda host: run_on(cluster, host, "up", *id_options(chosen[host.name]), *options, timeout=bound, relay=relay(host, say)))


# ---- down, stop ----------------------------------------------------------------------------


def stop_cables(cluster: Cluster, say: Callable[[str], None]) -> None:
    from . import cable

    for host in cluster.hosts:
        cable.stop(cluster, host, say)


def down_hosts(
    cluster: Cluster, chosen: dict[str, list[VM]], whole: bool, timeout: float, say: Callable[[str], None], task: str = "down"
) -> list[Answer]:
    """`down` on each host: of the chosen VMs, or (`whole`) of all it runs, orphans too;
    or `stop` of the one VM chosen (its pane stays)."""
    hosts = [cluster.remote_host(name) for name in chosen]

    def down(host: RemoteHost) -> Answer:
        ids = [] if whole else id_options(chosen[host.name])
        return run_on(cluster, host, task, *ids, "--timeout", f"{timeout:g}", timeout=timeout + MARGIN_SECONDS, relay=relay(host, say))

    return for_each(hosts, down)


def end_connections(cluster: Cluster) -> None:
    from .remote import stop_shared

    for host in cluster.placed_hosts():
        stop_shared(cluster, host)


# ---- ls ------------------------------------------------------------------------------------


def reset_there(cluster: Cluster, vm: VM, confirm: Callable[[str], bool], say: Callable[[str], None]) -> None:
    """`reset` of a VM another host runs: asked here, done there."""
    host = cluster.remote_host(vm.host)
    if not confirm(f"delete {vm.name}'s disk and UEFI variables on {host.name}, so that the next setup makes it afresh?"):
        raise errors.KubenetError("reset cancelled; nothing was deleted")
    refuse_failures([run_on(cluster, host, "reset", "--id", str(vm.id), "--yes", timeout=MARGIN_SECONDS, relay=relay(host, say))], "reset")


def destroy_there(cluster: Cluster, confirm: Callable[[str], bool], say: Callable[[str], None], snapshots: bool) -> bool:
    """`destroy` on every other host first: only once each has destroyed its part does this
    host's state_dir go (with it the ssh_config that reaches them). True: confirmed."""
    hosts = cluster.placed_hosts()
    names = ", ".join(host.name for host in hosts)
    if not confirm(f"destroy cluster {cluster.name} on {names} and here: power off its VMs and delete every VM's disk and data?"):
        raise errors.KubenetError("destroy cancelled; nothing was deleted")
    stop_cables(cluster, say)
    options = ["--yes", *(["--snapshots"] if snapshots else [])]
    answers = for_each(hosts, lambda host: run_on(cluster, host, "destroy", *options, timeout=SETUP_SECONDS, relay=relay(host, say)))
    try:
        refuse_failures(answers, "destroy")
    except errors.RemoteError as failed:
        raise errors.RemoteError(f"{failed.message}; nothing was destroyed here", "run `invoke destroy` again once every host answers") from None
    end_connections(cluster)
    return True


