"""Read cluster.yaml, fill in the tutorial's defaults and validate, in that order.

Every problem is reported as one line naming the file, the key, the bad value
and what is allowed. Validation sits on the load path: a Cluster that exists is
a Cluster that is valid.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import fields, replace
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from pathlib import Path
from typing import Any, Callable

from . import errors
from .cluster import (
    FILE_KEYS,
    MAX_MAC_IDS,
    SLIRP_SUBNET,
    Accel,
    Choice,
    Cluster,
    Image,
    ImageKind,
    Network,
    NetworkMode,
    ReadyWhen,
    Role,
    expand_vms,
)

CONFIG_ENV = "KUBENET_CONFIG"
DEFAULT_CONFIG = "cluster.yaml"

SIZE_PATTERN = re.compile(r"[1-9][0-9]*[KMGT]")
NAME_PATTERN = re.compile(r"[a-z]([a-z0-9-]*[a-z0-9])?")
CLUSTER_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
MAC_PREFIX_PATTERN = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){4}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
MAX_NAME_LENGTH = 63  # a DNS label, so a VM name is a valid host name
ROLE_KEYS = tuple(f.name for f in fields(Role))


def config_path(option: str | None, environ=os.environ) -> Path:
    """--config wins over $KUBENET_CONFIG, which wins over ./cluster.yaml."""
    return Path(option or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_cluster(path: Path) -> Cluster:
    import yaml  # imported here: only tasks that read the cluster pay for it

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise errors.ConfigFileError(
            f"{path}: no such cluster file",
            f"run from the directory holding cluster.yaml, or pass --config PATH / set {CONFIG_ENV}",
        ) from None
    except UnicodeDecodeError:
        raise errors.ConfigFileError(f"{path}: not UTF-8 text", "save the cluster file as UTF-8") from None
    except OSError as error:
        raise errors.ConfigFileError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise errors.ConfigFileError(
            f"{path}: {where}{problem}", "check indentation and quoting near that line"
        ) from None
    return build_cluster(data if data is not None else {}, path)


class _Checker:
    """Validators that know which file they read, so every message can name it."""

    def __init__(self, source: Path):
        self.source = source

    def fail(self, kind: type[errors.ConfigError], key: str, message: str, hint: str | None = None):
        raise kind(f"{self.source}: {key}: {message}", hint)

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            self.fail(errors.WrongTypeError, key, f"expected a mapping, got {_describe(value)}")
        for name in value:
            if name not in allowed:
                import difflib

                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else None
                self.fail(
                    errors.UnknownKeyError,
                    _join(key, name),
                    f"unknown key; allowed: {', '.join(allowed)}",
                    hint,
                )
        return value

    def integer(self, value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(errors.WrongTypeError, key, f"expected a whole number, got {_describe(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            allowed = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
            self.fail(errors.BadValueError, key, f"{value} is out of range; allowed: {allowed}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            self.fail(errors.WrongTypeError, key, f"expected a string, got {_describe(value)}")
        return value

    def matching(self, value: Any, key: str, pattern: re.Pattern, allowed: str) -> str:
        text = self.string(value, key)
        if not pattern.fullmatch(text):
            self.fail(errors.BadValueError, key, f"{text!r} is not allowed; allowed: {allowed}")
        return text

    def size(self, value: Any, key: str) -> str:
        if isinstance(value, str):
            value = value.upper()
        return self.matching(
            value, key, SIZE_PATTERN, "a whole number with a unit K, M, G or T, e.g. 4G"
        )

    def choice(self, value: Any, key: str, choices: type[Choice]) -> Choice:
        text = self.string(value, key)
        if text not in choices.values():
            self.fail(errors.BadValueError, key, f"{text!r} is not allowed; allowed: {', '.join(choices.values())}")
        return choices(text)

    def address(self, value: Any, key: str) -> IPv4Address:
        try:
            return IPv4Address(self.string(value, key))
        except AddressValueError:
            self.fail(errors.BadValueError, key, f"{value!r} is not an IPv4 address; e.g. 192.168.1.1")

    def subnet(self, value: Any, key: str) -> IPv4Network:
        try:
            return IPv4Network(self.string(value, key))
        except (AddressValueError, NetmaskValueError, ValueError):
            self.fail(errors.BadValueError, key, f"{value!r} is not an IPv4 network; e.g. 192.168.1.0/24")


def build_cluster(data: Any, source: Path) -> Cluster:
    """Turn parsed YAML into a Cluster, or raise the first ConfigError found.

    Only the keys present are parsed; every other value is Cluster's default.
    """
    check = _Checker(source)
    top = check.mapping(data, "(top level)", FILE_KEYS)
    base = source.absolute().parent
    parsers: dict[str, Callable[[Any, str], Any]] = {
        "name": lambda v, k: check.matching(v, k, CLUSTER_NAME_PATTERN, "letters, digits, '-' and '_'"),
        "roles": lambda v, k: _roles(check, v),
        "network": lambda v, k: _network(check, v),
        "image": lambda v, k: _image(check, v, base),
        "disk_size": check.size,
        "user": lambda v, k: check.matching(v, k, NAME_PATTERN, "a lower-case login name"),
        "ssh_key": lambda v, k: _path(check, v, k, base),
        "templates": lambda v, k: _directory(check, v, k, base),
        "accel": lambda v, k: None if v is None else check.choice(v, k, Accel),
        "ready": lambda v, k: check.choice(v, k, ReadyWhen),
    }
    values = {key: parsers[key](top[key], key) for key in FILE_KEYS if key in top and key in parsers}
    values["state_dir"] = _state_dir(check, top["state_dir"] if "state_dir" in top else str(Cluster.state_dir), base)
    cluster = Cluster(**values, source=source)
    _check_count(check, cluster.roles, cluster.network)
    cluster = replace(cluster, vms=expand_vms(cluster.roles, cluster.network))
    _check_names(check, cluster)
    _check_capacity(check, cluster)
    return cluster


def _roles(check: _Checker, value: Any) -> tuple[Role, ...]:
    if not isinstance(value, list) or not value:
        check.fail(errors.WrongTypeError, "roles", f"expected a non-empty list of roles, got {_describe(value)}")
    roles = []
    for index, item in enumerate(value):
        key = f"roles[{index}]"
        entry = check.mapping(item, key, ROLE_KEYS)
        if "name" not in entry:
            check.fail(errors.BadValueError, key, "missing 'name'", "e.g. - {name: worker, count: 3, vcpus: 4, memory: 4G}")
        name = check.matching(
            entry["name"], f"{key}.name", NAME_PATTERN, "lower-case letters, digits and '-', starting with a letter"
        )
        if len(name) > MAX_NAME_LENGTH - 3:  # room for the index digits of a counted role
            check.fail(errors.BadValueError, f"{key}.name", f"{len(name)} characters; VM names are host names, so a role name has at most {MAX_NAME_LENGTH - 3}")
        parsers = {
            "count": lambda v, k: None if v is None else check.integer(v, k, 0),
            "vcpus": lambda v, k: check.integer(v, k, 1, 512),
            "memory": check.size,
        }
        roles.append(Role(name=name, **{field: parsers[field](entry[field], f"{key}.{field}") for field in parsers if field in entry}))
    return tuple(roles)


def _network(check: _Checker, value: Any) -> Network:
    allowed = tuple(f.name for f in fields(Network))
    entry = check.mapping(value, "network", allowed)
    defaults = Network()
    parsers: dict[str, Callable[[Any, str], Any]] = {
        "mode": lambda v, k: check.choice(v, k, NetworkMode),
        "subnet": check.subnet,
        "host_address": check.address,
        "first_vm_offset": lambda v, k: check.integer(v, k, 1),
        "mac_prefix": lambda v, k: check.matching(
            v.lower() if isinstance(v, str) else v, k, MAC_PREFIX_PATTERN, "five hex octets, e.g. 52:52:52:00:00"
        ),
        "bridge": lambda v, k: check.matching(v, k, re.compile(r"[A-Za-z0-9_.-]{1,15}"), "an interface name"),
        "domain": lambda v, k: check.matching(v, k, re.compile(r"[a-z0-9.-]+"), "a DNS domain, e.g. kubenet"),
        "api_address": check.address,
        "dhcp_end": check.address,
        "ssh_port_base": lambda v, k: check.integer(v, k, 1024, 65535),
    }
    parsed = {name: parsers[name](entry[name], f"network.{name}") for name in entry}
    network = Network(**{name: parsed.get(name, getattr(defaults, name)) for name in allowed})
    _check_addresses(check, network)
    return network


def _check_addresses(check: _Checker, network: Network) -> None:
    subnet = network.subnet
    for name in ("host_address", "api_address", "dhcp_end"):
        address = getattr(network, name)
        if address not in subnet:
            check.fail(errors.BadValueError, f"network.{name}", f"{address} is outside {subnet}")
        if address in (subnet.network_address, subnet.broadcast_address):
            check.fail(errors.BadValueError, f"network.{name}", f"{address} is {subnet}'s own network or broadcast address")
    if network.api_address == network.host_address:
        check.fail(errors.BadValueError, "network.api_address", f"{network.api_address} is also network.host_address", "give the API its own address")
    if int(network.mac_prefix[:2], 16) & 1:
        check.fail(
            errors.BadValueError, "network.mac_prefix", f"{network.mac_prefix} is a multicast prefix",
            "the first octet must be even; locally administered unicast prefixes like 52:52:52:00:00 are safe",
        )  # fmt: skip
    if network.mode == NetworkMode.USER and subnet.overlaps(SLIRP_SUBNET):
        check.fail(
            errors.BadValueError, "network.subnet", f"{subnet} overlaps {SLIRP_SUBNET}, user mode's own network",
            "choose another subnet, e.g. 192.168.1.0/24",
        )  # fmt: skip


def _image(check: _Checker, value: Any, base: Path) -> Image:
    allowed = tuple(f.name for f in fields(Image))
    entry = check.mapping(value, "image", allowed)
    kind = check.choice(entry["kind"], "image.kind", ImageKind) if "kind" in entry else Image.kind
    strings = {name: check.string(entry[name], f"image.{name}") for name in entry if name != "kind"}
    if strings.get("url"):
        _check_url_fields(check, strings["url"])
    if "sha256" in strings:
        strings["sha256"] = check.matching(
            strings["sha256"].lower().removeprefix("sha256:"), "image.sha256", SHA256_PATTERN, "64 hex digits"
        )
    if kind == ImageKind.KERNEL:
        for name in ("kernel", "initrd"):
            if name not in strings:
                check.fail(errors.BadValueError, f"image.{name}", "missing; a kernel image needs kernel and initrd paths")
            # absolute: qemu runs in a tmux pane whose working directory is not ours
            strings[name] = str(_path(check, strings[name], f"image.{name}", base))
        strings.setdefault("url", None)  # a root disk is optional for a kernel
    return Image(kind=kind, **strings)


def _path(check: _Checker, value: Any, key: str, base: Path) -> Path | None:
    if value is None:
        return None
    text = check.string(value, key)
    if not text or any(ord(char) < 32 or ord(char) == 127 for char in text):
        check.fail(errors.BadValueError, key, f"{text!r} is not a usable path: it is empty or holds a control character such as a newline")
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _check_url_fields(check: _Checker, url: str) -> None:
    """image.url may hold {arch} and nothing else in braces ({{ and }} stand for braces)."""
    try:
        fields_used = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(url) if name is not None]
    except ValueError as error:
        check.fail(errors.BadValueError, "image.url", f"{url!r}: {error}", "write a literal brace as {{ or }}")
    for name, spec, conversion in fields_used:
        if name != "arch" or spec or conversion:
            check.fail(errors.BadValueError, "image.url", f"{{{name}}} is not known; only {{arch}} is replaced (amd64 or arm64)")


def _state_dir(check: _Checker, value: Any, base: Path) -> Path:
    if value is None:
        check.fail(errors.WrongTypeError, "state_dir", "expected a directory path, got nothing", "leave it out for .kubenet beside the cluster file")
    path = _path(check, value, "state_dir", base)
    if path.exists() and not path.is_dir():
        check.fail(errors.BadValueError, "state_dir", f"{path} exists and is not a directory", "point state_dir at a directory, or remove that file")
    return path


def _directory(check: _Checker, value: Any, key: str, base: Path) -> Path | None:
    path = _path(check, value, key, base)
    if path is not None and not path.is_dir():
        check.fail(errors.BadValueError, key, f"{path} is not a directory", "point it at a directory of <role>.yaml templates")
    return path


def _check_names(check: _Checker, cluster: Cluster) -> None:
    seen: dict[str, str] = {}
    for index, role in enumerate(cluster.roles):
        if role.name in (r.name for r in cluster.roles[:index]):
            check.fail(errors.DuplicateNameError, f"roles[{index}].name", f"role {role.name!r} is declared twice")
    for vm in cluster.vms:
        if vm.name in seen:
            check.fail(
                errors.DuplicateNameError,
                "roles",
                f"VM name {vm.name!r} is made by both role {seen[vm.name]!r} and role {vm.role!r}",
                "rename one of the roles",
            )
        seen[vm.name] = vm.role
    if not cluster.vms:
        check.fail(errors.BadValueError, "roles", "the cluster has no VMs; give a role a count of 1 or more")


def _check_count(check: _Checker, roles: tuple[Role, ...], network: Network) -> None:
    """Refuse more VMs than the scheme holds before making a VM object for each."""
    count = sum(1 if role.count is None else role.count for role in roles)
    room = int(network.subnet.broadcast_address) - int(network.subnet.network_address) - network.first_vm_offset
    if count > min(MAX_MAC_IDS, room):
        check.fail(
            errors.CapacityError, "roles",
            f"{count} VMs, but {network.subnet} from offset {network.first_vm_offset} and MACs {network.mac_prefix}:xx hold at most {max(0, min(MAX_MAC_IDS, room))}",
            "use fewer VMs, a larger network.subnet or a smaller network.first_vm_offset",
        )  # fmt: skip


def _check_capacity(check: _Checker, cluster: Cluster) -> None:
    network, count = cluster.network, len(cluster.vms)
    for name in ("host_address", "api_address"):
        address = getattr(network, name)
        clash = next((vm for vm in cluster.vms if vm.ip == address), None)
        if clash:
            check.fail(
                errors.CapacityError,
                f"network.{name}",
                f"{address} is also the address of VM {clash.name}",
                "move it out of the VMs' range or change network.first_vm_offset",
            )
    if network.ssh_port_base + count - 1 > 65535:
        check.fail(errors.CapacityError, "network.ssh_port_base", f"{network.ssh_port_base} + {count} VMs runs past port 65535")


def _join(key: str, name: Any) -> str:
    return str(name) if key == "(top level)" else f"{key}.{name}"


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    kind = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return f"{kind.get(type(value), type(value).__name__)} ({value!r})" if not isinstance(value, (dict, list)) else kind[type(value)]
