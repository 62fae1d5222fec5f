"""kubenet tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Each task parses its options and calls plain functions in the kubenet package;
heavy modules are imported inside tasks so that pipeline tasks start fast.
"""

from functools import partial

import invoke

# Long options only: invoke's automatic short flags would make -h mean --host in one
# task and --ssh in another, where users expect help.
task = partial(invoke.task, auto_shortflags=False)

from kubenet import cli
from kubenet.cli import user_errors

CONFIG_HELP = "cluster file (default: $KUBENET_CONFIG or ./cluster.yaml)"
ID_HELP = "VM id, as `invoke ls` shows it"
NAME_HELP = "VM name, e.g. worker1 (instead of --id)"
WAIT_HELP = "seconds to wait for every VM to be ready (default: 600)"
READY_HELP = "what ready means: ssh (SSH logs in) or cloud-init (and cloud-init has finished); default: ready in cluster.yaml, else cloud-init"
STOP_HELP = "seconds the whole shutdown may take: power button, then quit, then kill (default: 60)"
ACCEL_HELP = "accelerator: hvf, kvm or tcg (default: $KUBENET_ACCEL, then accel in cluster.yaml, then the one the VMs last ran with, then the best this host offers)"
WAIT_SECONDS, STOP_SECONDS = 600.0, 60.0


@task(help={"config": CONFIG_HELP, "json": "print a JSON array", "names": "print one VM name per line"})
@user_errors
def ls(c, config=None, json=False, names=False):
    """List the cluster's VMs: id, name, role, resources and the host memory each qemu holds, MAC, IP, SSH endpoint, state."""
    from kubenet import status

    cluster = cli.open_cluster(config)
    if names:
        print("\n".join(vm.name for vm in cluster.vms))
        return
    from kubenet.multihost import listing, spread

    rows, host_notes = listing(cluster, lambda: status.listing(cluster)) if spread(cluster) else (status.listing(cluster), [])
    if json:
        print(cli.format_json(rows))
        for line in host_notes:  # a host that did not answer is said on stderr here too
            cli.say(line)
        return
    print(cli.format_table(status.table_rows(rows)))
    for line in [*host_notes, *status.listing_notes(cluster, rows)]:
        cli.say(line)


# What `argv` and `vm` share: which VM, and how its qemu command is made.
QEMU_HELP = {
    "id": ID_HELP,
    "name": NAME_HELP,
    "config": CONFIG_HELP,
    "accel": ACCEL_HELP,
    "managed": "add the options `up` adds: QMP socket, pid file, console log",
}


@task(help={**QEMU_HELP, "host": "describe another host: darwin-arm64, linux-x86_64 or linux-aarch64"})
@user_errors
def argv(c, id=None, name=None, config=None, host=None, accel=None, managed=False):
    """Print the VM's qemu command, shell-quoted on one line."""
    import shlex

    from kubenet.launch import vm_argv
    from kubenet.target import resolve_target

    cluster = cli.open_cluster(config, state=False)
    vm = cli.pick_vm(cluster, id, name)
    print(shlex.join(vm_argv(cluster, vm, resolve_target(cluster, host, accel), managed)))


@task(help=QEMU_HELP)
@user_errors
def vm(c, id=None, name=None, config=None, accel=None, managed=False):
    """Run one VM in the foreground: qemu replaces this process (quit with Ctrl-A X)."""
    from kubenet.launch import exec_vm
    from kubenet.target import resolve_target

    from kubenet.multihost import refuse_elsewhere

    cluster = cli.open_cluster(config)
    chosen = refuse_elsewhere(cluster, cli.pick_vm(cluster, id, name), "vm")
    exec_vm(cluster, chosen, resolve_target(cluster, accel_option=accel), managed, cli.say)


@task(help={"config": CONFIG_HELP})
@user_errors
def image(c, config=None):
    """Fetch the base image into the cache and verify its SHA-256 (reuses a verified copy)."""
    from kubenet.image import fetch_image
    from kubenet.probe import probe_host

    cluster = cli.open_cluster(config, state=False)
    if not cluster.image.url:
        cli.say("kubenet: image.url is not set: no base image to fetch")
        return
    print(fetch_image(cluster, probe_host(firmware_needed=False), say=cli.say))


