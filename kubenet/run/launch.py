"""Start VMs: one in the foreground (`invoke vm`: qemu replaces the task), or the
cluster in the detached tmux session `<cluster>-qemu` (`invoke up`), then wait
until they answer.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Callable

from ..machine.target import Target, remember_accel
from ..model.cluster import VM, Cluster, ImageKind, NetworkMode, ReadyWhen, memory_bytes
from ..model.host import needs_efivars
from ..model.paths import vm_paths
from ..plumbing import errors
from ..plumbing.fsutil import fresh_private_file
from ..plumbing.process import absolute_program, replace_process
from ..plumbing.qmp import greets
from ..store.identity import check_identities, record_identity
from ..store.statedir import cluster_lock, vm_dir
from .asroot import authorize, handover_argv
from .handover import GUEST_AGENT_FD, QMP_FD
from .layout import check_ours, qemu_session, qemu_session_name
from .qemu import Management, qemu_argv, run_as_options
from .tmux import Tmux, extend_groups, one_line, pane_command, session_groups
from .vde import CUT_OFF, restart_hint
from .vmstate import forget_answers, is_running

QEMU_HINT = "install qemu (`apt install qemu-system`, `brew install qemu`) or set KUBENET_QEMU"


def management_for(cluster: Cluster, vm: VM, target: Target) -> Management:
    paths = vm_paths(cluster, vm)
    return Management(
        qmp=paths.qmp.absolute(),
        pidfile=paths.pidfile.absolute(),
        serial_log=paths.serial_log.absolute(),
        guest_agent=paths.guest_agent.absolute(),
        # handover.py makes them, as the user
        qmp_fd=QMP_FD if target.root else None,
        guest_agent_fd=GUEST_AGENT_FD if target.root else None,
    )


def vm_argv(cluster: Cluster, vm: VM, target: Target, managed: bool = False) -> list[str]:
    """The VM's qemu command: the tutorial's; `managed` adds what `up` adds (QMP socket, pid
    file, console log, and for a qemu that must start as root, the user it then runs as)."""
    if not managed:
        return qemu_argv(cluster, vm, target.host, target.accel, target.mode)
    return qemu_argv(cluster, vm, target.host, target.accel, target.mode, management_for(cluster, vm, target)) + dropping_root(target)


def dropping_root(target: Target) -> list[str]:
    """For a qemu that must start as root: run as the user once the network is open."""
    return run_as_options(target.run_as, target.host.qemu_version) if target.root and target.run_as else []


def prepare_launch(cluster: Cluster, vm: VM, target: Target) -> list[str]:
    """Make the VM's pid file and console log, as the user (qemu, even as root, writes into
    them), and return what `up` runs: qemu, or for a network that needs root, handover.py
    then qemu (see asroot.py)."""
    paths = vm_paths(cluster, vm)
    for path in (paths.pidfile, paths.serial_log):
        fresh_private_file(path)
    argv = vm_argv(cluster, vm, target, managed=True)
    if not target.root:
        return argv
    return handover_argv(target.run_as or "", paths.qmp.absolute(), paths.guest_agent.absolute(), absolute_program(argv))


def missing_files(cluster: Cluster, vm: VM, target: Target) -> list[str]:
    paths = vm_paths(cluster, vm)
    needed = [paths.disk, paths.seed, *([paths.efivars] if needs_efivars(cluster, target.host) else [])]
    return [str(path) for path in needed if not path.exists()]


def check_launchable(cluster: Cluster, vms: list[VM], target: Target) -> None:
    if not target.host.qemu_found:
        raise errors.HostError(f"{target.host.qemu} not found", QEMU_HINT)
    if cluster.image.kind == ImageKind.KERNEL:
        for key in ("kernel", "initrd"):
            path = getattr(cluster.image, key)
            if not os.path.isfile(path):
                raise errors.SetupError(f"{cluster.source}: image.{key}: {path} does not exist", f"point image.{key} at your {key} file")
    host = target.host
    for vm in vms:
        if host.memory is not None and memory_bytes(vm.memory) > host.memory:
            raise errors.HostError(
                f"{vm.name} asks for {vm.memory} of memory, more than this machine has ({host.memory / 2**30:.1f}G)",
                f"give role {vm.role} less memory in {cluster.source}",
            )
        if vm.vcpus > host.arch.max_vcpus():
            raise errors.HostError(
                f"{vm.name} asks for {vm.vcpus} vCPUs; qemu gives one VM at most {host.arch.max_vcpus()}",
                f"give role {vm.role} fewer vcpus in {cluster.source}",
            )
        missing = missing_files(cluster, vm, target)
        if missing:
            raise errors.SetupError(f"{vm.name} is not set up: missing {', '.join(missing)}", f"run `make setup` or `invoke vmsetup --id {vm.id}`")
        check_images(cluster, vm, target)


def check_images(cluster: Cluster, vm: VM, target: Target) -> None:
    from ..prepare.imagecheck import check_vm_images

    paths = vm_paths(cluster, vm)
    firmware = target.host.firmware
    uefi = needs_efivars(cluster, target.host)
    check_vm_images(vm.name, paths.disk, paths.efivars if uefi else None, firmware.vars_template if uefi and firmware else None)


def check_ports(cluster: Cluster, vms: list[VM], target: Target) -> None:
    """User mode: each VM's forwarded SSH port must be free, or its qemu fails with a message
    about host forwarding that does not say which setting to change."""
    if target.mode != NetworkMode.USER:
        return
    from ..model.network import LOOPBACK, ssh_port
    from ..machine.probe import port_taken

    taken = [f"{vm.name} ({ssh_port(cluster.network, vm)})" for vm in vms if port_taken(LOOPBACK, ssh_port(cluster.network, vm))]
    if taken:
        raise errors.HostError(
            f"SSH port{'s' if len(taken) > 1 else ''} already in use on {LOOPBACK}: {', '.join(taken)} (another cluster or program holds them)",
            f"set network.ssh_port_base in {cluster.source} to a free range (now {cluster.network.ssh_port_base})",
        )


def prepare_network(cluster: Cluster, target: Target) -> None:
    from ..model.network import check_bridge_subnet, check_vmnet_shared

    if target.mode == NetworkMode.BRIDGE and target.host.system == "linux":
        from ..machine.probe import bridge_side_gaps

        check_bridge_subnet(cluster.network, target.host)
        gaps = bridge_side_gaps(cluster.network)
        if gaps:
            raise errors.HostError(
                f"bridge mode needs on this host: {', '.join(gaps)}",
                "run `make hostnet` (it also sets up NAT and the cluster's names; it asks sudo once)",
            )
    if target.mode == NetworkMode.VMNET_SHARED:
        check_vmnet_shared(cluster.network, target.host)
    if target.mode == NetworkMode.USER:
        from .vde import ensure_switch

        ensure_switch(cluster)


def cut_off_vms(cluster: Cluster, target: Target, running: list[VM]) -> list[str]:
    """User mode: the running VMs whose qemu lost the cluster's switch (it was restarted under
    them): they answer SSH but reach no other VM."""
    if target.mode != NetworkMode.USER or not running:
        return []
    from .vde import connected_pids, plug_state
    from .vmstate import qemu_pid

    plugged = connected_pids(cluster)
    return [vm.name for vm in running if plug_state(cluster, plugged, qemu_pid(cluster, vm)) == "cut off"]


def memory_warning(cluster: Cluster, target: Target) -> str | None:
    """The cluster may start, but its VMs' qemus are likely to hold more memory together than
    the machine has: each guest's memory and, under TCG, each translation cache."""
    from .hostmemory import likely_held, translation_cache

    likely = likely_held(cluster, cluster.local_vms, target.accel)
    if target.host.memory is None or likely <= target.host.memory:
        return None
    configured = sum(memory_bytes(vm.memory) for vm in cluster.local_vms)
    cache = translation_cache(cluster, target.accel)
    what = f"their {configured / 2**30:.1f}G of memory" + (f" and {len(cluster.local_vms)} TCG translation caches of {cache >> 20}M" if cache else "")
    return f"the cluster's VMs are likely to hold {likely / 2**30:.1f}G of this machine's memory ({what}); it has {target.host.memory / 2**30:.1f}G"


