"""Which VMs cloud-init provisions again at their next boot.

A seed's instance-id is the VM's name and a digest of what the seed tells cloud-init
(seed.instance_id): when a template, a network-config extra or the cluster changes
(a VM added, whose name every /etc/hosts must hold), the instance is new, and at the
next boot cloud-init runs its per-instance modules again: users and keys, the host key
(the same one, so it stays pinned), /etc/hosts, write_files, packages, runcmd. The disk
and its data stay. kubenet notes the instance each VM was started with, to say before
a boot which VMs will re-provision.
"""

from __future__ import annotations

from ..model.cluster import VM, Cluster
from ..model.paths import vm_paths
from ..plumbing.fsutil import write_atomic


def seed_instance(cluster: Cluster, vm: VM) -> str | None:
    """The instance-id of the VM's current seed (from its plain meta-data copy)."""
    import yaml

    try:
        data = yaml.safe_load(vm_paths(cluster, vm).meta_data.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    instance = data.get("instance-id") if isinstance(data, dict) else None
    return str(instance) if instance is not None else None


def booted_instance(cluster: Cluster, vm: VM) -> str | None:
    try:
        return vm_paths(cluster, vm).booted_instance.read_text().strip() or None
    except (OSError, UnicodeError):
        return None


def will_reprovision(cluster: Cluster, vm: VM) -> bool:
    """True if the VM booted before with another seed than the one it boots with now. A VM
    that booted (it has a console log) without a noted instance was made by an earlier
    kubenet, whose instance-id was the bare name."""
    now = seed_instance(cluster, vm)
    before = booted_instance(cluster, vm)
    if before is None:
        return now is not None and now != vm.name and vm_paths(cluster, vm).serial_log.exists()
    return now is not None and now != before


def note_booted(cluster: Cluster, vm: VM) -> None:
    instance = seed_instance(cluster, vm)
    if instance is not None:
        write_atomic(vm_paths(cluster, vm).booted_instance, (instance + "\n").encode())


def forget_booted(cluster: Cluster, vm: VM) -> None:
    """A VM made afresh (`reset`) provisions as new; it does not re-provision."""
    vm_paths(cluster, vm).booted_instance.unlink(missing_ok=True)


REPROVISION_NOTE = "its seed changed since its last boot: cloud-init applies it again (write_files, packages, runcmd); its data stays"


def not_yet_applied(names: list[str]) -> str:
    """What to tell of running VMs whose seed changed since they booted (a template edited, a
    VM added that every /etc/hosts must name): they take it only at their next boot."""
    they = "it" if len(names) == 1 else "they"
    return (
        f"{' '.join(names)}: {'its' if len(names) == 1 else 'their'} seed changed since {they} booted "
        f"(a template, or the cluster); {they} take{'s' if len(names) == 1 else ''} it at the next boot: "
        f"`invoke restart` restarts {'it' if len(names) == 1 else 'them'} now"
    )