@task(
    iterable=["id", "name"],
    help={
        "id": "VM id (repeatable; default: every VM)",
        "name": "VM name (repeatable)",
        "config": CONFIG_HELP,
        "disk": "only the disk (and UEFI variables)",
        "seed": "only the host key and cloud-init seed",
        "ssh": "only the cluster's known_hosts and ssh_config",
        "files_from": "make exactly the files listed in this file, one a line (how make asks for what is out of date)",
    },
)
@user_errors
def vmsetup(c, id=None, name=None, config=None, disk=False, seed=False, ssh=False, files_from=None):
    """Prepare VMs: disk overlay, cloud-init seed, host key, ssh_config. Never recreates a disk."""
    from kubenet.prepare import prepare_cluster, setup_plan
    from kubenet.target import resolve_target

    cluster = cli.open_cluster(config)
    plan, ssh_files = setup_plan(cluster, cli.pick_vms(cluster, id, name), (disk, seed, ssh), files_from)
    prepare_cluster(cluster, resolve_target(cluster), plan, ssh_files, cli.say)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP, "yes": "do not ask for confirmation"})
@user_errors
def reset(c, id=None, name=None, config=None, yes=False):
    """Delete one VM's disk and UEFI variables so that the next setup makes it afresh
    (or, for an orphan no longer in cluster.yaml, so that it is gone)."""
    from kubenet.identity import orphan_named
    from kubenet.prepare import reset_vm
    from kubenet.snaprecord import holding

    cluster = cli.open_cluster(config)
    chosen = (name and id is None and orphan_named(cluster, name)) or cli.pick_vm(cluster, id, name)
    if chosen.host != cluster.here:
        from kubenet.multihost import reset_there

        reset_there(cluster, chosen, lambda question: cli.confirm(question, yes), cli.say)
        return
    snapshots = holding(cluster, chosen.name)
    deleted = reset_vm(cluster, chosen, lambda question: cli.confirm(question, yes), snapshots)
    for path in deleted:
        cli.say(f"kubenet: deleted {path}")
    if deleted and snapshots:
        cli.say(f"kubenet: snapshots {', '.join(snapshots)} can no longer be restored; `invoke snapshot rm NAME` forgets one")
    if not deleted:
        cli.say(f"kubenet: {chosen.name} had no disk; nothing deleted")


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP, "follow": "keep printing what the console writes, as tail -f",
            "since_boot": "start at the guest's last boot (a guest that rebooted logged several)"})
@user_errors
def logs(c, id=None, name=None, config=None, follow=False, since_boot=False):
    """Print a VM's console log (serial.log, written afresh at each start of its qemu)."""
    from kubenet.consolelog import show_log
    from kubenet.paths import vm_paths

    from kubenet.multihost import refuse_elsewhere

    cluster = cli.open_cluster(config)
    chosen = refuse_elsewhere(cluster, cli.pick_vm(cluster, id, name), "logs")
    show_log(vm_paths(cluster, chosen).serial_log, chosen.name, since_boot, follow)


@task(help={"config": CONFIG_HELP, "yes": "do not ask for confirmation", "snapshots": "delete the cluster's snapshots too (refused without)"})
@user_errors
def destroy(c, config=None, yes=False, snapshots=False):
    """Power every VM off and delete state_dir: disks, seeds, keys, ssh_config (the image cache stays)."""
    from kubenet.destroy import destroy_cluster
    from kubenet.target import resolve_target

    cluster = cli.open_cluster(config)
    from kubenet.multihost import destroy_there, spread

    if spread(cluster):
        yes = destroy_there(cluster, lambda question: cli.confirm(question, yes), cli.say, snapshots)
    if destroy_cluster(cluster, resolve_target(cluster), lambda question: cli.confirm(question, yes), cli.say, snapshots):
        cli.say(f"kubenet: destroyed cluster {cluster.name}: removed {cluster.state_dir}")
    else:
        cli.say(f"kubenet: {cluster.state_dir} does not exist; nothing to destroy")


@task(help={"config": CONFIG_HELP, "output": "write them to this file (atomically) instead of stdout"})
@user_errors
def makevars(c, config=None, output=None):
    """Print the cluster as Make variables (used by the Makefile's per-VM rules)."""
    from pathlib import Path

    from kubenet.fsutil import write_atomic
    from kubenet.makevars import make_variables
    from kubenet.target import resolve_target

    cluster = cli.open_cluster(config)
    text = make_variables(cluster, resolve_target(cluster))
    if output is None:
        print(text, end="")
    else:
        write_atomic(Path(output), text.encode(), 0o644)