def reserved_range(cluster: Cluster, target: Target) -> str | None:
    """On macOS, what of the system's own holds addresses of the cluster's subnet (machine.macos)."""
    if target.host.system != "darwin":
        return None
    import platform

    from ..machine.macos import macos_version, reserved_clash

    version = macos_version(platform.mac_ver()[0])
    return reserved_clash(cluster.network.subnet, version[0] if version else None)


def exec_vm(cluster: Cluster, vm: VM, target: Target, managed: bool, say: Callable[[str], None]) -> None:
    if is_running(cluster, vm):
        raise errors.LaunchError(f"{vm.name} is already running", f"see `invoke ls`; stop it with `invoke stop --id {vm.id}`")
    check_identities(cluster)
    check_launchable(cluster, [vm], target)
    check_ports(cluster, [vm], target)
    record_identity(cluster, vm)
    prepare_network(cluster, target)
    from ..store.provision import REPROVISION_NOTE, note_booted, will_reprovision

    if will_reprovision(cluster, vm):
        say(f"kubenet: {vm.name} re-provisions at this boot: {REPROVISION_NOTE}")
    note_booted(cluster, vm)
    os.umask(0o077)  # qemu's pid file and QMP socket are private; this process becomes qemu
    argv = prepare_launch(cluster, vm, target) if managed else vm_argv(cluster, vm, target) + dropping_root(target)
    if target.root:
        argv = ["sudo", "--", *absolute_program(argv)]  # asks here, in the foreground; qemu then runs as the user
    replace_process(argv, QEMU_HINT)


