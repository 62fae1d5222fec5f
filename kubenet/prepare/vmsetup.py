"""Prepare a VM for launch: its disk, UEFI variables, host key and cloud-init seed.

Each step keeps what exists where it is the VM's data (disk, UEFI variables,
host key) and rewrites what is derived from cluster.yaml (seed, ssh files).
A per-VM lock makes two setups of the same VM at once safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..machine.target import Target
from ..model.cluster import LOCAL, VM, Cluster
from ..model.host import needs_efivars
from ..model.paths import vm_paths
from ..plumbing import errors
from ..plumbing.fsutil import locked, write_atomic
from ..plumbing.parallel import for_each
from ..store.identity import check_identities, record_identity
from ..store.statedir import clean_temporaries, vm_dir
from .disk import convert_raw_efivars, create_disk, create_efivars
from .image import base_image
from .seed import read_network_templates, read_templates, seed_files, write_seed_iso
from .sshkeys import ensure_host_key, login_key_path, read_login_key, write_ssh_files

PARTS = ("disk", "seed", "ssh")
# The VM's files that setup writes, always under the VM's lock.
WRITTEN_UNDER_LOCK = frozenset({
    "disk.img", "efivars.qcow2", "cidata.iso", "cidata.iso.sha256", "user-data", "meta-data", "network-config",
    "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "identity.json",
})  # fmt: skip


@dataclass(frozen=True)
class SeedInputs:
    """What a seed is made from besides cluster.yaml, read (and so checked) before anything is written."""

    templates: dict[str, dict]
    login_key: str
    network: dict[str, dict]  # network-config extras by common/role name


def read_seed_inputs(cluster: Cluster) -> SeedInputs:
    """On another host than the controlling one, its kubenet's own key is let in as well: it
    logs in to see its VMs ready, and is never given the user's private key."""
    keys = [read_login_key(login_key_path(cluster))]
    if cluster.here != LOCAL:
        from .sshkeys import host_login_key

        keys.append(read_login_key(host_login_key(cluster).with_suffix(".pub")))
    return SeedInputs(read_templates(cluster), "\n".join(keys), read_network_templates(cluster))


def check_user_data(cluster: Cluster, target: Target, inputs: SeedInputs) -> None:
    """Each role's user-data as cloud-init's own schema judges it, before any seed is written."""
    from .cloudconfig import check_with_cloud_init
    from ..model.paths import cache_dir
    from .seed import network_config, user_data
    from .sshkeys import HostKey

    placeholder = HostKey("-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n", "ssh-ed25519 AAAA")
    texts = {}
    for role in cluster.roles:
        members = cluster.vms_of_role(role.name)
        if members:
            texts[role.name] = user_data(cluster, members[0], target.mode, inputs.templates, inputs.login_key, placeholder)
            network_config(cluster, members[0], target.mode, inputs.network)  # an extra that changes kubenet's settings stops here
    check_with_cloud_init(texts, cache_dir() / "cloud-config-valid")


def setup_vm(cluster: Cluster, target: Target, vm: VM, parts=PARTS, say: Callable[[str], None] = print, inputs: SeedInputs | None = None) -> None:
    """Make what the VM lacks. Everything is checked first: a bad template, key or firmware
    stops setup before its first write, so a failed setup leaves no half-made VM."""
    host = target.host
    paths = vm_paths(cluster, vm)
    inputs = inputs or read_seed_inputs(cluster)
    efivars = needs_efivars(cluster, host)
    if efivars and "disk" in parts and (host.firmware is None or host.firmware.vars_template is None):
        raise errors.HostError(host.firmware_error or "UEFI firmware has no variable store template")
    vm_dir(cluster, vm)
    with locked(paths.lock):
        clean_temporaries(paths.dir, WRITTEN_UNDER_LOCK)  # what a killed setup left
        if "disk" in parts:
            if create_disk(paths.disk, cluster.disk_size, base_image(cluster, host)):
                say(f"{vm.name}: created {paths.disk} ({cluster.disk_size})")
            else:
                from .imagecheck import check_vm_images

                check_vm_images(vm.name, paths.disk, None, None)  # a damaged disk is named, never kept silently
                say(f"{vm.name}: kept {paths.disk}")
            if efivars:
                set_aside_damaged_store(vm, paths.raw_efivars, host.firmware.vars_template, say)
                if convert_raw_efivars(paths.raw_efivars, paths.efivars):
                    say(f"{vm.name}: converted {paths.raw_efivars.name} to {paths.efivars.name}, its boot entries kept")
                set_aside_damaged_store(vm, paths.efivars, host.firmware.vars_template, say)
                if create_efivars(paths.efivars, host.firmware.vars_template):
                    say(f"{vm.name}: created {paths.efivars}")
        if "seed" in parts:
            write_seed(cluster, target, vm, inputs)
            say(f"{vm.name}: wrote {paths.seed}")
        record_identity(cluster, vm)


