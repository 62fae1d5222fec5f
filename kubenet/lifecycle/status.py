"""What `invoke ls` shows: a row per VM (is it running, under which pid, what its qemu
says it is doing, whether its guest proved ready), and the notes below the table.

Everything in a row is true when `ls` runs, and asking costs the guests nothing: the
running VMs' qemus are asked at once, in parallel and briefly (QMP's run state), and
their console logs read (a guest that rebooted since it proved ready); no guest's sshd
is knocked on. Listing needs the network mode (for SSH endpoints), not the
accelerator, so no qemu binary is run; tmux only when the session's server exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from ..hosts.remote import Answer, run_on
from ..model.cluster import VM, Cluster, NetworkMode, RemoteHost
from ..plumbing import errors
from ..plumbing.parallel import for_each
from ..run.vde import CUT_OFF, restart_hint

# A row's states that are not a running VM: stopped, or on a host that did not say (multihost).
NOT_RUNNING = ("stopped", "unreachable", "unknown")
ASK_SECONDS = 0.5  # how long one VM may take to answer `ls`; the VMs are asked in parallel


@dataclass(frozen=True)
class Exit:
    """How a VM's qemu ended, as its dead pane tells: its status and last words."""

    status: int | None
    words: str

    @property
    def clean(self) -> bool:
        return self.status == 0  # the guest powered off, or qemu was told to quit

    def __str__(self) -> str:
        from ..run.tmux import one_line

        return "powered off" if self.clean else f"its qemu exited: {one_line(self.words)}"


def listing(cluster: Cluster) -> list[dict]:
    """The rows of `invoke ls`."""
    from ..run.layout import qemu_session_name
    from ..model.network import needs_root, resolve_mode
    from ..machine.probe import probe_host
    from ..run.tmux import Tmux

    host = probe_host(firmware_needed=False)
    mode = resolve_mode(cluster.network, host)
    # root's session (a network that needs root) is not read: listing never asks for root
    exits = {} if needs_root(mode, host) else Tmux.from_environment().exits(qemu_session_name(cluster))
    return vm_rows(cluster, mode, {vm: Exit(*exit) for vm, exit in exits.items()})


def listing_notes(cluster: Cluster, rows: list[dict]) -> list[str]:
    """What `invoke ls` adds on stderr below its table: how stopped VMs ended, and where they run."""
    from ..run.layout import is_ours, qemu_session_name, ssh_session_name
    from ..run.tmux import Tmux

    from ..store.identity import changes, from_record

    notes = [f"kubenet: {row['name']}: {row['exited']}" for row in rows if row["exited"]]
    notes += [
        f"kubenet: {row['name']}: no longer in {cluster.source} (orphaned): `invoke down` stops it, `invoke reset --name {row['name']}` removes its disk"
        for row in rows if row.get("orphaned")
    ]  # fmt: skip
    notes += [
        f"kubenet: {row['name']}: shown as it was made; {cluster.source} now gives it {', '.join(moved)}"
        for row in rows if not row.get("orphaned") and (moved := changes(cluster.vm_by_name(row["name"]), from_record(row)))
    ]  # fmt: skip
    notes += [f"kubenet: {row['name']}: {CUT_OFF} {restart_hint(row['name'])}" for row in rows if row.get("cluster_net") == "cut off"]
    from ..store.provision import not_yet_applied, will_reprovision

    stale = [row["name"] for row in rows if row["state"] not in NOT_RUNNING and not row.get("orphaned")
             and will_reprovision(cluster, cluster.vm_by_name(row["name"]))]  # fmt: skip
    notes += [f"kubenet: {not_yet_applied(stale)}"] if stale else []
    if any(row.get("cluster_net") for row in rows):
        from ..run.vde import running_pid

        pid = running_pid(cluster)
        notes.append(f"kubenet: VDE switch: {'running, pid ' + str(pid) if pid else 'not running (`invoke up` starts it)'}")
    from ..run.hostmemory import held_note

    notes += [note] if (note := held_note(rows)) else []
    from ..run.tunnel import note as tunnel_note

    notes += [note] if (note := tunnel_note(cluster)) else []
    notes += host_side_notes(cluster)
    from ..snapshots.snaprecord import cut_short_notes
    from ..store.statedir import cluster_busy

    notes += cut_short_notes(cluster, cluster_busy(cluster))
    running = sum(row["state"] not in NOT_RUNNING for row in rows)
    tmux = Tmux.from_environment()
    sessions = [
        f"{name} ({what})"
        for name, what in ((qemu_session_name(cluster), "VMs"), (ssh_session_name(cluster), "ssh-all"))
        if tmux.server_has(name) and (owner := tmux.session_owner(name)) is not None and is_ours(cluster, owner)
    ]  # only sessions that exist and are this cluster's
    where = f"; tmux sessions: {', '.join(sessions)}" if sessions else ""
    return [*notes, f"kubenet: {running} of {len(rows)} VMs running{where}"]