@dataclass(frozen=True)
class LaunchResult:
    session: str
    started: list[str]
    already_running: list[str]
    attach: str  # the command that shows the session, for the user to type
    failed: dict[str, str]  # VMs whose qemu exited as it started: what it said
    reprovisioning: list[str] = ()  # VMs started with a seed other than their last boot's


# How long a new qemu has to finish starting (to greet on its QMP socket) before
# it counts as started anyway; one that exits meanwhile did not start.
CONFIRM_SECONDS = 3.0
DEAD_PANE_SECONDS = 0.25  # how often tmux is asked whether a new qemu's pane died


def confirm_started(cluster: Cluster, vms: list[VM], tmux: Tmux, session: str) -> dict[str, str]:
    """Wait until each new qemu has started (greets on QMP) or exited; the last words of those that exited."""
    deadline = time.monotonic() + CONFIRM_SECONDS
    pending = {vm.name: vm for vm in vms}
    failed: dict[str, str] = {}
    asked = 0.0  # when tmux was last asked for dead panes: a process each time, so seldom
    while pending and time.monotonic() < deadline:
        for name in [name for name, vm in pending.items() if greets(vm_paths(cluster, vm).qmp)]:
            del pending[name]
        if pending and time.monotonic() - asked >= DEAD_PANE_SECONDS:
            asked = time.monotonic()
            for name, words in tmux.last_words(session).items():
                if name in pending:
                    failed[name] = words
                    del pending[name]
        if pending:
            time.sleep(0.01)
    return {vm.name: failed[vm.name] for vm in vms if vm.name in failed}  # in the cluster's order


def launch_cluster(
    cluster: Cluster, vms: list[VM], target: Target, tmux: Tmux | None = None, say: Callable[[str], None] = lambda _: None
) -> LaunchResult:
    """Start every VM of `vms` that is not running, each in its pane of `<cluster>-qemu`.

    Launches of one cluster are serialised: two `up`s at once start each VM once,
    and the second sees the first's panes as running.
    """
    with cluster_lock(cluster, say):
        if target.root:
            if all(is_running(cluster, vm) for vm in vms):  # nothing to start: no need to ask for root
                return LaunchResult(qemu_session_name(cluster), [], [vm.name for vm in vms], attach_hint(tmux_for(target), cluster), {})
            authorize(target, f"starting qemu, which then runs as {target.run_as},", say)
        return _launch_cluster(cluster, vms, target, tmux or tmux_for(target))


def tmux_for(target: Target) -> Tmux:
    """The tmux server of the VMs' session: root's when qemu must start as root."""
    return Tmux.from_environment(sudo=target.root)


def attach_hint(tmux: Tmux, cluster: Cluster) -> str:
    return shlex.join(tmux.argv([["attach-session", "-t", qemu_session_name(cluster)]], asking=True))


