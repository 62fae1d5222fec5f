"""cloud-init seeds: the three NoCloud files per VM, and the `cidata` ISO that carries them.

The file contents are computed by pure functions (whole-content tested); only
`read_templates` and `write_seed_iso` touch the disk.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from ..model.cluster import VM, Cluster, NetworkMode
from ..model.network import hosts_lines, user_nic_mac
from ..plumbing import errors
from ..plumbing.fsutil import atomic_output, sha256_of, write_atomic
from .bootmarks import WATCHER as BOOT_WATCHER
from .cloudconfig import check_known_keys, check_types, known_keys
from .sshkeys import HostKey

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "user-data"
COMMON_TEMPLATE = "common"
# Keys whose lists from the common and role templates are joined, not replaced.
JOINED_KEYS = ("packages", "runcmd", "bootcmd", "write_files", "ssh_authorized_keys")
VOLUME_ID = "cidata"
# ISO 9660 names (8.3) for readers without Rock Ridge or Joliet; Linux and
# cloud-init read the Rock Ridge names.
ISO_NAMES = {"user-data": "USERDATA.;1", "meta-data": "METADATA.;1", "network-config": "NETWORKC.;1"}


def templates_dir(cluster: Cluster) -> Path:
    """Where the cluster's templates are: cloud-config `<role>.yaml` files, and network-config
    extras in its `network-config/` (netconfig.py). Without it VMs would boot without what
    Kubernetes needs, so a missing one is an error."""
    directory = cluster.templates or TEMPLATE_DIR
    if not directory.is_dir():
        raise errors.SetupError(
            f"the user-data templates are missing: {directory} is not a directory",
            "reinstall kubenet" if directory == TEMPLATE_DIR else f"fix templates in {cluster.source}",
        )
    return directory


def template_names(cluster: Cluster) -> list[str]:
    return [COMMON_TEMPLATE, *(role.name for role in cluster.roles)]


def user_data_template_paths(cluster: Cluster) -> list[Path]:
    directory = templates_dir(cluster)
    return [directory / f"{name}.yaml" for name in template_names(cluster) if (directory / f"{name}.yaml").is_file()]


def template_paths(cluster: Cluster) -> list[Path]:
    """Every template file the cluster's seeds are made from (each optional), for Make's prerequisites."""
    from .netconfig import network_template_paths

    return [*user_data_template_paths(cluster), *network_template_paths(templates_dir(cluster), template_names(cluster))]


def read_network_templates(cluster: Cluster) -> dict[str, dict]:
    """Parsed network-config extras by name: 'common' and each role that has a file."""
    from .netconfig import read_network_templates as read

    return read(templates_dir(cluster), template_names(cluster))


def read_templates(cluster: Cluster) -> dict[str, dict]:
    """Parsed user-data templates by name: 'common' and each role that has a file."""
    from ..plumbing.yamltext import read_template

    known = known_keys()
    parsed = {}
    for path in user_data_template_paths(cluster):
        data = read_template(path) or {}
        if not isinstance(data, dict):
            raise errors.SetupError(f"{path}: expected a mapping of cloud-config keys")
        check_types(path, data)
        check_known_keys(path, data, known)
        parsed[path.stem] = data
    return parsed


def merge_cloud_config(*parts: dict) -> dict:
    """Later parts win for single values; lists of JOINED_KEYS are joined in order."""
    merged: dict = {}
    for part in parts:
        for key, value in part.items():
            if key in JOINED_KEYS and isinstance(value, list):
                merged[key] = [*merged.get(key, []), *value]
            else:
                merged[key] = value
    return merged


# The lines of a Debian or Ubuntu cloud image's own /etc/hosts, which a written one keeps.
SYSTEM_HOSTS = (
    "127.0.0.1 localhost",
    "::1 localhost ip6-localhost ip6-loopback",
    "ff02::1 ip6-allnodes",
    "ff02::2 ip6-allrouters",
)


def hosts_entries(cluster: Cluster, mode: NetworkMode) -> str:
    """/etc/hosts, whole: the system's lines, then every cluster name, `vmhost` and `kubernetes`.
    Whole, not appended: cloud-init writes it again when the VM re-provisions (its seed
    changed), and the names must then be today's, once."""
    return "\n".join(SYSTEM_HOSTS) + "\n# kubenet cluster\n" + "\n".join(hosts_lines(cluster, mode)) + "\n"


