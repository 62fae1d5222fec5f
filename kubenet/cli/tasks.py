"""kubenet tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Each task is ten lines at most: it parses its options, calls one function of the
package below (most often the lifecycle's), and reports. Modules are imported inside
the tasks, so that pipeline tasks (`ls`, `argv`) load only what they use.
"""

from functools import partial

import invoke

# Long options only: invoke's automatic short flags would make -h mean --host in one
# task and --ssh in another, where users expect help.
task = partial(invoke.task, auto_shortflags=False)

from kubenet.cli import glue as cli
from kubenet.cli.glue import user_errors
from kubenet.model.choose import pick_vm, pick_vms

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
    """List the cluster's VMs: id, name, role, resources and the host memory each qemu holds, MAC, IP, SSH endpoint, state, READY."""
    from kubenet.lifecycle import status

    cluster = cli.open_cluster(config)
    if names:
        print("\n".join(vm.name for vm in cluster.vms))
        return
    rows, notes = status.listed(cluster, every_note=not json)
    print(cli.format_json(rows) if json else cli.format_table(status.table_rows(rows)))
    cli.say_all(notes)


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

    from kubenet.machine.target import resolve_target
    from kubenet.run.launch import vm_argv

    cluster = cli.open_cluster(config, state=False)
    print(shlex.join(vm_argv(cluster, pick_vm(cluster, id, name), resolve_target(cluster, host, accel), managed)))


@task(help=QEMU_HELP)
@user_errors
def vm(c, id=None, name=None, config=None, accel=None, managed=False):
    """Run one VM in the foreground: qemu replaces this process (quit with Ctrl-A X)."""
    from ..model.choose import refuse_elsewhere
    from kubenet.machine.target import resolve_target
    from kubenet.run.launch import exec_vm

    cluster = cli.open_cluster(config)
    chosen = refuse_elsewhere(cluster, pick_vm(cluster, id, name), "vm")
    exec_vm(cluster, chosen, resolve_target(cluster, accel_option=accel), managed, cli.say)


@task(help={"config": CONFIG_HELP})
@user_errors
def image(c, config=None):
    """Fetch the base image into the cache and verify its SHA-256 (reuses a verified copy)."""
    from kubenet.machine.probe import probe_host
    from kubenet.prepare.image import fetch_image_of

    cluster = cli.open_cluster(config, state=False)
    fetch_image_of(cluster, probe_host(firmware_needed=False), cli.say)


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
    from kubenet.machine.target import resolve_target
    from kubenet.prepare.vmsetup import prepare_cluster, setup_plan

    cluster = cli.open_cluster(config)
    plan, ssh_files = setup_plan(cluster, pick_vms(cluster, id, name), (disk, seed, ssh), files_from)
    prepare_cluster(cluster, resolve_target(cluster), plan, ssh_files, cli.say)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP, "yes": "do not ask for confirmation"})
@user_errors
def reset(c, id=None, name=None, config=None, yes=False):
    """Delete one VM's disk and UEFI variables so that the next setup makes it afresh
    (or, for an orphan no longer in cluster.yaml, so that it is gone)."""
    from kubenet.lifecycle.remove import reset as reset_one
    from kubenet.store.identity import orphan_named

    cluster = cli.open_cluster(config)
    chosen = (name and id is None and orphan_named(cluster, name)) or pick_vm(cluster, id, name)
    reset_one(cluster, chosen, lambda question: cli.confirm(question, yes), cli.say)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP, "follow": "keep printing what the console writes, as tail -f",
            "since_boot": "start at the guest's last boot (a guest that rebooted logged several)"})
@user_errors
def logs(c, id=None, name=None, config=None, follow=False, since_boot=False):
    """Print a VM's console log (serial.log, written afresh at each start of its qemu)."""
    from ..model.choose import refuse_elsewhere
    from kubenet.model.paths import vm_paths
    from kubenet.run.consolelog import show_log

    cluster = cli.open_cluster(config)
    chosen = refuse_elsewhere(cluster, pick_vm(cluster, id, name), "logs")
    show_log(vm_paths(cluster, chosen).serial_log, chosen.name, since_boot, follow)


@task(help={"config": CONFIG_HELP, "yes": "do not ask for confirmation", "snapshots": "delete the cluster's snapshots too (refused without)"})
@user_errors
def destroy(c, config=None, yes=False, snapshots=False):
    """Power every VM off and delete state_dir: disks, seeds, keys, ssh_config (the image cache stays)."""
    from kubenet.lifecycle.remove import destroy as destroy_all

    destroy_all(cli.open_cluster(config), lambda question: cli.confirm(question, yes), cli.say, snapshots)