def host_side_notes(cluster: Cluster) -> list[str]:
    """The pod routes and the NFS export, for a cluster file that asks for them (only then is the host probed)."""
    if not cluster.pod_routes and cluster.nfs is None:
        return []
    from ..hostside import nfsexport
    from ..hostside import podroutes
    from ..model.network import resolve_mode
    from ..machine.probe import probe_host

    host = probe_host(firmware_needed=False)
    mode = resolve_mode(cluster.network, host)
    return [note for module in (podroutes, nfsexport) if (note := module.note(cluster, host.system, mode))]


def vm_rows(cluster: Cluster, mode: NetworkMode, exits: dict[str, Exit] | None = None) -> list[dict]:
    """A row per VM; `exits` says how the qemus whose pane has died ended."""
    from ..model.network import ssh_endpoint
    from ..plumbing.parallel import for_each
    from ..run.vmstate import vm_state

    from ..store.identity import orphans, recorded
    from ..run.hostmemory import resident_bytes

    records = recorded(cluster)
    # a VM is shown as it was made (cluster.yaml may have renumbered it since), then the orphans
    vms = [records.get(vm.name, vm) for vm in cluster.local_vms] + orphans(cluster, records)
    orphaned = {vm.name for vm in vms[len(cluster.local_vms):]}
    states = {vm.name: vm_state(cluster, vm) for vm in vms}
    from ..run.vde import connected_pids, plug_state

    plugged = connected_pids(cluster) if mode == NetworkMode.USER and any(state.pid for state in states.values()) else None

    answers = dict(zip(
        [vm.name for vm in vms],
        for_each(vms, lambda vm: ask(cluster, vm, states[vm.name].pid) if states[vm.name].running else (None, None)),
    ))  # fmt: skip
    rows = []
    for vm in vms:
        state, (run_state, ready) = states[vm.name], answers[vm.name]
        exited = None if state.running else (exits or {}).get(vm.name)
        rows.append(vm_row(
            vm, str(ssh_endpoint(cluster.network, mode, vm)),
            (run_state if run_state not in (None, "running") else "running") if state.running else "stopped",
            rss=resident_bytes(state.pid) if state.running and state.pid else None,
            pid=state.pid,
            ready=ready,
            exited=None if exited is None else str(exited),
            cluster_net=plug_state(cluster, plugged, state.pid),
            orphaned=vm.name in orphaned,
        ))  # fmt: skip
    return rows


def vm_row(vm: VM, ssh: str, state: str, rss: int | None = None, pid: int | None = None, ready: str | None = None,
           exited: str | None = None, cluster_net: str | None = None, orphaned: bool = False) -> dict:  # fmt: skip
    """One row of `ls`, its keys in the order the table shows them."""
    return {
        "id": vm.id, "name": vm.name, "role": vm.role, "vcpus": vm.vcpus, "memory": vm.memory, "rss": rss,
        "mac": vm.mac, "ip": str(vm.ip), "ssh": ssh, "state": state, "pid": pid, "ready": ready,
        "exited": exited, "cluster_net": cluster_net, "orphaned": orphaned,
    }  # fmt: skip


TABLE_HIDES = ("exited", "cluster_net", "orphaned")  # said in the notes below the table


def table_rows(rows: list[dict]) -> list[dict]:
    """The rows as the table shows them: what the qemu holds (HELD) as a size beside MEMORY."""
    from ..run.hostmemory import memory_text

    return [
        {("held" if key == "rss" else key): (memory_text(value) if key == "rss" and value is not None else value)
         for key, value in row.items() if key not in TABLE_HIDES}
        for row in rows
    ]  # fmt: skip


# READY: what is known of the guest in this qemu's life. `yes`: it proved ready (SSH logged
# in, and cloud-init finished when cluster.yaml's `ready` asks for it) and has not rebooted
# since; `no`: not proved yet (booting, or started with --no-wait: `invoke up` waits);
# `rebooted`: it proved ready, then its console showed a new boot; `unknown`: its qemu did
# not say within the bound (busy: a snapshot, a loaded host), or kubenet did not start it.
READY_VALUES = ("yes", "no", "rebooted", "unknown")


