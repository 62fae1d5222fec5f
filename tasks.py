"""kubenet tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Each task parses its options and calls plain functions in the kubenet package;
heavy modules are imported inside tasks so that pipeline tasks start fast.
"""

from invoke import task

from kubenet.cli import user_errors

CONFIG_HELP = "cluster file (default: $KUBENET_CONFIG or ./cluster.yaml)"
ID_HELP = "VM id, as `invoke ls` shows it"
NAME_HELP = "VM name, e.g. worker1 (instead of --id)"


@task(help={"config": CONFIG_HELP, "json": "print a JSON array", "names": "print one VM name per line"})
@user_errors
def ls(c, config=None, json=False, names=False):
    """List the cluster's VMs: id, name, role, resources, MAC, IP and SSH endpoint."""
    from kubenet import cli
    from kubenet.network import resolve_mode

    cluster = cli.open_cluster(config)
    if names:
        print("\n".join(vm.name for vm in cluster.vms))
        return
    rows = cli.vm_rows(cluster, resolve_mode(cluster.network, cli.pick_host()))
    print(cli.format_json(rows) if json else cli.format_table(rows))
    if not json:
        from kubenet.layout import qemu_session_name, ssh_session_name

        running = sum(row["state"] == "running" for row in rows)
        cli.say(
            f"kubenet: {running} of {len(rows)} VMs running; tmux sessions: "
            f"{qemu_session_name(cluster)} (VMs), {ssh_session_name(cluster)} (ssh-all)"
        )


# What `argv` and `vm` share: which VM, and how its qemu command is made.
QEMU_HELP = {
    "id": ID_HELP,
    "name": NAME_HELP,
    "config": CONFIG_HELP,
    "accel": "accelerator: hvf, kvm or tcg (default: the best this host offers)",
    "managed": "add the options `up` adds: QMP socket, console log, entropy device",
}


@task(help={**QEMU_HELP, "host": "describe another host: darwin-arm64, linux-x86_64 or linux-aarch64"})
@user_errors
def argv(c, id=None, name=None, config=None, host=None, accel=None, managed=False):
    """Print the VM's qemu command, shell-quoted on one line."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    vm = cli.pick_vm(cluster, id, name)
    target = cli.pick_host(host, cluster, accel)
    print(cli.shell_line(cli.vm_argv(cluster, vm, target, cli.effective_accel(cluster, target, accel), managed)))


@task(help=QEMU_HELP)
@user_errors
def vm(c, id=None, name=None, config=None, accel=None, managed=False):
    """Run one VM in the foreground: qemu replaces this process (quit with Ctrl-A X)."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    chosen = cli.pick_vm(cluster, id, name)
    host = cli.pick_host(cluster=cluster, accel_option=accel)
    from kubenet.launch import exec_vm

    exec_vm(cluster, chosen, host, cli.effective_accel(cluster, host, accel), managed)


@task(help={"config": CONFIG_HELP})
@user_errors
def image(c, config=None):
    """Fetch the base image into the cache and verify its SHA-256 (reuses a verified copy)."""
    from kubenet import cli
    from kubenet.image import fetch_image

    cluster = cli.open_cluster(config)
    if not cluster.image.url:
        cli.say("kubenet: image.url is not set: no base image to fetch")
        return
    print(fetch_image(cluster, cli.pick_host(), say=cli.say))


@task(
    iterable=["id", "name"],
    help={
        "id": "VM id (repeatable; default: every VM)",
        "name": "VM name (repeatable)",
        "config": CONFIG_HELP,
        "disk": "only the disk (and UEFI variables)",
        "seed": "only the host key and cloud-init seed",
        "ssh": "only the cluster's known_hosts and ssh_config",
    },
)
@user_errors
def vmsetup(c, id=None, name=None, config=None, disk=False, seed=False, ssh=False):
    """Prepare VMs: disk overlay, cloud-init seed, host key, ssh_config. Never recreates a disk."""
    from kubenet import cli
    from kubenet.vmsetup import PARTS, read_seed_inputs, setup_ssh, setup_vm

    cluster = cli.open_cluster(config)
    context = cli.setup_context(cluster, cli.pick_host())
    parts = [part for part, wanted in zip(PARTS, (disk, seed, ssh)) if wanted] or PARTS
    inputs = read_seed_inputs(cluster)  # a bad template or key stops setup before any write
    if "disk" in parts or "seed" in parts:
        for chosen in cli.pick_vms(cluster, id, name):
            setup_vm(context, chosen, parts, say=cli.say, inputs=inputs)
    if "ssh" in parts:
        for path in setup_ssh(context):
            cli.say(f"kubenet: wrote {path}")


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP, "yes": "do not ask for confirmation"})
@user_errors
def reset(c, id=None, name=None, config=None, yes=False):
    """Delete one VM's disk and UEFI variables so that the next setup makes it afresh."""
    from kubenet import cli, errors
    from kubenet.paths import vm_paths
    from kubenet.lifecycle import vm_state
    from kubenet.vmsetup import reset_vm

    cluster = cli.open_cluster(config)
    chosen = cli.pick_vm(cluster, id, name)
    state = vm_state(cluster, chosen)
    if state.running and state.pid is not None:
        raise errors.KubenetError(f"{chosen.name} is running", f"stop it first: `invoke stop --id {chosen.id}`")
    if state.running:
        raise errors.KubenetError(
            f"{chosen.name} is running in a qemu that kubenet did not start (its disk is open), such as `invoke vm`'s",
            "quit that qemu first: Ctrl-A X in its console, or power the VM off from inside",
        )
    paths = vm_paths(cluster, chosen)
    if not cli.confirm(f"delete {chosen.name}'s disk {paths.disk} and UEFI variables, losing all its data?", yes):
        raise errors.KubenetError("reset cancelled; nothing was deleted")
    deleted = reset_vm(cluster, chosen)
    for path in deleted:
        cli.say(f"kubenet: deleted {path}")
    if not deleted:
        cli.say(f"kubenet: {chosen.name} had no disk; nothing deleted")