@task(help={"config": CONFIG_HELP, "output": "write them to this file (atomically) instead of stdout"})
@user_errors
def makevars(c, config=None, output=None):
    """Print the cluster as Make variables (used by the Makefile's per-VM rules)."""
    from kubenet.machine.target import resolve_target
    from kubenet.prepare.makevars import write_variables

    cluster = cli.open_cluster(config)
    write_variables(cluster, resolve_target(cluster), output)


START_HELP = {
    "config": CONFIG_HELP,
    "timeout": WAIT_HELP,
    "wait": "wait until every VM is ready (--no-wait to return at once)",
    "ready": READY_HELP,
    "accel": ACCEL_HELP,
}


def waiting(timeout, wait, ready, accel):
    """How `up`, `start` and `restart` wait, from their options; and the timeout told to other hosts."""
    from kubenet.lifecycle.conduct import Waiting

    seconds = cli.parse_timeout(timeout, WAIT_SECONDS)
    return Waiting(seconds if wait else None, cli.parse_ready(ready), accel), seconds


@task(iterable=["id"], help={**START_HELP, "id": "start only this VM (repeatable; default: every VM)"})
@user_errors
def up(c, config=None, id=None, timeout=None, wait=True, ready=None, accel=None):
    """Launch the cluster in the detached tmux session <cluster>-qemu, then wait until it is ready."""
    from kubenet.lifecycle import conduct

    conduct.start(cli.open_cluster(config), lambda cluster: pick_vms(cluster, id), *waiting(timeout, wait, ready, accel), say=cli.say)


@task(help={**START_HELP, "id": ID_HELP, "name": NAME_HELP})
@user_errors
def start(c, id=None, name=None, config=None, timeout=None, wait=True, ready=None, accel=None):
    """Start one VM in its pane of the qemu session (made if needed), then wait until it is ready."""
    from kubenet.lifecycle import conduct

    conduct.start(cli.open_cluster(config), lambda cluster: [pick_vm(cluster, id, name)], *waiting(timeout, wait, ready, accel), say=cli.say)


@task(iterable=["id"], help={"config": CONFIG_HELP, "id": "stop only this VM (repeatable)", "timeout": STOP_HELP})
@user_errors
def down(c, config=None, id=None, timeout=None):
    """Power VMs off (ACPI, then quit, then kill), and orphans (VMs no longer in cluster.yaml);
    with every VM down, remove the tmux sessions."""
    from kubenet.lifecycle import conduct

    seconds = cli.parse_timeout(timeout, STOP_SECONDS)
    conduct.stop(cli.open_cluster(config), conduct.down_picks(id or []), seconds, cli.say, cleanup=True, whole=not id)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP, "timeout": STOP_HELP})
@user_errors
def stop(c, id=None, name=None, config=None, timeout=None):
    """Power one VM off; its pane keeps its last output."""
    from kubenet.lifecycle import conduct

    conduct.stop(cli.open_cluster(config), lambda cluster: [pick_vm(cluster, id, name)], cli.parse_timeout(timeout, STOP_SECONDS), cli.say)


@task(iterable=["id", "name", "role"], help={**START_HELP, "timeout": STOP_HELP, "id": "VM id (repeatable)", "name": "VM name (repeatable)", "role": "the VMs of this role (repeatable)"})
@user_errors
def restart(c, id=None, name=None, role=None, config=None, timeout=None, wait=True, ready=None, accel=None):
    """Restart VMs (power off, start, wait until ready): those named, else every running VM whose seed changed since it booted."""
    from kubenet.lifecycle import conduct

    cluster = cli.open_cluster(config)
    picked = pick_vms(cluster, id, name, role) if id or name or role else conduct.seed_changed(cluster, cli.say)
    conduct.restart(cluster, picked, cli.parse_timeout(timeout, STOP_SECONDS), *waiting(None, wait, ready, accel), say=cli.say)


@task(help={"config": CONFIG_HELP, "stop": "end the tunnel instead"})
@user_errors
def tunnel(c, config=None, stop=False):
    """Forward the host loopback ports that cluster.yaml's forward: names into the cluster, through its first VM (up starts it, down ends it)."""
    from kubenet.run import tunnel as tunnels

    tunnels.command(cli.open_cluster(config), stop, cli.say)


@task(help={"config": CONFIG_HELP, "attach": "attach when done (--no-attach for scripts)"})
@user_errors
def ssh_all(c, config=None, attach=True):
    """Open the <cluster>-ssh session: a window per role and ssh-nodes; prefix + C-s syncs panes."""
    from kubenet.reach.sshall import open_ssh_session

    session = open_ssh_session(cli.open_cluster(config), attach, cli.say)
    if not attach:
        print(session)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP})