def user_data(cluster: Cluster, vm: VM, mode: NetworkMode, templates: dict[str, dict], login_key: str, host_key: HostKey) -> str:
    own = {
        "user": {"name": cluster.user},
        "ssh_authorized_keys": login_key.strip().splitlines(),  # the user's; on another host, its kubenet's too
        # The host key is ours: no other is generated, so none is trusted on first use.
        "ssh_keys": {"ed25519_private": host_key.private, "ed25519_public": host_key.public.strip()},
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],  # ours exists, so none is generated
        "write_files": [{"path": "/etc/hosts", "content": hosts_entries(cluster, mode)}],
        # At every boot, marks on the console when sshd listens and cloud-init has finished:
        # `up` waits by reading them, without knocking on the guest's sshd (bootmarks.py).
        "bootcmd": [BOOT_WATCHER],
    }
    config = merge_cloud_config(own, templates.get(COMMON_TEMPLATE, {}), templates.get(vm.role, {}))
    return "#cloud-config\n" + _dump(config)


def instance_id(vm: VM, user_data_text: bytes, network_config_text: bytes) -> str:
    """The VM's name and a digest of what its seed tells cloud-init: a changed template
    or cluster makes a new instance, whose per-instance modules run at the next boot."""
    digest = hashlib.sha256(user_data_text + b"\0" + network_config_text).hexdigest()
    return f"{vm.name}-{digest[:12]}"


def meta_data(vm: VM, instance: str) -> str:
    return _dump({"instance-id": instance, "local-hostname": vm.name})


def network_config(cluster: Cluster, vm: VM, mode: NetworkMode, extras: dict[str, dict] | None = None) -> str:
    network = cluster.network
    cluster_nic: dict = {
        "match": {"macaddress": vm.mac},
        "addresses": [f"{vm.ip}/{network.subnet.prefixlen}"],
    }
    if mode == NetworkMode.USER:
        # Internet and SSH through the user-mode NIC; the cluster NIC only carries 192.168.1.x.
        ethernets = {"uplink": {"match": {"macaddress": user_nic_mac(vm)}, "dhcp4": True}, "cluster": cluster_nic}
    else:
        cluster_nic["routes"] = [{"to": "0.0.0.0/0", "via": str(network.host_address)}]  # `default` breaks cloud-init 22.4
        cluster_nic["nameservers"] = {"addresses": [str(network.host_address)], "search": [network.domain]}
        ethernets = {"cluster": cluster_nic}
    from .netconfig import DIRECTORY, merge_network

    config: dict = {"ethernets": ethernets}
    for name in (COMMON_TEMPLATE, vm.role):
        if extras and name in extras:
            config = merge_network(config, extras[name], f"{DIRECTORY}/{name}.yaml")
    return _dump({"version": 2, **config})


def seed_files(
    cluster: Cluster, vm: VM, mode: NetworkMode, templates: dict[str, dict], login_key: str, host_key: HostKey,
    network_extras: dict[str, dict] | None = None,
) -> dict[str, bytes]:
    user = user_data(cluster, vm, mode, templates, login_key, host_key).encode()
    network = network_config(cluster, vm, mode, network_extras).encode()
    return {"user-data": user, "meta-data": meta_data(vm, instance_id(vm, user, network)).encode(), "network-config": network}


def write_seed_iso(files: dict[str, bytes], path: Path) -> None:
    """A NoCloud seed: volume id `cidata`, Joliet and Rock Ridge; replaced atomically."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=VOLUME_ID, joliet=3, rock_ridge="1.09")
    for name, data in files.items():
        iso.add_fp(io.BytesIO(data), len(data), f"/{ISO_NAMES[name]}", rr_name=name, joliet_path=f"/{name}")
    with atomic_output(path, 0o600) as temporary:
        with open(temporary, "wb") as stream:
            iso.write_fp(stream)
            stream.flush()
            os.fsync(stream.fileno())  # whole on disk before it takes the seed's name
    iso.close()
    # Written after the seed: make compares the two and remakes a seed damaged since.
    write_atomic(checksum_path(path), f"{sha256_of(path)}  {path}\n".encode())


def checksum_path(seed: Path) -> Path:
    return seed.with_name(seed.name + ".sha256")


def _dump(data: dict) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def string(dumper, value):
        style = "|" if "\n" in value else None  # keys and file contents stay readable
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, string)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1000)
