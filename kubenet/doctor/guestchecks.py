"""`doctor`'s checks of each VM from the inside, over one SSH login that runs one small
shell script (busybox and Debian alike): cloud-init's state, the guest's clock against the
host's, every other VM, `vmhost` and `kubernetes` resolving to the address cluster.yaml
gives it and answering, an outside name resolving, free disk and memory.

The script prints `key value...` lines; `facts` reads them and `judge` turns them into
checks, both pure, so each way a guest can be wrong is tested without one."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

from ..model.cluster import VM, Cluster, NetworkMode
from .report import Check, failed, not_applicable, ok

CLOCK_SECONDS = 5.0  # a guest clock further off than this is wrong (certificates check it to the minute)
LOGIN_SECONDS = 20.0
MIN_FREE_DISK, MIN_FREE_MEMORY = 512 << 20, 64 << 20


def script(names: list[str], outside: str | None) -> str:
    """What runs in the guest: each name pinged at once (resolution and answer in one), then the rest."""
    pings = " ".join(shlex.quote(name) for name in names)
    lines = [
        'echo "clock $(date +%s)"',
        'echo "cloud-init $( (cloud-init status 2>/dev/null || echo status: absent) | sed -n "s/^status: *//p" | head -n 1)"',
        f"for name in {pings}; do (out=$(ping -c 1 -W 2 \"$name\" 2>&1); "
        "echo \"name $name $(echo \"$out\" | sed -n '1s/^PING [^ ]* (\\([0-9.]*\\)).*/\\1/p') $(echo \"$out\" | grep -c ' 0% packet loss')\") & done; wait",
        "echo \"disk $(df -Pk / | awk 'NR == 2 {print $4, $2}')\"",
        "echo \"memory $(awk '/^MemAvailable:/ {a = $2} /^MemTotal:/ {t = $2} END {print a, t}' /proc/meminfo)\"",
    ]
    if outside:
        lines.append(f"echo \"outside $(ping -c 1 -W 2 {shlex.quote(outside)} 2>&1 | sed -n '1s/^PING [^ ]* (\\([0-9.]*\\)).*/\\1/p')\"")
    return "; ".join(lines)


@dataclass
class Facts:
    clock: float | None = None
    cloud_init: str = ""
    names: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (address it resolved to, answered)
    disk: tuple[int, int] | None = None  # free, total (bytes)
    memory: tuple[int, int] | None = None  # available, total (bytes)
    outside: str | None = None  # the address an outside name resolved to ("" none); None: not asked


def facts(output: str) -> Facts:
    found = Facts()
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        key, values = words[0], words[1:]
        numbers = [int(value) for value in values if value.isdigit()]
        if key == "clock" and numbers:
            found.clock = float(numbers[0])
        elif key == "cloud-init":
            found.cloud_init = values[0] if values else ""
        elif key == "name" and values:
            address = values[1] if len(values) > 2 else ""
            found.names[values[0]] = (address, values[-1] == "1")
        elif key == "disk" and len(numbers) == 2:
            found.disk = (numbers[0] << 10, numbers[1] << 10)
        elif key == "memory" and len(numbers) == 2:
            found.memory = (numbers[0] << 10, numbers[1] << 10)
        elif key == "outside":
            found.outside = values[0] if values else ""
    return found


def expected_names(cluster: Cluster, vm: VM, mode: NetworkMode) -> dict[str, str]:
    """Every name a VM should resolve, and the address cluster.yaml gives it."""
    from ..model.network import host_address_for_guests

    names = {other.name: str(other.ip) for other in cluster.vms if other.name != vm.name}
    names["vmhost"] = str(host_address_for_guests(cluster.network, mode))
    names["kubernetes"] = str(cluster.network.api_address)
    return names


def judge(vm: VM, seen: Facts, expected: dict[str, str], host_clock: float, mode: NetworkMode, outside_asked: bool) -> list[Check]:
    """The checks a VM's facts make."""
    name = vm.name
    reprovision = f"`make setup`, then `invoke restart --name {name}` (cloud-init writes /etc/hosts at that boot)"
    checks = [cloud_init(name, seen.cloud_init)]
    if seen.clock is None:
        checks.append(failed(name, "clock", "the guest did not tell its time", f"`invoke ssh --name {name} -- date`"))
    else:
        skew = seen.clock - host_clock
        checks.append(ok(name, "clock", f"{skew:+.0f} s from the host's") if abs(skew) <= CLOCK_SECONDS else failed(
            name, "clock", f"{skew:+.0f} s from the host's (certificates and etcd need it right)",
            f"`invoke exec --name {name} -- sudo date -s @$(date +%s)`, and see that the guest keeps time (NTP, or the guest agent)",
        ))  # fmt: skip
    for other, address in expected.items():
        what = f"{other} ({address})"
        resolved, answered = seen.names.get(other, ("", False))
        if not resolved:
            checks.append(failed(name, what, f"{other} does not resolve in the guest", reprovision))
        elif resolved != address:
            checks.append(failed(name, what, f"{other} resolves to {resolved}, not {address}", reprovision))
        elif other == "kubernetes" or (other == "vmhost" and mode == NetworkMode.USER):
            checks.append(ok(name, what, "resolves"))  # the API's address answers once chapter 5 puts it up; slirp's host does not answer ping
        elif answered:
            checks.append(ok(name, what, "resolves and answers"))
        else:
            checks.append(failed(name, what, f"{other} resolves but does not answer", f"`invoke ls` (is {other} running?), then `invoke doctor --name {other}`"))
    if not outside_asked:
        checks.append(not_applicable(name, "outside names", "not asked (--outside ''), or this host resolves none either"))
    elif seen.outside:
        checks.append(ok(name, "outside names", f"resolve (to {seen.outside})"))
    else:
        fix = "`make doctor` on the host: its DNS and NAT (bridge mode), or its own name service (user mode)"
        checks.append(failed(name, "outside names", "an outside name does not resolve in the guest", fix))
    checks += room(name, seen)
    return checks