def _launch_cluster(cluster: Cluster, vms: list[VM], target: Target, tmux: Tmux) -> LaunchResult:
    check_identities(cluster)
    session = qemu_session_name(cluster)
    # Ask tmux only if the session may exist; a fresh launch spares the query.
    panes = tmux.panes(session) if tmux.server_has(session) else []
    check_ours(cluster, session, panes[0].owner if panes else None)
    alive = {pane.vm for pane in panes if not pane.dead}
    running = [vm.name for vm in vms if vm.name in alive or is_running(cluster, vm)]
    to_start = [vm for vm in vms if vm.name not in running]
    reprovisioning: list[str] = []
    if not to_start and target.mode == NetworkMode.USER and running:
        from .vde import ensure_switch

        ensure_switch(cluster)  # a switch that died under running VMs is started again for them to rejoin
    if to_start:
        check_launchable(cluster, to_start, target)
        check_ports(cluster, to_start, target)
        for vm in to_start:
            record_identity(cluster, vm)
        prepare_network(cluster, target)
        from ..prepare.disk import repair_leaks_left
        from ..store.provision import note_booted, will_reprovision

        reprovisioning = [vm.name for vm in to_start if will_reprovision(cluster, vm)]
        commands = {}
        for vm in to_start:
            note_booted(cluster, vm)
            repair_leaks_left(vm_dir(cluster, vm))  # asked for while an earlier qemu had its images open
            forget_answers(cluster, vm)
            commands[vm.name] = pane_command(prepare_launch(cluster, vm, target))
        if panes:
            tmux.run_groups(extend_groups(session, panes, commands), f"adding panes to tmux session {session}")
        else:
            tmux.run_groups(session_groups(qemu_session(cluster, commands)), f"opening tmux session {session}")
    if to_start:
        remember_accel(cluster, target.accel)
    failed = confirm_started(cluster, to_start, tmux, session) if to_start else {}
    started = [vm.name for vm in to_start if vm.name not in failed]
    return LaunchResult(session, started, running, attach_hint(tmux, cluster), failed, [name for name in reprovisioning if name in started])


# What qemu prints when its hardware accelerator opens but cannot run the guest: KVM's and
# HVF's init failures and assertions (seen where /dev/kvm opens inside a VM without nested
# virtualisation, or on a Mac whose hypervisor refuses).
ACCELERATOR_FAILURES = re.compile(
    r"kvm_buf_set_msrs|failed to set MSR|failed to initialize kvm|Could not access KVM kernel module|KVM internal error|"
    r"kvm run failed|kvm_init_vcpu|KVM_[A-Z_]+ failed|error: kvm|HV_ERROR|HV_UNSUPPORTED|HV_DENIED|hv_vm_create|hvf: |Error: HV_",
    re.IGNORECASE,
)


def accelerator_failure(words: str, accel: str) -> str | None:
    """The fix, when what qemu said as it died is its accelerator failing (KVM or HVF); None otherwise."""
    if accel == "tcg" or not ACCELERATOR_FAILURES.search(words):
        return None
    return (
        f"the accelerator ({accel}) cannot run guests on this host: set `accel: tcg` in cluster.yaml, "
        f"or run `invoke up --accel tcg` (slower: software emulation)"
    )


def say_disk_damage(cluster: Cluster, name: str, say: Callable[[str], None]) -> None:
    """After qemu failed: what `qemu-img check` finds wrong with the VM's disk, if anything."""
    from ..prepare.imagecheck import qemu_img_check

    disk = vm_paths(cluster, cluster.vm_by_name(name)).disk
    found = qemu_img_check(disk) if disk.is_file() else None
    if found:
        say(f"kubenet: {name}: qemu-img check {disk}: {found} (hint: `qemu-img check -r all {disk}` repairs what can be kept)")