@task(help={"config": CONFIG_HELP, "output": "write them to this file (atomically) instead of stdout"})
@user_errors
def makevars(c, config=None, output=None):
    """Print the cluster as Make variables (used by the Makefile's per-VM rules)."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    text = cli.make_variables(cluster, cli.pick_host())
    if output is None:
        print(text, end="")
        return
    from pathlib import Path

    from kubenet.fsutil import write_atomic

    write_atomic(Path(output), text.encode(), 0o644)


WAIT_HELP = "seconds to wait for every VM to answer SSH (default: 600)"
STOP_HELP = "seconds the whole shutdown may take: power button, then quit, then kill (default: 60)"
WAIT_SECONDS, STOP_SECONDS = 600.0, 60.0


@task(
    iterable=["id"],
    help={
        "config": CONFIG_HELP,
        "id": "start only this VM (repeatable; default: every VM)",
        "timeout": WAIT_HELP,
        "wait": "wait until every VM answers SSH (--no-wait to return at once)",
    },
)
@user_errors
def up(c, config=None, id=None, timeout=None, wait=True):
    """Launch the cluster in the detached tmux session <cluster>-qemu, then wait for SSH."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    host = cli.pick_host(cluster=cluster)
    seconds = cli.parse_timeout(timeout, WAIT_SECONDS)
    cli.launch_and_wait(cluster, cli.pick_vms(cluster, id), host, cli.effective_accel(cluster, host, None), seconds if wait else None)


@task(help={"config": CONFIG_HELP, "attach": "attach when done (--no-attach for scripts)"})
@user_errors
def ssh_all(c, config=None, attach=True):
    """Open the <cluster>-ssh session: a window per role and ssh-nodes; prefix + C-s syncs panes."""
    from kubenet import cli

    cli.ssh_session(cli.open_cluster(config), attach)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP})
@user_errors
def ssh(c, id=None, name=None, config=None):
    """Open an SSH session to one VM, with its pinned host key."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    cli.ssh_one(cluster, cli.pick_vm(cluster, id, name))


@task(
    name="exec",
    iterable=["id", "name", "role"],
    help={"role": "VMs of this role (repeatable)", "id": "VM id (repeatable)", "name": "VM name (repeatable)", "config": CONFIG_HELP},
)
@user_errors
def exec_(c, role=None, id=None, name=None, config=None):
    """Run the command after `--` on the VMs in parallel; lines come out as `<vm>: <line>`."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    cli.exec_everywhere(cluster, cli.pick_vms(cluster, id, name, role), c.remainder)


@task(iterable=["id"], help={"config": CONFIG_HELP, "id": "stop only this VM (repeatable)", "timeout": STOP_HELP})
@user_errors
def down(c, config=None, id=None, timeout=None):
    """Power VMs off (ACPI, then quit, then kill); with every VM down, remove the tmux sessions."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    cli.shut_down(cluster, cli.pick_vms(cluster, id), cli.parse_timeout(timeout, STOP_SECONDS), cleanup=True)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP, "timeout": STOP_HELP})
@user_errors
def stop(c, id=None, name=None, config=None, timeout=None):
    """Power one VM off; its pane keeps its last output."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    cli.shut_down(cluster, [cli.pick_vm(cluster, id, name)], cli.parse_timeout(timeout, STOP_SECONDS), cleanup=False)


@task(help={"id": ID_HELP, "name": NAME_HELP, "config": CONFIG_HELP, "timeout": WAIT_HELP, "wait": "wait for SSH"})
@user_errors
def start(c, id=None, name=None, config=None, timeout=None, wait=True):
    """Start one VM in its pane of the qemu session (made if needed), then wait for SSH."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    host = cli.pick_host(cluster=cluster)
    chosen = [cli.pick_vm(cluster, id, name)]
    seconds = cli.parse_timeout(timeout, WAIT_SECONDS)
    cli.launch_and_wait(cluster, chosen, host, cli.effective_accel(cluster, host, None), seconds if wait else None)
