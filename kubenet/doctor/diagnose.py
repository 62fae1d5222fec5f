"""`invoke doctor`: the host's checks and every chosen VM's, all at once, each bounded in
time, in a table of ✓ / ✗ / – (or as data), with the cause and the fix of each failure."""

from __future__ import annotations

import time

from ..model.cluster import VM, Cluster
from ..plumbing.parallel import for_each
from .report import Check, not_applicable


def diagnose(cluster: Cluster, vms: list[VM], outside_name: str = "deb.debian.org") -> tuple[list[Check], float]:
    """Every check, the host's first, then each VM's in the cluster's order; and the seconds they
    took. `outside_name`: a name outside the cluster each VM resolves ('': not asked)."""
    from ..machine.target import resolve_target
    from ..run.vmstate import is_running
    from .guestchecks import guest_checks
    from .hostchecks import host_checks, outside_names

    started = time.monotonic()
    target = resolve_target(cluster, bridge_needed=False)  # a missing bridge is one of the checks
    here = [vm for vm in vms if vm.host == cluster.here]
    running = {vm.name: is_running(cluster, vm) for vm in here}
    outside = outside_name if outside_name and outside_names(outside_name) else None

    def job(vm: VM | None) -> list[Check]:
        if vm is None:
            return host_checks(cluster, target)
        if not running[vm.name]:
            return [not_applicable(vm.name, "VM", "not running: `make up` starts it")]
        return guest_checks(cluster, vm, target.mode, outside)

    results = for_each([None, *here], job)
    elsewhere = [not_applicable(vm.name, "VM", f"runs on {vm.host}: `kubenet doctor` there checks it") for vm in vms if vm.host != cluster.here]
    return [check for checks in results for check in checks] + elsewhere, time.monotonic() - started