def up_and_wait(
    cluster: Cluster, vms: list[VM], target: Target, timeout: float | None, say: Callable[[str], None], until: ReadyWhen | None = None
) -> None:
    """Start what is not running, then (unless timeout is None) wait until all of `vms` are
    ready (`until`, else the cluster's `ready`: SSH, or cloud-init finished too) and report."""
    from .readiness import summary, wait_ready

    result = launch_cluster(cluster, vms, target, say=say)
    warning = memory_warning(cluster, target)
    if warning and result.started:
        say(f"kubenet: warning: {warning}")
    clash = reserved_range(cluster, target)
    if clash and result.started:
        say(f"kubenet: warning: network.subnet {cluster.network.subnet} overlaps what macOS keeps for itself: {clash} (hint: move the cluster to another subnet, e.g. 192.168.100.0/24)")
    if result.started:
        say(f"kubenet: started {' '.join(result.started)} in tmux session {result.session} (watch: {result.attach})")
    if result.already_running:
        say(f"kubenet: already running: {' '.join(result.already_running)}")
        from ..store.provision import not_yet_applied, will_reprovision

        stale = [name for name in result.already_running if will_reprovision(cluster, cluster.vm_by_name(name))]
        if stale:
            say(f"kubenet: {not_yet_applied(stale)}")
    if result.reprovisioning:
        from ..store.provision import REPROVISION_NOTE

        say(f"kubenet: {' '.join(result.reprovisioning)} re-provision{'s' if len(result.reprovisioning) == 1 else ''} at this boot: {REPROVISION_NOTE}")
    if cluster.pod_routes and (result.started or result.already_running):
        from ..hostside.podroutes import keep_darwin_routes, linux_routes, missing_routes

        if target.host.system == "darwin":
            keep_darwin_routes(cluster, say)  # macOS took them away with the last VM
        elif target.mode == NetworkMode.BRIDGE and missing_routes(cluster, linux_routes()):
            say("kubenet: warning: the routes to the pods' networks are missing (pod_routes: true); run `make hostnet` to add them")
    for name, words in result.failed.items():
        say(f"kubenet: {name}: qemu exited as it started; it said:")
        for line in words.splitlines():
            say(f"  {line}")
        say_disk_damage(cluster, name, say)
    broken = next((accelerator_failure(words, target.accel) for words in result.failed.values() if accelerator_failure(words, target.accel)), None)
    failed = errors.LaunchError(f"{len(result.failed)} VMs did not start: {' '.join(result.failed)}", broken or "see what qemu said above")
    cut_off = cut_off_vms(cluster, target, [vm for vm in vms if vm.name in result.already_running])
    for name in cut_off:
        say(f"kubenet: {name}: {CUT_OFF} {restart_hint(name)}")
    isolated = errors.LaunchError(f"{len(cut_off)} VMs are cut off from the cluster network: {' '.join(cut_off)}", "restart them as said above")
    waiting = [vm for vm in vms if vm.name not in result.failed and vm.name not in cut_off]
    if timeout is None or not waiting:
        if result.failed:
            raise failed
        if cut_off:
            raise isolated
        return

    until = until or cluster.ready

    from .bootprogress import LOG_SECONDS, TERMINAL_SECONDS, BootProgress

    terminal = sys.stderr if sys.stderr.isatty() else None
    logs = {vm.name: vm_paths(cluster, vm).serial_log for vm in waiting}
    progress = BootProgress(logs, "SSH", TERMINAL_SECONDS if terminal else LOG_SECONDS, say, terminal)

    def report(stage: str, readiness) -> None:
        next_wait = "cloud-init" if stage == "ssh" and readiness.ready and until == ReadyWhen.CLOUD_INIT else None
        progress.now_waiting_for(readiness.vm, next_wait)
        if stage == "ssh" and readiness.ready:
            progress.say(f"kubenet: {readiness.vm} answers SSH after {readiness.seconds:.1f} s")
        elif stage == "cloud-init" and readiness.ready:
            state = {"absent": "no cloud-init in the guest", "disabled": "cloud-init disabled"}.get(readiness.cloud_init, "cloud-init done")
            progress.say(f"kubenet: {readiness.vm} ready after {readiness.seconds:.1f} s ({state})")
        elif stage == "cloud-init" and readiness.cloud_init == "error":
            progress.say(f"kubenet: {readiness.vm}: {readiness.reason}")

    what = "SSH and cloud-init" if until == ReadyWhen.CLOUD_INIT else "SSH"
    tmux = tmux_for(target)
    try:
        say(f"kubenet: waiting up to {timeout:.0f} s for {what} on {len(waiting)} VMs")
        with progress:
            results = wait_ready(cluster, waiting, timeout, report, until, lambda name: one_line(tmux.last_words(result.session).get(name, "")))
    except KeyboardInterrupt:
        running = [vm.name for vm in waiting if is_running(cluster, vm)]
        if running:
            say(f"kubenet: stopped waiting; still running: {' '.join(running)} (`make up` waits for them again, `make down` stops them)")
        raise
    for line in summary(cluster, results):
        say(f"kubenet: {line}")
    if result.failed:
        raise failed
    if cut_off:
        raise isolated
    if not all(r.ready for r in results):
        broken = next((hint for r in results if not r.ready and (hint := accelerator_failure(r.reason, target.accel))), None)
        raise errors.LaunchError(f"{sum(not r.ready for r in results)} VMs did not become ready", broken or "see the reasons above")