def ready_value(proved: bool, rebooted: bool, answered: bool, own: bool) -> str:
    """READY of a running VM: see READY_VALUES."""
    if not own:
        return "unknown"
    if not proved:
        return "no"
    if rebooted:
        return "rebooted"
    return "yes" if answered else "unknown"


def ask(cluster: Cluster, vm: VM, pid: int | None) -> tuple[str | None, str]:
    """A running VM's state now, from what the host has (its qemu over QMP, its console log),
    never from the guest's sshd: what its qemu says it is doing (None: it did not say in
    time), and READY."""
    from ..prepare.bootmarks import rebooted_since
    from ..model.cluster import ReadyWhen
    from ..plumbing.qmp import run_state
    from ..model.paths import vm_paths
    from ..run.vmstate import answered_before, cloud_init_done_before

    paths = vm_paths(cluster, vm)
    said = run_state(paths.qmp, ASK_SECONDS)
    proof = answered_before(cluster, vm, pid) if pid is not None else None
    if proof is not None and cluster.ready == ReadyWhen.CLOUD_INIT:
        proof = cloud_init_done_before(cluster, vm, pid)
    rebooted = proof is not None and rebooted_since(paths.serial_log, proof.offset, proof.boot)
    return said, ready_value(proof is not None, rebooted, said is not None, pid is not None)


def listing_everywhere(cluster: Cluster, local_rows: Callable[[], list[dict]]) -> tuple[list[dict], list[str]]:
    """Every VM's row, each with the host it runs on, in id order (orphans last), and a note
    per host that did not answer; every host is asked at once, within LS_SECONDS."""
    hosts = cluster.placed_hosts()
    jobs: list = [None, *hosts]

    def ask(host: RemoteHost | None):
        if host is None:
            return local_rows()
        try:
            return run_on(cluster, host, "ls", "--json", timeout=LS_SECONDS)
        except errors.KubenetError as error:  # no ssh_config yet, say
            return Answer(host.name, 1, stderr=f"kubenet: error: {error}")

    results = for_each(jobs, ask)
    rows = [with_host(row, cluster.here) for row in results[0]]
    notes, silent = [], set()
    for host, answer in zip(hosts, results[1:]):
        told = host_rows(answer)
        if told is None:
            state = UNREACHABLE if not answer.reachable else "unknown"
            notes.append(f"kubenet: host {host.name} ({host.destination}): {state}: {answer.reason()}")
            told = [absent_row(cluster, vm, state) for vm in cluster.vms if vm.host == host.name]
            if state == UNREACHABLE:
                silent.add(host.name)
        rows += [with_host(row, host.name) for row in told]
    known = {vm.name: vm.id for vm in cluster.vms}
    rows.sort(key=lambda row: (row["name"] not in known, known.get(row["name"], 0)))
    from ..hosts import cable

    # a cable to a host gone silent looks connected until ssh's keepalive gives up
    notes += [f"kubenet: cable to {host.name}: {cable.describe(cluster, host)}" + (" (its host does not answer now)" if host.name in silent else "")
              for host in hosts]  # fmt: skip
    return rows, notes


def host_rows(answer: Answer) -> list[dict] | None:
    """The rows a host listed, None if it did not (or not as a list of rows)."""
    if not answer.ok:
        return None
    try:
        rows = json.loads(answer.stdout)
    except ValueError:
        return None
    return rows if isinstance(rows, list) and all(isinstance(row, dict) and "name" in row for row in rows) else None


def with_host(row: dict, host: str) -> dict:
    """The row with `host` after `role` (a new key of `ls --json`, so older readers keep theirs)."""
    out = {}
    for key, value in row.items():
        if key != "host":
            out[key] = value
        if key == "role":
            out["host"] = host
    return out


def absent_row(cluster: Cluster, vm: VM, state: str) -> dict:
    """A VM whose host did not answer: what cluster.yaml says of it, and that state."""
    from ..model.network import ssh_endpoint

    return vm_row(vm, str(ssh_endpoint(cluster.network, NetworkMode.USER, vm)), state)


LS_SECONDS = 5.0  # how long `ls` waits for a host before it calls it unreachable


UNREACHABLE = "unreachable"


def listed(cluster: Cluster, every_note: bool) -> tuple[list[dict], list[str]]:
    """`ls`'s rows (every host's VMs) and what it says below them: each note for the table,
    only the hosts' (one that did not answer) for --json."""
    from ..model.choose import spread

    rows, host_notes = listing_everywhere(cluster, lambda: listing(cluster)) if spread(cluster) else (listing(cluster), [])
    return rows, [*host_notes, *(listing_notes(cluster, rows) if every_note else [])]