def start_vms(config, pick, timeout, wait, ready, accel) -> None:
    """What `up` and `start` share: launch the chosen VMs, then wait until they are ready
    (those of other hosts by kubenet there, at the same time)."""
    from kubenet import multihost
    from kubenet.launch import up_and_wait
    from kubenet.snapshot import recover
    from kubenet.target import resolve_target

    cluster = cli.open_cluster(config)
    seconds = cli.parse_timeout(timeout, WAIT_SECONDS)
    until = cli.parse_ready(ready)
    target = resolve_target(cluster, accel_option=accel)
    recover(cluster, target, cli.say)  # VMs a cut-short snapshot save left paused run again
    picked = pick(cluster)
    vms, elsewhere = multihost.by_host(cluster, picked)
    if multihost.spread(cluster):
        multihost.start_cables(cluster, cli.say)
    options = ["--timeout", f"{seconds:g}", *([] if wait else ["--no-wait"]), *(["--ready", str(until)] if until else []), *(["--accel", accel] if accel else [])]
    jobs = [None, *elsewhere]

    def start(job):
        if job is None:
            return up_and_wait(cluster, vms, target, seconds if wait else None, cli.say, until) if vms else None
        return multihost.up_hosts(cluster, {job: elsewhere[job]}, options, seconds if wait else None, cli.say)

    multihost.here_and_there(jobs, start, "up", cli.say)
    if cluster.forward:
        from kubenet import tunnel

        if wait and tunnel.via(cluster) in picked:
            tunnel.start(cluster, cli.say)
        elif not tunnel.running(cluster):
            cli.say(f"kubenet: tunnel through {tunnel.via(cluster).name}: not started (`invoke tunnel` starts it once it is ready)")


START_HELP = {
    "config": CONFIG_HELP,
    "timeout": WAIT_HELP,
    "wait": "wait until every VM is ready (--no-wait to return at once)",
    "ready": READY_HELP,
    "accel": ACCEL_HELP,
}


@task(iterable=["id"], help={**START_HELP, "id": "start only this VM (repeatable; default: every VM)"})
@user_errors
def up(c, config=None, id=None, timeout=None, wait=True, ready=None, accel=None):
    """Launch the cluster in the detached tmux session <cluster>-qemu, then wait until it is ready."""
    start_vms(config, lambda cluster: cli.pick_vms(cluster, id), timeout, wait, ready, accel)


@task(help={**START_HELP, "id": ID_HELP, "name": NAME_HELP})
@user_errors
def start(c, id=None, name=None, config=None, timeout=None, wait=True, ready=None, accel=None):
    """Start one VM in its pane of the qemu session (made if needed), then wait until it is ready."""
    start_vms(config, lambda cluster: [cli.pick_vm(cluster, id, name)], timeout, wait, ready, accel)


def stop_vms(config, pick, timeout, cleanup: bool, whole: bool = False) -> None:
    """What `down` and `stop` share: power the chosen VMs off within the timeout, those of
    other hosts by kubenet there; `whole`: the cluster's cables and every host's VMs too."""
    from kubenet.shutdown import shut_down
    from kubenet.target import resolve_target

    from kubenet import multihost

    cluster = cli.open_cluster(config)
    seconds = cli.parse_timeout(timeout, STOP_SECONDS)
    picked = pick(cluster)
    vms, elsewhere = multihost.by_host(cluster, picked)
    whole = whole and multihost.spread(cluster)
    if whole:
        multihost.stop_cables(cluster, cli.say)  # first: a cable would plug into a host's switch again
        elsewhere = {host.name: [vm for vm in cluster.vms if vm.host == host.name] for host in cluster.placed_hosts()}
    jobs = [None, *elsewhere]

    def stop(job):
        if job is None:
            return shut_down(cluster, vms, resolve_target(cluster), seconds, cleanup=cleanup, say=cli.say) if vms else None
        return multihost.down_hosts(cluster, {job: elsewhere[job]}, whole, seconds, cli.say, "down" if cleanup else "stop")

    try:
        multihost.here_and_there(jobs, stop, "down" if cleanup else "stop", cli.say)
    finally:
        if whole:
            multihost.end_connections(cluster)


@task(iterable=["id"], help={"config": CONFIG_HELP, "id": "stop only this VM (repeatable)", "timeout": STOP_HELP})
@user_errors
def down(c, config=None, id=None, timeout=None):
    """Power VMs off (ACPI, then quit, then kill), and orphans (VMs no longer in cluster.yaml);
    with every VM down, remove the tmux sessions."""
    from kubenet.identity import orphans, recorded

    stop_vms(config, lambda cluster: cli.pick_vms(cluster, id) + ([] if id else orphans(cluster, recorded(cluster))), timeout, cleanup=True, whole=not id)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP, "timeout": STOP_HELP})
@user_errors
def stop(c, id=None, name=None, config=None, timeout=None):
    """Power one VM off; its pane keeps its last output."""
    stop_vms(config, lambda cluster: [cli.pick_vm(cluster, id, name)], timeout, cleanup=False)


