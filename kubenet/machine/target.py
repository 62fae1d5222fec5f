"""Where and how the cluster runs, worked out once per command: host, accelerator,
network mode and whether qemu needs root. Everything that builds or runs a VM
takes this one value.

The accelerator is, first to last: `--accel`, then $KUBENET_ACCEL, then
`accel` in cluster.yaml, then the best the host offers (probed only when none
of those chose).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from ..model.cluster import Accel, Cluster, ImageKind, NetworkMode
from ..model.host import Host, host_profile
from ..model.network import needs_root, resolve_mode
from ..plumbing import errors

ACCEL_ENV = "KUBENET_ACCEL"
ACCEL_FILE = "accel"  # in state_dir


@dataclass(frozen=True)
class Target:
    host: Host
    accel: Accel
    mode: NetworkMode  # never AUTO: resolved for this host
    root: bool  # qemu must start as root (vmnet, or a bridge without a setuid helper)
    run_as: str | None = None  # then: the user it runs as once its network is open (the one who runs kubenet)


def choose_accel(
    offered: Callable[[], Accel], configured: Accel | None, environ: Mapping[str, str], option: str | None = None, remembered: str | None = None
) -> Accel:
    """The first that is set of --accel, $KUBENET_ACCEL, cluster.yaml's accel and the one the
    cluster's VMs were last started with; else what the host offers."""
    sources = (
        ("--accel", option, "leave out --accel to let kubenet choose"),
        (ACCEL_ENV, environ.get(ACCEL_ENV), f"unset {ACCEL_ENV} to let kubenet choose"),
        ("accel", configured, "remove accel from cluster.yaml to let kubenet choose"),
        ("the remembered accelerator", remembered if remembered in Accel.values() else None, ""),
    )
    for source, value, hint in sources:
        if value:
            if value not in Accel.values():
                raise errors.HostError(f"{source} {value!r} is not an accelerator; allowed: {', '.join(Accel.values())}", hint)
            return Accel(value)
    return offered()


def remembered_accel(cluster: Cluster) -> str | None:
    """The accelerator the cluster's VMs were last started with on this machine: a VM started
    under tcg from one shell is not restarted under kvm from another unless asked."""
    try:
        return (cluster.state_dir / ACCEL_FILE).read_text().strip()
    except (OSError, UnicodeError):
        return None


def remember_accel(cluster: Cluster, accel: Accel) -> None:
    from ..plumbing.fsutil import write_atomic

    if remembered_accel(cluster) != accel.value:
        write_atomic(cluster.state_dir / ACCEL_FILE, f"{accel.value}\n".encode())


def resolve_target(
    cluster: Cluster, host_kind: str | None = None, accel_option: str | None = None, environ: Mapping[str, str] = os.environ,
    bridge_needed: bool = True,
) -> Target:
    """This machine (probed), or the kind of machine `host_kind` names, as the cluster will use it
    (`bridge_needed`: see resolve_mode)."""
    if host_kind:
        host, accel = host_profile(host_kind)
        offered: Callable[[], Accel] = lambda: accel  # noqa: E731
    else:
        from ..model.paths import cache_dir
        from .probe import probe_accel, probe_host

        answers = cache_dir(environ) / "probe"  # what qemu said of itself, per binary
        host = probe_host(environ=environ, firmware_needed=cluster.image.kind == ImageKind.CLOUD)
        offered = lambda: probe_accel(host, cache=answers)  # noqa: E731
    mode = resolve_mode(cluster.network, host, bridge_needed)
    root = needs_root(mode, host)
    if root and not host_kind:
        from .probe import qemu_version

        host = replace(host, qemu_version=qemu_version(host.qemu, cache=answers))
    accel = choose_accel(offered, cluster.accel, environ, accel_option, None if host_kind else remembered_accel(cluster))
    if accel == Accel.HVF and not host_kind:
        from .probe import sme_breaks_host_cpu

        host = replace(host, sme_breaks_host_cpu=sme_breaks_host_cpu(host, answers))
    return Target(host, accel, mode, root, current_user() if root else None)


def current_user() -> str:
    """The name of the user running kubenet (not $USER, which sudo and su may leave behind)."""
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