@user_errors
def ssh(c, id=None, name=None, config=None):
    """Open an SSH session to one VM, with its pinned host key; a command after `--` runs instead, with its exit status."""
    from kubenet.reach.ssh import ssh_one

    cluster = cli.open_cluster(config)
    ssh_one(cluster, pick_vm(cluster, id, name), c.remainder.strip() or None)


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
    from invoke import Exit

    from kubenet.reach.ssh import exec_command

    cluster = cli.open_cluster(config)
    if not exec_command(cluster, pick_vms(cluster, id, name, role), c.remainder, stdin, cli.say):
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

    from kubenet.reach.copy import copy_all

    cluster = cli.open_cluster(config)
    chosen = pick_vms(cluster, roles=role) if role else list(cluster.vms) if all else None
    if copy_all(cluster, chosen, paths[:-1], paths[-1], cli.say, force):
        raise Exit(code=1)


@task(
    help={
        "config": CONFIG_HELP,
        "dry_run": "say what would change, and change nothing",
        "remove": "take out exactly what hostnet added, and nothing else",
        "persist": "Linux: also install a systemd unit that makes it again at boot (`make hostnet` asks for it)",
    }
)
@user_errors
def hostnet(c, config=None, dry_run=False, remove=False, persist=False):
    """Linux, bridge mode: the host side (bridge, forwarding, NAT, bridge.conf, DNS and DHCP, /etc/hosts, pod routes, NFS). Needs root."""
    from kubenet.hostside.hostnet import set_up, take_down
    from kubenet.hostside.hostpiece import places

    cluster = cli.open_cluster(config, state=False)  # root's command: it never touches state_dir
    take_down(cluster, places(), dry_run, cli.say) if remove else set_up(cluster, places(), dry_run, cli.say, persist)


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
    from kubenet.machine.target import resolve_target
    from kubenet.snapshots.snapshot import run_verb

    cluster = cli.open_cluster(config)
    run_verb(cluster, resolve_target(cluster), verb, name, cli.say)


@task(help={"config": CONFIG_HELP, "json": "print a JSON array"})
@user_errors
def snapshots(c, config=None, json=False):
    """List the cluster's snapshots: name, when, live or stopped, VMs, saved memory, state."""
    from kubenet.machine.target import resolve_target
    from kubenet.snapshots.snapshot import listing, table_rows

    cluster = cli.open_cluster(config)
    rows = listing(cluster, resolve_target(cluster))
    if rows or json:
        print(cli.format_json(rows) if json else cli.format_table(table_rows(rows)))
    else:
        cli.say(f"kubenet: cluster {cluster.name} has no snapshots; `invoke snapshot save NAME` takes one")


@task(iterable=["id", "name", "role"], help={"config": CONFIG_HELP, "json": "print the checks as a JSON array", "id": "check this VM (repeatable; default: every VM)",
                                              "name": "VM name (repeatable)", "role": "the VMs of this role (repeatable)",
                                              "outside": "a name outside the cluster each VM must resolve ('' not to ask)"})  # fmt: skip
@user_errors
def doctor(c, id=None, name=None, role=None, config=None, json=False, outside="deb.debian.org"):
    """Check the host and every VM (accelerator, memory, network, names, clocks, ...): a table of ✓ ✗ –, each failure with its fix; exit 1 if any failed."""
    from invoke import Exit

    from kubenet.doctor import diagnose, report

    cluster = cli.open_cluster(config)
    checks, seconds = diagnose.diagnose(cluster, pick_vms(cluster, id, name, role), outside)
    print(cli.format_json(report.as_data(checks)) if json else cli.format_table(report.table_rows(checks, cli.symbols())))
    cli.say(report.summary(checks, seconds))
    if report.any_failed(checks):
        raise Exit(code=1)


# ---- several hosts: what the controlling checkout runs, and what it runs on the others ----


@task(help={"config": CONFIG_HELP})
@user_errors
def setup_hosts(c, config=None):
    """Several hosts (hosts: in cluster.yaml): send each host its files, set its VMs up there, pin their host keys (`make setup` runs it)."""
    from kubenet.hosts.multihost import setup_hosts as set_up

    set_up(cli.open_cluster(config), cli.say)


@task(help={"config": "this host's copy of the cluster file (in the directory the bundle fills)"})
@user_errors
def host_setup(c, config=None):
    """Run by the controlling host over SSH: take its bundle on stdin, set this host's VMs up, print their public host keys as JSON."""
    import json
    import sys

    from kubenet.hosts.multihost import host_setup as set_up
    from kubenet.model.config import config_path

    print(json.dumps(set_up(str(config_path(config)), sys.stdin.buffer, cli.say)))


@task(help={"config": CONFIG_HELP})
@user_errors
def plug(c, config=None):
    """Run by a VDE cable from the controlling host: plug stdin and stdout into this host's switch (started if needed)."""
    from kubenet.hosts.cable import plug_here

    plug_here(cli.open_cluster(config), cli.say)