def seed_changed(cluster) -> list:
    """The running VMs whose seed changed since they booted: what `restart` restarts when not told which."""
    from kubenet.provision import will_reprovision
    from kubenet.vmstate import is_running

    stale = [vm for vm in cluster.local_vms if is_running(cluster, vm) and will_reprovision(cluster, vm)]
    if not stale:
        cli.say("kubenet: no running VM's seed changed since it booted; nothing to restart (--id, --name or --role pick VMs)")
    return stale


@task(iterable=["id", "name", "role"], help={**START_HELP, "timeout": STOP_HELP, "id": "VM id (repeatable)", "name": "VM name (repeatable)", "role": "the VMs of this role (repeatable)"})
@user_errors
def restart(c, id=None, name=None, role=None, config=None, timeout=None, wait=True, ready=None, accel=None):
    """Restart VMs (power off, start, wait until ready): those named, else every running VM whose seed changed since it booted."""
    pick = (lambda cluster: cli.pick_vms(cluster, id, name, role)) if id or name or role else seed_changed
    picked = pick(cli.open_cluster(config))
    if picked:
        stop_vms(config, lambda cluster: picked, timeout, cleanup=False)
        start_vms(config, lambda cluster: picked, None, wait, ready, accel)


@task(help={"config": CONFIG_HELP, "stop": "end the tunnel instead"})
@user_errors
def tunnel(c, config=None, stop=False):
    """Forward the host loopback ports that cluster.yaml's forward: names into the cluster, through its first VM (up starts it, down ends it)."""
    from kubenet import tunnel as tunnels

    cluster = cli.open_cluster(config)
    if stop:
        if not tunnels.running(cluster):
            cli.say("kubenet: no tunnel is running")
        tunnels.stop(cluster, cli.say)
    else:
        tunnels.start(cluster, cli.say)


@task(help={"config": CONFIG_HELP, "attach": "attach when done (--no-attach for scripts)"})
@user_errors
def ssh_all(c, config=None, attach=True):
    """Open the <cluster>-ssh session: a window per role and ssh-nodes; prefix + C-s syncs panes."""
    from kubenet.sshall import open_ssh_session

    session = open_ssh_session(cli.open_cluster(config), attach, cli.say)
    if not attach:
        print(session)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP})
@user_errors
def ssh(c, id=None, name=None, config=None):
    """Open an SSH session to one VM, with its pinned host key; a command after `--` runs instead, with its exit status."""
    from kubenet.ssh import ssh_one

    cluster = cli.open_cluster(config)
    ssh_one(cluster, cli.pick_vm(cluster, id, name), c.remainder.strip() or None)


@task(
    name="exec",
    iterable=["id", "name", "role"],
    help={
        "role": "VMs of this role (repeatable)",
        "id": "VM id (repeatable)",
        "name": "VM name (repeatable)",
        "config": CONFIG_HELP,
        "stdin": "pass this command's input to the remote command (to each VM, a copy); without it the remote input is empty",
    },
)
@user_errors
def exec_(c, role=None, id=None, name=None, config=None, stdin=False):
    """Run the command after `--` on the VMs in parallel; lines come out as `<vm>: <line>`."""
    import sys

    from invoke import Exit

    from kubenet import errors
    from kubenet.ssh import exec_summary, run_everywhere

    cluster = cli.open_cluster(config)
    if not c.remainder.strip():
        raise errors.KubenetError("no command given", "put it after `--`, e.g. invoke exec --role worker -- uname -a")
    data = sys.stdin.buffer.read() if stdin else b""
    results = run_everywhere(cluster, cli.pick_vms(cluster, id, name, role), c.remainder, data)
    cli.say(exec_summary(results))
    if not all(result.succeeded for result in results):
        raise Exit(code=1)


@cli.paths_task(
    name="cp",
    auto_shortflags=False,
    positional=["paths"],
    iterable=["role"],
    help={
        "paths": "SOURCE... DESTINATION: paths here, or VM:PATH (:PATH with --role/--all); a DESTINATION ending in / is made",
        "role": "copy to or from the VMs of this role, the VM side written :PATH (repeatable)",
        "all": "copy to or from every VM, the VM side written :PATH",
        "force": "what comes from a VM may replace a file here (the file itself: a link there is replaced, not followed)",
        "config": CONFIG_HELP,
    },
)
@user_errors
def copy(c, paths, role=None, all=False, force=False, config=None):
    """Copy files or directories to or from VMs with scp, through the pinned host keys: `cp SRC... VM:DEST`, `cp VM:SRC... DEST`."""
    from invoke import Exit

    from kubenet.copy import copy_all

    cluster = cli.open_cluster(config)
    chosen = cli.pick_vms(cluster, roles=role) if role else list(cluster.vms) if all else None
    if copy_all(cluster, chosen, paths[:-1], paths[-1], cli.say, force):
        raise Exit(code=1)