def unused_name(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`, … : the first that does not exist."""
    number = 0
    while (candidate := path if number == 0 else path.with_name(f"{path.name}.{number}")).exists():
        number += 1
    return candidate


def set_aside_damaged_store(vm: VM, store: Path, template: Path, say: Callable[[str], None]) -> None:
    """A variable store of the wrong size cannot boot anything: keep it beside (the user may
    want what it held) and let a new one be made; the disk boots again from its fallback
    loader (EFI/BOOT), as on its first boot."""
    from .imagecheck import vars_problem

    problem = vars_problem(store, template) if store.is_file() else None
    if problem is None:
        return
    aside = unused_name(store.with_name(store.name + ".damaged"))
    store.rename(aside)
    say(f"{vm.name}: {store} {problem}: moved it to {aside.name}")


def check_vm_files(cluster: Cluster, vm: VM) -> None:
    """What the VM already has is kubenet's: its directory private and the user's, its host key a plain file."""
    from ..store.statedir import check_private
    from .sshkeys import check_own_file

    paths = vm_paths(cluster, vm)
    if paths.dir.exists() or paths.dir.is_symlink():
        check_private(paths.dir, f"{vm.name}'s directory")
        for path in (paths.host_key, paths.host_key.with_name(paths.host_key.name + ".pub")):
            check_own_file(path)


def seed_contents(cluster: Cluster, target: Target, vm: VM, inputs: SeedInputs) -> dict[str, bytes]:
    """The files the VM's seed holds, made now from the inputs (and its host key, made if missing)."""
    return seed_files(cluster, vm, target.mode, inputs.templates, inputs.login_key, ensure_host_key(cluster, vm.name), inputs.network)


def write_seed(cluster: Cluster, target: Target, vm: VM, inputs: SeedInputs) -> None:
    paths = vm_paths(cluster, vm)
    files = seed_contents(cluster, target, vm, inputs)
    for name, data in files.items():  # plain copies, to read and to feed to cloud-init tooling
        write_atomic(paths.dir / name, data)
    write_seed_iso(files, paths.seed)


def seed_is_current(cluster: Cluster, target: Target, vm: VM, inputs: SeedInputs) -> bool:
    """Whether the VM's seed exists and its plain copies are what write_seed would write now."""
    paths = vm_paths(cluster, vm)
    if not paths.seed.exists():
        return False
    wanted = seed_contents(cluster, target, vm, inputs)
    return all((paths.dir / name).is_file() and (paths.dir / name).read_bytes() == data for name, data in wanted.items())


def setup_ssh(cluster: Cluster, target: Target) -> list[Path]:
    """known_hosts and ssh_config for the whole cluster; cheap, so always rewritten."""
    return write_ssh_files(cluster, target.mode)


# What each file of a VM is made by: make names the files it finds out of date.
FILE_PARTS = {"disk.img": "disk", "efivars.qcow2": "disk", "cidata.iso": "seed"}
CLUSTER_FILES = ("known_hosts", "ssh_config")


def parts_for_files(cluster: Cluster, files: list[str]) -> dict[str, list[str]]:
    """The parts to make per VM name, for the paths make found out of date."""
    state = cluster.state_dir.absolute()
    per_vm: dict[str, list[str]] = {}
    for file in files:
        path = Path(file).absolute()
        if path.parent == state and path.name in CLUSTER_FILES:
            continue  # written after every setup anyway
        elif path.parent.parent == state and path.name in FILE_PARTS and cluster.vm_by_name(path.parent.name):
            parts = per_vm.setdefault(path.parent.name, [])
            if FILE_PARTS[path.name] not in parts:
                parts.append(FILE_PARTS[path.name])
        else:
            raise errors.SetupError(f"{file} is not a file kubenet makes for {cluster.source}")
    return per_vm


def setup_plan(cluster: Cluster, chosen: list[VM], only: tuple[bool, bool, bool], files_from: str | None) -> tuple[dict[VM, list[str]], bool]:
    """What `vmsetup` makes: per VM the parts (disk, seed), and whether the ssh files too.

    `files_from` names a list of out-of-date files (make's); else `only` (--disk, --seed,
    --ssh) picks parts for the chosen VMs, and none picked means all of them.
    """
    if files_from:
        per_vm = parts_for_files(cluster, Path(files_from).read_text().split())
        # the ssh files are cheap, and name what the VMs' files hold: always rewritten with them
        return {cluster.vm_by_name(name): parts for name, parts in per_vm.items()}, True
    parts = [part for part, wanted in zip(PARTS, only) if wanted] or list(PARTS)
    return {vm: [part for part in parts if part != "ssh"] for vm in chosen}, "ssh" in parts


def prepare_cluster(cluster: Cluster, target: Target, plan: dict[VM, list[str]], ssh: bool, say: Callable[[str], None]) -> None:
    """Make the planned parts of each VM, then (if asked) the cluster's ssh files.

    Templates and key are read first, so a mistake stops setup before any write;
    VMs are prepared in parallel, as their steps mostly wait for qemu-img and ssh-keygen.
    """
    check_identities(cluster)  # once for the cluster: each VM's record is read here
    inputs = read_seed_inputs(cluster)
    if any("seed" in parts for parts in plan.values()):
        check_user_data(cluster, target, inputs)
    for vm in plan:
        check_vm_files(cluster, vm)
    if base_image(cluster, target.host) is not None and any("disk" in parts for parts in plan.values()):
        from .image import check_local_image

        check_local_image(cluster, target.host)  # a wrong image.sha256 stops setup before the first disk
    for_each([(vm, parts) for vm, parts in plan.items() if parts], lambda job: setup_vm(cluster, target, job[0], job[1], say, inputs), limit=4)
    if ssh:
        for path in setup_ssh(cluster, target):
            say(f"kubenet: wrote {path}")
