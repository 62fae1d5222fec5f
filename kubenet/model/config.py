"""Read cluster.yaml, fill in the tutorial's defaults and validate, in that order.

Every problem is reported as one line naming the file, the key, the bad value
and what is allowed, and every problem of the file at once, as Lima's validator
does: a value that is wrong is set aside, the rest is still read, and checks that
join several values run only once those values are good. Validation sits on the
load path: a Cluster that exists is a Cluster that is valid.
"""

from __future__ import annotations

import os
import re
import stat
import string
from dataclasses import fields, replace
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from pathlib import Path
from typing import Any, Callable

from ..plumbing import errors
from .cluster import (
    FILE_KEYS,
    MAX_MAC_IDS,
    SLIRP_SUBNET,
    Accel,
    Choice,
    Cluster,
    Forward,
    LOCAL,
    Image,
    ImageKind,
    Network,
    NetworkMode,
    ReadyWhen,
    RemoteHost,
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
HOST_KEYS = ("ssh", *(f.name for f in fields(RemoteHost) if f.name not in ("name", "destination")))
# An SSH destination, [user@]address: never one that ssh would read as an option.
DESTINATION_PATTERN = re.compile(r"([a-z_][a-z0-9_.-]*@)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
# A path on another host, sent there quoted: plain characters, never an option.
REMOTE_PATH_PATTERN = re.compile(r"[A-Za-z0-9_./+,@~][A-Za-z0-9_./+,@~-]*")


def config_path(option: str | None, environ=os.environ) -> Path:
    """--config wins over $KUBENET_CONFIG, which wins over ./cluster.yaml."""
    return Path(option or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


MAX_CONFIG_BYTES = 4 << 20  # far more than any cluster file; a device or an endless file is refused


def read_config_text(path: Path) -> str:
    """The file's text: a regular file of at most MAX_CONFIG_BYTES, read without waiting on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise errors.ConfigFileError(
            f"{path}: no such cluster file",
            f"run from the directory holding cluster.yaml, or pass --config PATH / set {CONFIG_ENV}",
        ) from None
    except OSError as error:
        raise errors.ConfigFileError(f"{path}: cannot read: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise errors.ConfigFileError(f"{path}: not a regular file (a directory, device or pipe)", "give the path of a cluster.yaml")
    with os.fdopen(fd, "rb") as stream:
        data = stream.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise errors.ConfigFileError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB: not a cluster file", "give the path of a cluster.yaml")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise errors.ConfigFileError(f"{path}: not UTF-8 text", "save the cluster file as UTF-8") from None


def load_cluster(path: Path) -> Cluster:
    import yaml  # imported here: only tasks that read the cluster pay for it

    from ..plumbing.yamltext import DuplicateKey, TooLarge, load

    text = read_config_text(path)
    try:
        data = load(text)
    except TooLarge as large:
        raise errors.ConfigFileError(f"{path}: refused: {large} (a YAML bomb?)", "write the cluster file out plainly, without aliases of aliases") from None
    except DuplicateKey as duplicate:
        raise errors.DuplicateKeyError(
            f"{path}: line {duplicate.line}: {shown(duplicate.key)} is given twice (lines {duplicate.first} and {duplicate.line})",
            "keep one of them: YAML would silently use the last",
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise errors.ConfigFileError(
            f"{path}: {where}{problem}", "check indentation and quoting near that line"
        ) from None
    return build_cluster(data if data is not None else {}, path)


MAX_SHOWN = 60  # characters of a value quoted in a message: a 1 MB value makes no 1 MB line


def shown(value: Any) -> str:
    """A value as a message quotes it (repr), cut short when long."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(str(value))} characters)"


class _Bad(Exception):
    """A value was found wrong and its problem noted: reading that key stops, the rest goes on."""


class _Checker:
    """Validators that know which file they read, so every message can name it, and that
    note every problem they find."""

    def __init__(self, source: Path):
        self.source = source
        self.problems: list[errors.ConfigError] = []

    def note(self, kind: type[errors.ConfigError], key: str, message: str, hint: str | None = None) -> None:
        self.problems.append(kind(f"{self.source}: {key}: {message}", hint))

    def fail(self, kind: type[errors.ConfigError], key: str, message: str, hint: str | None = None):
        self.note(kind, key, message, hint)
        raise _Bad()

    def each(self, entries: dict, parsers: dict[str, Callable[[Any, str], Any]], key_of: Callable[[str], str]) -> dict:
        """The parsed value of every entry that has a parser and parses, in the file's order
        (so problems are reported in it); the others are noted."""
        parsed = {}
        for name, value in entries.items():
            if name in parsers:
                try:
                    parsed[name] = parsers[name](value, key_of(name))
                except _Bad:
                    pass
        return parsed

    def good(self, since: int) -> bool:
        """Whether no problem was noted since `since` problems (checks that join values need good ones)."""
        return len(self.problems) == since

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict:
        """The mapping's entries with known keys; each unknown key is noted."""
        if not isinstance(value, dict):
            self.fail(errors.WrongTypeError, key, f"expected a mapping, got {_describe(value)}")
        for name in value:
            if name not in allowed:
                import difflib

                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else None
                self.note(errors.UnknownKeyError, _join(key, name), f"unknown key; allowed: {', '.join(allowed)}", hint)
        return {name: item for name, item in value.items() if name in allowed}

    def integer(self, value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(errors.WrongTypeError, key, f"expected a whole number, got {_describe(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            allowed = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
            self.fail(errors.BadValueError, key, f"{value} is out of range; allowed: {allowed}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(errors.WrongTypeError, key, f"expected true or false, got {_describe(value)}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            self.fail(errors.WrongTypeError, key, f"expected a string, got {_describe(value)}")
        return value

    def matching(self, value: Any, key: str, pattern: re.Pattern, allowed: str) -> str:
        text = self.string(value, key)
        if not pattern.fullmatch(text):
            self.fail(errors.BadValueError, key, f"{shown(text)} is not allowed; allowed: {allowed}")
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
            self.fail(errors.BadValueError, key, f"{shown(text)} is not allowed; allowed: {', '.join(choices.values())}")
        return choices(text)

    def address(self, value: Any, key: str) -> IPv4Address:
        try:
            return IPv4Address(self.string(value, key))
        except AddressValueError:
            self.fail(errors.BadValueError, key, f"{shown(value)} is not an IPv4 address; e.g. 192.168.1.1")

    def subnet(self, value: Any, key: str) -> IPv4Network:
        try:
            return IPv4Network(self.string(value, key))
        except (AddressValueError, NetmaskValueError, ValueError):
            self.fail(errors.BadValueError, key, f"{shown(value)} is not an IPv4 network; e.g. 192.168.1.0/24")


def build_cluster(data: Any, source: Path) -> Cluster:
    """Turn parsed YAML into a Cluster, or raise a ConfigError: the one problem found, or
    ConfigProblems with every one of them.

    Only the keys present are parsed; every other value is Cluster's default.
    """
    check = _Checker(source)
    try:
        cluster = _build(check, data, source)
    except _Bad:
        cluster = None
    if check.problems:
        raise check.problems[0] if len(check.problems) == 1 else errors.ConfigProblems(check.problems)
    return cluster


def _build(check: _Checker, data: Any, source: Path) -> Cluster:
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
        "tcg_tb_size": lambda v, k: None if v is None else check.integer(v, k, 1, 4096),
        "ready": lambda v, k: check.choice(v, k, ReadyWhen),
        "state_dir": lambda v, k: _state_dir(check, v, base),
        "qemu_args": lambda v, k: _qemu_args(check, v, k),
        "forward": lambda v, k: _forwards(check, v, k),
        "pod_routes": lambda v, k: check.boolean(v, k),
        "nfs": lambda v, k: _nfs(check, v, k, base),
        "hosts": lambda v, k: _hosts(check, v, base),
        "here": lambda v, k: check.matching(v, k, NAME_PATTERN, "a name from hosts:"),
    }
    before = len(check.problems)
    values = check.each(top, parsers, lambda key: key)
    if "state_dir" not in top:
        values["state_dir"] = _state_dir(check, str(Cluster.state_dir), base)
    if not check.good(before):
        raise _Bad()  # the checks below join values, and would only repeat what is wrong
    cluster = Cluster(**values, source=source)
    _check_count(check, cluster.roles, cluster.network)
    cluster = replace(cluster, vms=expand_vms(cluster.roles, cluster.network))
    _check_names(check, cluster)
    _check_capacity(check, cluster)
    _check_nfs_folder(check, cluster)
    _check_qemu_args_files(check, cluster)
    _check_placement(check, cluster)
    if cluster.network.mode == NetworkMode.AUTO and {vm.host for vm in cluster.vms} != {LOCAL}:
        cluster = replace(cluster, network=replace(cluster.network, mode=NetworkMode.USER))  # the one mode that spans hosts
    return cluster


def _hosts(check: _Checker, value: Any, base: Path) -> tuple[RemoteHost, ...]:
    """`hosts:` maps a name to an SSH destination, or to a mapping with `ssh:` and options."""
    if not isinstance(value, dict):
        check.fail(errors.WrongTypeError, "hosts", f"expected a mapping of host names to SSH destinations, got {_describe(value)}",
                   "e.g. hosts: {desk: me@192.168.0.20}")  # fmt: skip
    before = len(check.problems)
    hosts = []
    for name, entry in value.items():
        key = _join("hosts", name)
        try:
            hosts.append(_host(check, name, entry, key, base))
        except _Bad:
            pass
    if not check.good(before):
        raise _Bad()
    return tuple(hosts)


def _host(check: _Checker, name: Any, entry: Any, key: str, base: Path) -> RemoteHost:
    name = check.matching(name, key, NAME_PATTERN, "lower-case letters, digits and '-', starting with a letter")
    if name == LOCAL:
        check.fail(errors.BadValueError, key, f"{LOCAL!r} is the machine kubenet runs on and needs no entry", "give the other host another name")
    entry = {"ssh": entry} if isinstance(entry, str) else check.mapping(entry, key, HOST_KEYS)
    if "ssh" not in entry:
        check.fail(errors.BadValueError, key, "missing 'ssh'", "e.g. desk: {ssh: me@192.168.0.20, port: 22}")
    before = len(check.problems)
    destination = check.matching(entry["ssh"], f"{key}.ssh", DESTINATION_PATTERN, "user@address, e.g. me@192.168.0.20")
    remote_path = "a path there of letters, digits and / . _ - + , @ ~ (relative to the home there)"
    parsers = {
        "port": lambda v, k: check.integer(v, k, 1, 65535),
        "identity": lambda v, k: _path(check, v, k, base),
        "known_hosts": lambda v, k: _path(check, v, k, base),
        "kubenet": lambda v, k: _home_relative(check.matching(v, k, REMOTE_PATH_PATTERN, remote_path)),
        "dir": lambda v, k: _home_relative(check.matching(v, k, REMOTE_PATH_PATTERN, remote_path)),
    }
    options = check.each({k: v for k, v in entry.items() if k != "ssh"}, parsers, lambda field: f"{key}.{field}")
    if not check.good(before):
        raise _Bad()
    return RemoteHost(name=name, destination=destination, **options)


def _home_relative(text: str) -> str:
    """A path on another host given as ~/x: the command runs in the home there, and a
    quoted ~ would not be expanded."""
    if text == "~":
        return "."
    return (text[2:] or ".") if text.startswith("~/") else text


def _role_hosts(check: _Checker, value: Any, key: str) -> tuple[str, ...]:
    names = value if isinstance(value, list) else [value]
    if not names:
        check.fail(errors.BadValueError, key, "an empty list", f"name a host from hosts:, or {LOCAL}")
    return tuple(check.matching(name, key, NAME_PATTERN, f"a name from hosts:, or {LOCAL}") for name in names)


def _check_placement(check: _Checker, cluster: Cluster) -> None:
    """Every host a role names is known; VMs on several hosts share one segment only in user mode."""
    known = {LOCAL, *(host.name for host in cluster.hosts)}
    for index, role in enumerate(cluster.roles):
        for name in sorted(set(role.host) - known):
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=1)
            check.note(errors.BadValueError, f"roles[{index}].host", f"{shown(name)} is not a host of hosts:; known: {', '.join(sorted(known))}",
                       f"did you mean '{close[0]}'?" if close else "add it to hosts: with its SSH destination")  # fmt: skip
    if cluster.here not in known:
        check.note(errors.BadValueError, "here", f"{shown(cluster.here)} is not a host of hosts:", "leave `here` out: kubenet writes it in the copy it sends to a host")
    spread = {vm.host for vm in cluster.vms} != {LOCAL}
    if spread and cluster.network.mode not in (NetworkMode.USER, NetworkMode.AUTO):
        check.note(errors.BadValueError, "network.mode", f"{cluster.network.mode} does not reach across hosts; VMs on several hosts need user mode",
                   "set network.mode: user (each host's switch is joined to this one's by a VDE cable over SSH)")  # fmt: skip


def private_places(cluster: Cluster, environ=os.environ) -> list[tuple[str, Path]]:
    """What an NFS export must neither hold nor lie in, each with why, symlinks resolved:
    state_dir (every VM's disk and host key), the cluster file, the image cache (the base
    image every disk is made from), ~/.ssh (the user's keys) and the virtualenv kubenet runs
    from (code the user runs)."""
    import sys

    from .paths import cache_dir

    places = [
        ("state_dir", cluster.state_dir, "every VM's disk and private host key"),
        ("the cluster file", cluster.source.absolute(), "what every VM is made from"),
        ("the image cache", cache_dir(environ), "the base image every disk is made from"),
        ("~/.ssh", Path.home() / ".ssh", "your SSH keys"),
        ("kubenet's virtualenv", Path(__file__).resolve().parents[2] / ".venv", "the code kubenet runs"),
    ]
    if sys.prefix != sys.base_prefix:  # running from a virtualenv: that one
        places.append(("kubenet's virtualenv", Path(sys.prefix), "the code kubenet runs"))
    return [(f"{name} ({why})", Path(os.path.realpath(path))) for name, path, why in places]


def _check_nfs_folder(check: _Checker, cluster: Cluster) -> None:
    """The export is read-write for every VM, root mapped to the folder's owner: it must not
    hold, nor lie inside, what kubenet or the user keeps private (`private_places`)."""
    if cluster.nfs is None:
        return
    export = Path(os.path.realpath(cluster.nfs))
    for what, place in private_places(cluster):
        if export == place or export in place.parents:
            relation = "is" if export == place else "holds"
        elif place in export.parents:
            relation = "lies inside"
        else:
            continue
        check.note(
            errors.BadValueError, "nfs.path",
            f"{cluster.nfs} {relation} {place}: {what}, which every VM could then read and change over NFS",
            "give the export a folder of its own, outside those, e.g. nfs-pvs beside the cluster file",
        )  # fmt: skip
        return


def _roles(check: _Checker, value: Any) -> tuple[Role, ...]:
    if not isinstance(value, list) or not value:
        check.fail(errors.WrongTypeError, "roles", f"expected a non-empty list of roles, got {_describe(value)}")
    before = len(check.problems)
    roles = []
    for index, item in enumerate(value):
        try:
            roles.append(_role(check, item, f"roles[{index}]"))
        except _Bad:
            pass
    if not check.good(before):
        raise _Bad()
    return tuple(roles)


def _role(check: _Checker, item: Any, key: str) -> Role:
    before = len(check.problems)
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
        "qemu_args": lambda v, k: _qemu_args(check, v, k),
        "host": lambda v, k: _role_hosts(check, v, k),
        "cpu": lambda v, k: check.matching(v, k, CPU_PATTERN, "a qemu CPU model, e.g. cortex-a76, host or max (options after commas)"),
    }
    fields_ = check.each(entry, parsers, lambda field: f"{key}.{field}")
    if not check.good(before):
        raise _Bad()
    return Role(name=name, **fields_)


# qemu's -cpu value: a model, then its properties (`host,sme=off`); never an option of its own.
CPU_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(,[A-Za-z0-9._-]+=[A-Za-z0-9._-]+)*")


def _qemu_args(check: _Checker, value: Any, key: str) -> tuple[str, ...]:
    """Extra qemu arguments: strings, none of them redefining what kubenet owns."""
    from .qemuargs import refusal

    if not isinstance(value, list) or not all(isinstance(item, str) and item.isprintable() for item in value):
        check.fail(errors.WrongTypeError, key, f"expected a list of printable strings, got {_describe(value)}", "e.g. qemu_args: [-device, virtio-tablet-pci]")
    args = tuple(value)
    refused = refusal(args)
    if refused:
        check.fail(errors.BadValueError, key, f"{shown(refused.option)} {refused.why}", refused.hint)
    return args


def _check_qemu_args_files(check: _Checker, cluster: Cluster) -> None:
    """No extra drive names a file kubenet gives qemu: what state_dir holds (disks, seeds,
    UEFI variables), the image cache (the base image), the kernel and initrd."""
    from .paths import cache_dir
    from .qemuargs import reaching

    protected = [Path(os.path.realpath(path)) for path in (cluster.state_dir, cache_dir())]
    protected += [Path(os.path.realpath(path)) for path in (cluster.image.kernel, cluster.image.initrd) if path]
    bases = [cluster.source.absolute().parent, Path.cwd()]
    for key, args in [("qemu_args", cluster.qemu_args), *((f"roles[{index}].qemu_args", role.qemu_args) for index, role in enumerate(cluster.roles))]:
        found = reaching(args, protected, bases)
        if found:
            check.note(errors.BadValueError, key, f"{shown(found[0])} names {found[1]}, one of kubenet's own files (a VM's disk, seed or UEFI variables, the base image)",
                       "give an extra drive a file of its own, outside state_dir and the image cache")  # fmt: skip


FORWARD_TO_PATTERN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5}")
FORWARD_EXAMPLE = "e.g. forward: [{port: 6443, to: 'kubernetes:6443'}]"


def _forwards(check: _Checker, value: Any, key: str) -> tuple[Forward, ...]:
    """Host loopback ports, each forwarded to HOST:PORT inside the cluster; a port once."""
    if not isinstance(value, list):
        check.fail(errors.WrongTypeError, key, f"expected a list of forwards, got {_describe(value)}", FORWARD_EXAMPLE)
    before = len(check.problems)
    forwards: list[Forward] = []
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        try:
            forwards.append(_forward(check, item, where))
        except _Bad:
            pass
    ports = [forward.port for forward in forwards]
    for port in sorted({port for port in ports if ports.count(port) > 1}):
        check.note(errors.BadValueError, key, f"port {port} is forwarded twice", "give each forward its own host port")
    if not check.good(before):
        raise _Bad()
    return tuple(forwards)


def _forward(check: _Checker, item: Any, key: str) -> Forward:
    entry = check.mapping(item, key, ("port", "to"))
    for name in ("port", "to"):
        if name not in entry:
            check.fail(errors.BadValueError, key, f"missing '{name}'", FORWARD_EXAMPLE)
    port = check.integer(entry["port"], f"{key}.port", 1, 65535)
    to = check.matching(entry["to"], f"{key}.to", FORWARD_TO_PATTERN, "HOST:PORT inside the cluster, e.g. kubernetes:6443")
    host, _, to_port = to.rpartition(":")
    if not 1 <= int(to_port) <= 65535:
        check.fail(errors.BadValueError, f"{key}.to", f"port {to_port} is out of range; allowed: from 1 to 65535")
    return Forward(port, host, int(to_port))


NFS_EXAMPLE = "e.g. nfs: {path: nfs-pvs}, relative to the cluster file"


def _nfs(check: _Checker, value: Any, key: str, base: Path) -> Path | None:
    """The folder to export, absolute: the provisioner is given it as nfs.path."""
    if value is None:
        return None
    if not isinstance(value, dict):
        check.fail(errors.WrongTypeError, key, f"expected a mapping with a path, got {_describe(value)}", NFS_EXAMPLE)
    entries = check.mapping(value, key, ("path",))
    if "path" not in entries:
        check.fail(errors.BadValueError, key, "has no path", NFS_EXAMPLE)
    path = Path(os.path.realpath(_path(check, entries["path"], f"{key}.path", base)))
    if any(char in str(path) for char in '"\\'):
        check.fail(errors.BadValueError, f"{key}.path", f"{shown(str(path))} holds a quote or a backslash, which an exports file cannot carry", "use a folder without them")
    return path


def _network(check: _Checker, value: Any) -> Network:
    allowed = tuple(f.name for f in fields(Network))
    before = len(check.problems)
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
    parsed = check.each(entry, parsers, lambda name: f"network.{name}")
    if not check.good(before):
        raise _Bad()
    network = Network(**{name: parsed.get(name, getattr(defaults, name)) for name in allowed})
    _check_addresses(check, network)
    return network


def _check_addresses(check: _Checker, network: Network) -> None:
    subnet = network.subnet
    for name in ("host_address", "api_address", "dhcp_end"):
        address = getattr(network, name)
        if address not in subnet:
            check.note(errors.BadValueError, f"network.{name}", f"{address} is outside {subnet}")
        elif address in (subnet.network_address, subnet.broadcast_address):
            check.note(errors.BadValueError, f"network.{name}", f"{address} is {subnet}'s own network or broadcast address")
    if network.api_address == network.host_address:
        check.note(errors.BadValueError, "network.api_address", f"{network.api_address} is also network.host_address", "give the API its own address")
    if int(network.mac_prefix[:2], 16) & 1:
        check.note(
            errors.BadValueError, "network.mac_prefix", f"{network.mac_prefix} is a multicast prefix",
            "the first octet must be even; locally administered unicast prefixes like 52:52:52:00:00 are safe",
        )  # fmt: skip
    if network.mode == NetworkMode.USER and subnet.overlaps(SLIRP_SUBNET):
        check.note(
            errors.BadValueError, "network.subnet", f"{subnet} overlaps {SLIRP_SUBNET}, user mode's own network",
            "choose another subnet, e.g. 192.168.1.0/24",
        )  # fmt: skip


def _image(check: _Checker, value: Any, base: Path) -> Image:
    allowed = tuple(f.name for f in fields(Image))
    before = len(check.problems)
    entry = check.mapping(value, "image", allowed)
    kind = Image.kind
    if "kind" in entry:
        kind = check.choice(entry["kind"], "image.kind", ImageKind)
    strings = check.each(entry, {name: check.string for name in allowed if name != "kind"}, lambda name: f"image.{name}")
    if strings.get("url"):
        try:
            _check_url_fields(check, strings["url"])
        except _Bad:
            pass
    if "sha256" in strings:
        try:
            strings["sha256"] = check.matching(
                strings["sha256"].lower().removeprefix("sha256:"), "image.sha256", SHA256_PATTERN, "64 hex digits"
            )
        except _Bad:
            pass
    if kind == ImageKind.KERNEL:
        for name in ("kernel", "initrd"):
            if name not in entry:
                check.note(errors.BadValueError, f"image.{name}", "missing; a kernel image needs kernel and initrd paths")
            elif name in strings:
                # absolute: qemu runs in a tmux pane whose working directory is not ours
                try:
                    strings[name] = str(_path(check, strings[name], f"image.{name}", base))
                except _Bad:
                    pass
        strings.setdefault("url", None)  # a root disk is optional for a kernel
    if not check.good(before):
        raise _Bad()
    return Image(kind=kind, **strings)


def _path(check: _Checker, value: Any, key: str, base: Path) -> Path | None:
    if value is None:
        return None
    text = check.string(value, key)
    if not text or any(ord(char) < 32 or ord(char) == 127 for char in text):
        check.fail(errors.BadValueError, key, f"{shown(text)} is not a usable path: it is empty or holds a control character such as a newline")
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _check_url_fields(check: _Checker, url: str) -> None:
    """image.url may hold {arch} and nothing else in braces ({{ and }} stand for braces)."""
    try:
        fields_used = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(url) if name is not None]
    except ValueError as error:
        check.fail(errors.BadValueError, "image.url", f"{shown(url)}: {error}", "write a literal brace as {{ or }}")
    for name, spec, conversion in fields_used:
        if name != "arch" or spec or conversion:
            check.fail(errors.BadValueError, "image.url", f"{{{name}}} is not known; only {{arch}} is replaced (amd64 or arm64)")


def _state_dir(check: _Checker, value: Any, base: Path) -> Path:
    if value is None:
        check.fail(errors.WrongTypeError, "state_dir", "expected a directory path, got nothing", "leave it out for .kubenet beside the cluster file")
    # Its real path: a pid file, a session mark or a snapshot names the state directory,
    # and must name it the same way whether the cluster file was reached through a link or not.
    path = Path(os.path.realpath(_path(check, value, "state_dir", base)))
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
            check.note(errors.DuplicateNameError, f"roles[{index}].name", f"role {role.name!r} is declared twice")
    if not check.good(0):
        return  # the VMs' names clash for the same reason
    for vm in cluster.vms:
        if vm.name in seen:
            check.note(
                errors.DuplicateNameError,
                "roles",
                f"VM name {vm.name!r} is made by both role {seen[vm.name]!r} and role {vm.role!r}",
                "rename one of the roles",
            )
        seen[vm.name] = vm.role
    if not cluster.vms:
        check.note(errors.BadValueError, "roles", "the cluster has no VMs; give a role a count of 1 or more")


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
            check.note(
                errors.CapacityError,
                f"network.{name}",
                f"{address} is also the address of VM {clash.name}",
                "move it out of the VMs' range or change network.first_vm_offset",
            )
    if network.ssh_port_base + count - 1 > 65535:
        check.note(errors.CapacityError, "network.ssh_port_base", f"{network.ssh_port_base} + {count} VMs runs past port 65535")


def _join(key: str, name: Any) -> str:
    return str(name) if key == "(top level)" else f"{key}.{name}"


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    kind = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return f"{kind.get(type(value), type(value).__name__)} ({shown(value)})" if not isinstance(value, (dict, list)) else kind[type(value)]