@task(
    help={
        "config": CONFIG_HELP,
        "dry_run": "say what would change, and change nothing",
        "remove": "take out exactly what hostnet added, and nothing else",
    }
)
@user_errors
def hostnet(c, config=None, dry_run=False, remove=False):
    """Linux, bridge mode: the host side (bridge, forwarding, NAT, bridge.conf, DNS and DHCP, /etc/hosts, pod routes, NFS). Needs root."""
    from kubenet.hostnet import set_up, take_down
    from kubenet.hostpiece import places

    cluster = cli.open_cluster(config, state=False)  # root's command: it never touches state_dir
    (take_down if remove else set_up)(cluster, places(), dry_run, cli.say)


SNAPSHOT_VERBS = ("save", "restore", "rm")


@task(
    positional=["verb", "name"],
    help={
        "verb": "save, restore or rm",
        "name": "the snapshot's name: letters, digits, '.', '_' and '-'",
        "config": CONFIG_HELP,
    },
)
@user_errors
def snapshot(c, verb, name, config=None):
    """Save, restore or remove a snapshot of the whole cluster: live (memory too) when every VM runs, of the disks when none does."""
    from kubenet import errors, snapshot as snapshots_of
    from kubenet.target import resolve_target

    if verb not in SNAPSHOT_VERBS:
        raise errors.KubenetError(f"unknown snapshot verb {verb!r}; allowed: {', '.join(SNAPSHOT_VERBS)}", "e.g. invoke snapshot save stage-5")
    cluster = cli.open_cluster(config)
    from kubenet.multihost import refuse_spread

    refuse_spread(cluster, "snapshots")
    action = {"save": snapshots_of.save, "restore": snapshots_of.restore, "rm": snapshots_of.remove}[verb]
    action(cluster, resolve_target(cluster), name, cli.say)


@task(help={"config": CONFIG_HELP, "json": "print a JSON array"})
@user_errors
def snapshots(c, config=None, json=False):
    """List the cluster's snapshots: name, when, live or stopped, VMs, saved memory, state."""
    from kubenet.snapshot import listing
    from kubenet.target import resolve_target

    cluster = cli.open_cluster(config)
    rows = listing(cluster, resolve_target(cluster))
    if json:
        print(cli.format_json(rows))
    elif rows:
        print(cli.format_table([{key: value for key, value in row.items() if key not in ("vm_names", "bytes")} for row in rows]))
    else:
        cli.say(f"kubenet: cluster {cluster.name} has no snapshots; `invoke snapshot save NAME` takes one")


# ---- several hosts: what the controlling checkout runs, and what it runs on the others ----


@task(help={"config": CONFIG_HELP})
@user_errors
def setup_hosts(c, config=None):
    """Several hosts (hosts: in cluster.yaml): send each host its files, set its VMs up there, pin their host keys (`make setup` runs it)."""
    from kubenet.multihost import setup_hosts as set_up

    cluster = cli.open_cluster(config)
    if not cluster.placed_hosts():
        cli.say("kubenet: no VMs are placed on other hosts; nothing to send")
        return
    set_up(cluster, cli.say)


@task(help={"config": "this host's copy of the cluster file (in the directory the bundle fills)"})
@user_errors
def host_setup(c, config=None):
    """Run by the controlling host over SSH: take its bundle on stdin, set this host's VMs up, print their public host keys as JSON."""
    import json
    import sys

    from kubenet import errors
    from kubenet.config import config_path
    from kubenet.multihost import host_setup as set_up

    if sys.stdin.isatty():
        raise errors.KubenetError("host-setup reads what the controlling host sends on its input", "it is run by `make setup` on the controlling host, over SSH")

    print(json.dumps(set_up(str(config_path(config)), sys.stdin.buffer, cli.say)))


@task(help={"config": CONFIG_HELP})
@user_errors
def plug(c, config=None):
    """Run by a VDE cable from the controlling host: plug stdin and stdout into this host's switch (started if needed)."""
    from kubenet.paths import vde_socket_path
    from kubenet.process import replace_process
    from kubenet.vde import ensure_switch

    cluster = cli.open_cluster(config)
    ensure_switch(cluster)
    from kubenet.cable import PLUGGED

    cli.say(f"{PLUGGED} at {cluster.here}")
    replace_process(["vde_plug", str(vde_socket_path(cluster))], "install vde2 (`apt install vde2`, `brew install vde`)")
