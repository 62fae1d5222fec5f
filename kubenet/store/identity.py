"""Each VM's identity, as it was made: recorded in its directory, so that a cluster.yaml
edited later cannot quietly give a VM that exists another id, MAC or address.

Ids are counted across roles, so growing or shrinking a role renumbers every VM after
it: worker0 would answer on worker1's SSH port while it still runs with its old MAC and
address. A record (`identity.json`) is written when a VM is set up or started; commands
that set up or start VMs refuse a cluster.yaml that disagrees with one. A VM whose record
names no VM of cluster.yaml any more is an orphan: listed by `ls`, stopped by `down`,
removed by `reset --name`.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

from ..model.cluster import VM, Cluster
from ..plumbing import errors
from ..plumbing.fsutil import write_atomic

RECORD = "identity.json"
FIELDS = ("id", "name", "role", "vcpus", "memory", "mac", "ip")
WHO = ("id", "mac", "ip")  # what the VM is to the others and to the host (memory and vcpus may change)


def record_path(cluster: Cluster, name: str) -> Path:
    return cluster.state_dir / name / RECORD


def as_record(vm: VM) -> bytes:
    return (json.dumps({key: str(getattr(vm, key)) if key == "ip" else getattr(vm, key) for key in FIELDS}) + "\n").encode()


def from_record(data: dict) -> VM:
    return VM(int(data["id"]), str(data["name"]), str(data["role"]), int(data["vcpus"]), str(data["memory"]), str(data["mac"]), IPv4Address(data["ip"]))


def recorded(cluster: Cluster) -> dict[str, VM]:
    """The VMs whose directories hold a readable record, by name."""
    found = {}
    if not cluster.state_dir.is_dir():
        return found
    for path in sorted(cluster.state_dir.glob(f"*/{RECORD}")):
        try:
            vm = from_record(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable record tells nothing; the VM is then taken as cluster.yaml says
        if vm.name == path.parent.name:
            found[vm.name] = vm
    return found


def changes(now: VM, then: VM) -> list[str]:
    return [f"{key} {getattr(then, key)} → {getattr(now, key)}" for key in WHO if getattr(now, key) != getattr(then, key)]


def renumbered(cluster: Cluster, records: dict[str, VM]) -> dict[str, list[str]]:
    """The VMs that cluster.yaml now gives another id, MAC or address than they were made with."""
    return {vm.name: moved for vm in cluster.vms if vm.name in records and (moved := changes(vm, records[vm.name]))}


def orphans(cluster: Cluster, records: dict[str, VM]) -> list[VM]:
    """The VMs made for this cluster that cluster.yaml no longer has."""
    names = {vm.name for vm in cluster.vms}
    return [vm for name, vm in records.items() if name not in names]


def check_identities(cluster: Cluster) -> None:
    """Refuse to set up or start VMs from a cluster.yaml that renumbers VMs that exist."""
    moved = renumbered(cluster, recorded(cluster))
    if moved:
        said = "; ".join(f"{name} ({', '.join(what)})" for name, what in moved.items())
        raise errors.ConfigError(
            f"{cluster.source} would give VMs that exist another identity: {said}",
            "undo the change (add VMs to the last role, or as a new role at the end), or give those VMs up: "
            "`invoke down`, then `invoke reset --name NAME` for each, then `make up`",
        )


def orphan_named(cluster: Cluster, name: str) -> VM | None:
    return next((vm for vm in orphans(cluster, recorded(cluster)) if vm.name == name), None)


def record_identity(cluster: Cluster, vm: VM) -> None:
    """Write the VM's record unless it has one (an older VM gets one as it is now)."""
    path = record_path(cluster, vm.name)
    if path.parent.is_dir() and not path.exists():
        write_atomic(path, as_record(vm), 0o600)


def forget_identity(cluster: Cluster, vm: VM) -> None:
    """A VM reset is made afresh: it takes the identity cluster.yaml gives it then."""
    record_path(cluster, vm.name).unlink(missing_ok=True)
