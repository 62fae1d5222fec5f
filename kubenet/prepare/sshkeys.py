"""SSH without trust on first use: host keys made at setup, a project-local known_hosts
and an ssh_config that pins them. The user's ~/.ssh/known_hosts is never touched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..model.cluster import LOCAL, Cluster, NetworkMode, RemoteHost
from ..model.network import ssh_endpoint
from ..model.paths import MAX_SOCKET_PATH, known_hosts_path, runtime_dir, ssh_config_path, vm_paths
from ..plumbing import errors
from ..plumbing.fsutil import atomic_output, locked, private_dir, write_atomic

DEFAULT_LOGIN_KEYS = ("~/.ssh/id_ed25519.pub", "~/.ssh/id_rsa.pub")


@dataclass(frozen=True)
class HostKey:
    """A VM's SSH host key, made on the host so its fingerprint is known before boot."""

    private: str
    public: str


def login_key_path(cluster: Cluster) -> Path:
    """The public key the login user is given: ssh_key in cluster.yaml, else the usual ones."""
    if cluster.ssh_key is not None:
        if cluster.ssh_key.is_dir():
            raise errors.SetupError(
                f"{cluster.source}: ssh_key: {cluster.ssh_key} is a directory",
                "point ssh_key at a public key file, e.g. ~/.ssh/id_ed25519.pub",
            )
        if not cluster.ssh_key.is_file():
            raise errors.SetupError(
                f"{cluster.source}: ssh_key: {cluster.ssh_key} does not exist",
                f"create a key with `ssh-keygen -t ed25519 -f {str(cluster.ssh_key).removesuffix('.pub')}` or fix the path",
            )
        return cluster.ssh_key
    for candidate in DEFAULT_LOGIN_KEYS:
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    raise errors.SetupError(
        "no SSH public key found (looked for ~/.ssh/id_ed25519.pub and ~/.ssh/id_rsa.pub)",
        "create one with `ssh-keygen -t ed25519`, or set ssh_key in cluster.yaml",
    )


def read_login_key(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except UnicodeDecodeError:
        raise errors.SetupError(f"{path} is not an SSH public key: not UTF-8 text", "give the .pub file, not the private key") from None
    if not text.startswith(("ssh-", "ecdsa-", "sk-")) or "\n" in text:
        raise errors.SetupError(f"{path} is not an SSH public key (one line, `ssh-ed25519 AAAA...`)")
    from ..plumbing.process import run

    done = run(["ssh-keygen", "-l", "-f", str(path)], check=False, missing_hint="install OpenSSH (`apt install openssh-client`)")
    if done.code != 0:
        said = (done.stderr.strip() or "it cannot be read").splitlines()[-1]
        raise errors.SetupError(f"{path} is not an SSH public key that ssh-keygen can read: {said}", "give the .pub file that `ssh-keygen` made")
    return text


def ensure_host_key(cluster: Cluster, name: str) -> HostKey:
    """The VM's ed25519 host key, made once and kept: it is the VM's identity."""
    from ..plumbing.process import run

    key = vm_paths(cluster, cluster.vm_by_name(name)).host_key
    public = key.with_name(key.name + ".pub")
    for path in (key, public):
        check_own_file(path)
    if not (key.is_file() and public.is_file()):
        private_dir(key.parent)
        with atomic_output(key) as temporary:
            temporary.unlink()  # ssh-keygen refuses to overwrite
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(temporary)],
                missing_hint="install OpenSSH (`apt install openssh-client`)")  # fmt: skip
            generated_public = temporary.with_name(temporary.name + ".pub")
            write_atomic(public, generated_public.read_bytes(), 0o644)
            generated_public.unlink()
    return HostKey(private=key.read_text(), public=public.read_text().strip())


def check_own_file(path: Path) -> None:
    """A host key is adopted only as a plain file of the user's: never through a link, never someone else's."""
    import os
    import stat

    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise errors.SetupError(
            f"{path} is not a file kubenet wrote ({'a link' if stat.S_ISLNK(info.st_mode) else 'not a plain file of yours'})",
            "remove it: setup makes the VM's host key afresh",
        )


def host_login_key(cluster: Cluster) -> Path:
    """On a host driven by another (`here:` in its copy of the cluster file): the private key
    its kubenet logs in to its own VMs with, beside that copy."""
    return cluster.source.absolute().parent / "host_login"


def ensure_host_login_key(cluster: Cluster) -> Path:
    from ..plumbing.process import run

    key = host_login_key(cluster)
    if not key.is_file():
        key.with_suffix(".pub").unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"kubenet on {cluster.here}", "-f", str(key)],
            missing_hint="install OpenSSH (`apt install openssh-client`)")  # fmt: skip
    return key


def read_host_key_public(cluster: Cluster, name: str) -> str | None:
    key = vm_paths(cluster, cluster.vm_by_name(name)).host_key
    public = key.with_name(key.name + ".pub")
    return public.read_text().strip() if public.is_file() else None


def known_hosts(entries: dict[str, str]) -> str:
    """One line per VM, keyed by the alias ssh_config gives it (HostKeyAlias)."""
    lines = []
    for name, public in entries.items():
        kind, blob = public.split()[:2]
        lines.append(f"{name} {kind} {blob}")
    return "".join(f"{line}\n" for line in lines)