def cloud_init(name: str, state: str) -> Check:
    if state in ("done", "disabled"):
        return ok(name, "cloud-init", state)
    if state in ("absent", ""):
        return not_applicable(name, "cloud-init", "no cloud-init in the guest")
    if state == "error":
        return failed(name, "cloud-init", "finished with an error", f"`invoke ssh --name {name} -- cloud-init status --long` says which")
    return failed(name, "cloud-init", f"{state}: not finished yet", "`make up` waits for it")


def room(name: str, seen: Facts) -> list[Check]:
    from ..run.hostmemory import memory_text

    checks = [] if seen.disk else [not_applicable(name, "disk", "the guest's df did not say")]
    if seen.disk:
        free, total = seen.disk
        checks.append(ok(name, "disk", f"{memory_text(free)} free of {memory_text(total)}") if free >= min(MIN_FREE_DISK, total // 10)
                      else failed(name, "disk", f"{memory_text(free)} free of {memory_text(total)}", f"free space in the guest (`invoke ssh --name {name} -- df -h`), or give the VM a larger disk (disk_size:, then `invoke reset`)"))  # fmt: skip
    if seen.memory:
        available, total = seen.memory
        checks.append(ok(name, "memory", f"{memory_text(available)} available of {memory_text(total)}") if available >= min(MIN_FREE_MEMORY, total // 20)
                      else failed(name, "memory", f"{memory_text(available)} available of {memory_text(total)}", f"give the role more memory in cluster.yaml, then `invoke restart --name {name}`; or stop what takes it in the guest"))  # fmt: skip
    return checks


def guest_checks(cluster: Cluster, vm: VM, mode: NetworkMode, outside: str | None) -> list[Check]:
    """One VM's checks: one login, bounded in time."""
    from ..model.network import ssh_argv
    from ..model.paths import ssh_config_path
    from ..plumbing import errors
    from ..plumbing.process import run

    expected = expected_names(cluster, vm, mode)
    argv = ssh_argv(ssh_config_path(cluster).absolute(), vm.name, script(list(expected), outside), batch=True, connect_timeout=10)
    before = time.time()
    try:
        done = run(argv, check=False, timeout=LOGIN_SECONDS)
    except errors.KubenetError as error:
        return [failed(vm.name, "SSH", error.message, f"`invoke ls`, then `invoke logs --name {vm.name}`")]
    after = time.time()
    if done.code == 255:
        said = done.stderr.strip().splitlines()
        return [failed(vm.name, "SSH", said[-1] if said else "ssh could not log in", f"`invoke ls` (READY), then `invoke logs --name {vm.name}`")]
    return [ok(vm.name, "SSH", "logs in"), *judge(vm, facts(done.stdout), expected, (before + after) / 2, mode, outside is not None)]
