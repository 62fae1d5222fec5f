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


@task(
    help={
        "id": ID_HELP,
        "name": NAME_HELP,
        "config": CONFIG_HELP,
        "host": "describe another host: darwin-arm64, linux-x86_64 or linux-aarch64",
        "accel": "accelerator: hvf, kvm or tcg (default: the best this host offers)",
        "managed": "add the options `up` adds: QMP socket, console log, entropy device",
    }
)
@user_errors
def argv(c, id=None, name=None, config=None, host=None, accel=None, managed=False):
    """Print the VM's qemu command, shell-quoted on one line."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    vm = cli.pick_vm(cluster, id, name)
    target = cli.pick_host(host)
    print(cli.shell_line(cli.vm_argv(cluster, vm, target, cli.effective_accel(cluster, target, accel), managed)))


@task(
    help={
        "id": ID_HELP,
        "name": NAME_HELP,
        "config": CONFIG_HELP,
        "accel": "accelerator: hvf, kvm or tcg (default: the best this host offers)",
        "managed": "add the options `up` adds: QMP socket, console log, entropy device",
    }
)
@user_errors
def vm(c, id=None, name=None, config=None, accel=None, managed=False):
    """Run one VM in the foreground: qemu replaces this process (quit with Ctrl-A X)."""
    from kubenet import cli

    cluster = cli.open_cluster(config)
    chosen = cli.pick_vm(cluster, id, name)
    host = cli.pick_host()
    from kubenet.launch import exec_vm

    exec_vm(cluster, chosen, host, cli.effective_accel(cluster, host, accel), managed)