def ssh_config(cluster: Cluster, mode: NetworkMode, identity: Path) -> str:
    """A block per VM, and (several hosts) a block per other host, which its VMs are reached through."""
    known = config_path_value(known_hosts_path(cluster).absolute())
    blocks = [
        f"# Written by kubenet from {cluster.source.absolute()}; regenerated by `invoke vmsetup`.\n"
        f"# Use it with `ssh -F {ssh_config_path(cluster).absolute()} <vm>`,\n"
        f"# or add `Include {ssh_config_path(cluster).absolute()}` at the top of ~/.ssh/config.\n"
    ]
    hosts = cluster.placed_hosts()
    for vm in cluster.vms:
        host = cluster.remote_host(vm.host) if vm.host != cluster.here else None
        if host is not None and host not in hosts:
            continue  # another host's VM, seen from a host that is not the controlling one
        endpoint = ssh_endpoint(cluster.network, mode, vm)
        blocks.append(
            f"Host {vm.name} {vm.name}.{cluster.network.domain}\n"
            f"  HostName {endpoint.host}\n"
            f"  Port {endpoint.port}\n"
            + (f"  ProxyJump {host_alias(host)}\n" if host else "")  # its port is on that host's loopback
            + f"  User {cluster.user}\n"
            f"  IdentityFile {config_path_value(identity)}\n"
            f"  UserKnownHostsFile {known}\n"
            f"  HostKeyAlias {vm.name}\n"
            f"  StrictHostKeyChecking yes\n"
            f"  CheckHostIP no\n"
        )
    blocks += [host_block(cluster, host) for host in hosts]
    return "\n".join(blocks)


def write_ssh_files(cluster: Cluster, mode: NetworkMode) -> list[Path]:
    """Write known_hosts and ssh_config for every VM whose host key exists."""
    entries = {vm.name: key for vm in cluster.vms if (key := read_host_key_public(cluster, vm.name))}
    if cluster.here != LOCAL:
        private = host_login_key(cluster)  # another host logs in to its VMs with its own key
    else:
        identity = login_key_path(cluster)
        private = identity.with_suffix("") if identity.suffix == ".pub" else identity
    from ..store.statedir import clean_temporaries, ensure_state

    ensure_state(cluster)
    with locked(cluster.state_dir / ".ssh.lock"):  # two setups at once write them one after the other
        clean_temporaries(cluster.state_dir, {"known_hosts", "ssh_config"})
        write_atomic(known_hosts_path(cluster), known_hosts(entries).encode())
        write_atomic(ssh_config_path(cluster), ssh_config(cluster, mode, private).encode())
    return [known_hosts_path(cluster), ssh_config_path(cluster)]


def config_path_value(path: Path) -> str:
    """A path as ssh_config(5) reads it literally: in double quotes (a space or `#` would
    split it or start a comment), `"` and `\\` escaped, `%` doubled (IdentityFile and
    UserKnownHostsFile expand %-tokens)."""
    text = str(path).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text}"'


def existing_config(cluster: Cluster) -> Path:
    config = ssh_config_path(cluster).absolute()
    if not config.exists():
        raise errors.SetupError(f"{config} does not exist", "run `make up` (or `make setup`) first")
    return config


# A connection whose host went silent is given up after ALIVE_SECONDS * ALIVE_COUNT.
ALIVE_SECONDS, ALIVE_COUNT = 2, 3
ALIAS_PREFIX = "kubenet-host."  # VM names hold no dot, so no alias is a VM's


CONNECT_SECONDS = 5


PERSIST_SECONDS = 60  # the shared connection outlives the last command by this much


def host_alias(host: RemoteHost) -> str:
    return ALIAS_PREFIX + host.name


def control_path(cluster: Cluster, host: RemoteHost) -> Path:
    """The shared connection's socket: in state_dir, or where that path would be too long for
    a socket (ssh adds a random suffix while it makes it: MAX_SOCKET_PATH leaves room), in the user's runtime directory."""
    own = cluster.state_dir.absolute() / f"host-{host.name}.sock"
    if len(str(own)) <= MAX_SOCKET_PATH:
        return own
    return runtime_dir() / f"host-{hashlib.sha256(str(own).encode()).hexdigest()[:16]}.sock"


def host_block(cluster: Cluster, host: RemoteHost) -> str:
    """The host's ssh_config block; its host key is checked as the user's ssh checks it
    (their known_hosts, or the one `known_hosts:` names), never accepted unseen."""
    user, _, address = host.destination.rpartition("@")
    lines = [f"Host {host_alias(host)}", f"  HostName {address}", f"  Port {host.port}"]
    lines += [f"  User {user}"] if user else []
    if host.identity is not None:
        lines += [f"  IdentityFile {config_path_value(host.identity)}", "  IdentitiesOnly yes"]
    if host.known_hosts is not None:
        lines += [f"  UserKnownHostsFile {config_path_value(host.known_hosts)}"]
    lines += [
        "  StrictHostKeyChecking yes",
        "  ControlMaster auto",
        f"  ControlPath {config_path_value(control_path(cluster, host))}",
        f"  ControlPersist {PERSIST_SECONDS}",
        f"  ConnectTimeout {CONNECT_SECONDS}",
        f"  ServerAliveInterval {ALIVE_SECONDS}",
        f"  ServerAliveCountMax {ALIVE_COUNT}",
    ]
    return "".join(f"{line}\n" for line in lines)
