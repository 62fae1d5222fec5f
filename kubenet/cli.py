"""Glue between invoke tasks and the library: option parsing, VM selection, output.

Kept free of heavy imports: `invoke ls` and `invoke argv` run in pipelines.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, Iterable

from . import errors
from .cluster import VM, Cluster


def user_errors(function: Callable) -> Callable:
    """Turn a KubenetError into one line on stderr and exit status 1, no traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except errors.KubenetError as error:
            from invoke import Exit

            raise Exit(f"kubenet: error: {error}", code=1) from None
        except KeyboardInterrupt:
            from invoke import Exit

            raise Exit("kubenet: interrupted", code=130) from None

    return wrapper


def open_cluster(config: str | None) -> Cluster:
    from .config import config_path, load_cluster

    return load_cluster(config_path(config))


def pick_vms(cluster: Cluster, ids: Iterable[str] = (), names: Iterable[str] = ()) -> list[VM]:
    """The VMs named by --id/--name options, in cluster order; all of them when none is given."""
    ids, names = list(ids), list(names)
    if not ids and not names:
        return list(cluster.vms)
    chosen = {pick_vm(cluster, vm_id, None).id for vm_id in ids}
    chosen |= {pick_vm(cluster, None, name).id for name in names}
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
    vm = cluster.vm_by_id(int(text)) if text.isdigit() else None
    if vm is None:
        raise errors.UnknownVMError(f"no VM with id {text!r} in {cluster.source}; ids are 0-{last}")
    return vm


def pick_host(described: str | None = None):
    """This machine, probed, or the kind of machine named by --host."""
    from .host import host_profile, probe_host

    return host_profile(described) if described else probe_host()


def effective_accel(cluster: Cluster, host, accel_option: str | None) -> str:
    from .host import choose_accel

    if accel_option:  # a command-line --accel wins over everything
        return choose_accel(host, accel_option, {})
    return choose_accel(host, cluster.accel, os.environ)


def vm_argv(cluster: Cluster, vm: VM, host, accel: str, managed: bool = False) -> list[str]:
    from .launch import management_for
    from .network import resolve_mode
    from .qemu import qemu_argv

    management = management_for(cluster, vm) if managed else None
    return qemu_argv(cluster, vm, host, accel, resolve_mode(cluster.network, host), management)


def vm_rows(cluster: Cluster, mode: str) -> list[dict]:
    from .network import ssh_endpoint

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
        }
        for vm in cluster.vms
    ]


def format_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    cells = [[str(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = [[h.upper() for h in headers], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def format_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)


def shell_line(argv: list[str]) -> str:
    return shlex.join(argv)


def say(message: str) -> None:
    """Progress for people goes to stderr; stdout is for data."""
    print(message, file=sys.stderr, flush=True)


def setup_context(cluster: Cluster, host):
    from .image import base_image_path
    from .network import resolve_mode
    from .vmsetup import SetupContext

    base = base_image_path(cluster, host) if cluster.image.kind == "cloud" else None
    return SetupContext(cluster=cluster, host=host, mode=resolve_mode(cluster.network, host), base_image=base)


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on a terminal; elsewhere only --yes says yes."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise errors.KubenetError(f"{question} needs confirmation", "pass --yes to confirm without a terminal")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def make_variables(cluster: Cluster, host) -> str:
    """Make variable assignments describing the cluster, for the Makefile's per-VM rules."""
    from .seed import template_paths
    from .sshkeys import login_key_path

    from .vmsetup import needs_efivars

    context = setup_context(cluster, host)
    values = {
        "KUBENET_STATE": str(cluster.state_dir),
        "KUBENET_VMS": " ".join(vm.name for vm in cluster.vms),
        "KUBENET_BASE_IMAGE": str(context.base_image or ""),
        # the seed is also remade when the code that writes it changes
        "KUBENET_SEED_INPUTS": " ".join(str(p) for p in [*template_paths(cluster), login_key_path(cluster), Path(__file__).with_name("seed.py")]),
        "KUBENET_EFIVARS": "yes" if needs_efivars(cluster, host) else "",
    }
    for name, value in values.items():
        if " " in value and name in ("KUBENET_STATE", "KUBENET_BASE_IMAGE"):
            raise errors.SetupError(f"{name} {value!r} has a space, which make cannot handle", "choose a path without spaces")
    return "".join(f"{name} := {value}\n" for name, value in values.items())
