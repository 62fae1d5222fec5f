"""Which VMs a command's options choose: --id, --name (one or several) and --role, in the
cluster's order; each mistake one line with the names or ids there are."""

from __future__ import annotations

from typing import Iterable

from ..plumbing import errors
from .cluster import VM, Cluster


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
            from .config import shown

            raise errors.UnknownVMError(
                f"no VM named {shown(name)} in {cluster.source}; names are {', '.join(v.name for v in cluster.vms)}"
            )
        return vm
    text = str(vm_id).strip()
    vm = cluster.vm_by_id(int(text)) if text.isascii() and text.isdigit() and len(text) <= 6 else None
    if vm is None:
        from .config import shown

        raise errors.UnknownVMError(f"no VM with id {shown(text)} in {cluster.source}; ids are 0-{last}")
    return vm


def spread(cluster: Cluster) -> bool:
    """Whether this is the controlling host of a cluster some of whose VMs run elsewhere."""
    return bool(cluster.placed_hosts())


def by_host(cluster: Cluster, vms: list[VM]) -> tuple[list[VM], dict[str, list[VM]]]:
    """The VMs this host runs, and those of every other host (in `hosts:` order)."""
    local = [vm for vm in vms if vm.host == cluster.here]
    others = {host.name: [vm for vm in vms if vm.host == host.name] for host in cluster.placed_hosts()}
    return local, {name: chosen for name, chosen in others.items() if chosen}


def refuse_elsewhere(cluster: Cluster, vm: VM, task: str) -> VM:
    """`vm` and `logs` act on this host's files and terminal: a VM another host runs is there."""
    if vm.host != cluster.here:
        host = cluster.remote_host(vm.host)
        raise errors.KubenetError(
            f"{vm.name} runs on {vm.host}, not here",
            f"run `kubenet {task} --config {host.directory(cluster.name) if host else '…'}/cluster.yaml --name {vm.name}` there (`ssh {host.destination if host else vm.host}`)",
        )
    return vm


def refuse_spread(cluster: Cluster, what: str) -> None:
    """Commands that act on every VM at once from one host (snapshots) do not yet span hosts."""
    if any(vm.host != cluster.here for vm in cluster.vms):
        raise errors.KubenetError(
            f"{what} of a cluster on several hosts are not supported: its VMs on {', '.join(sorted({vm.host for vm in cluster.vms} - {cluster.here}))} are out of reach of one save",
            "place every VM on one host (leave host: out of cluster.yaml) to take snapshots",
        )
