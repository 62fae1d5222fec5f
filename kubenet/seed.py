"""cloud-init seeds: the three NoCloud files per VM, and the `cidata` ISO that carries them.

The file contents are computed by pure functions (whole-content tested); only
`read_templates` and `write_seed_iso` touch the disk.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from . import errors
from .cluster import VM, Cluster, NetworkMode
from .cloudconfig import check_known_keys, check_types, known_keys
from .fsutil import atomic_output, sha256_of, write_atomic
from .network import hosts_lines, user_nic_mac
from .sshkeys import HostKey

TEMPLATE_DIR = Path(__file__).parent / "templates" / "user-data"
COMMON_TEMPLATE = "common"
# Keys whose lists from the common and role templates are joined, not replaced.
JOINED_KEYS = ("packages", "runcmd", "bootcmd", "write_files", "ssh_authorized_keys")
VOLUME_ID = "cidata"
# ISO 9660 names (8.3) for readers without Rock Ridge or Joliet; Linux and
# cloud-init read the Rock Ridge names.
ISO_NAMES = {"user-data": "USERDATA.;1", "meta-data": "METADATA.;1", "network-config": "NETWORKC.;1"}


def template_paths(cluster: Cluster, directory: Path | None = None) -> list[Path]:
    """The template files the cluster's seeds are made from, for Make's prerequisites.

    Each template is optional, but the directory is not: without kubenet's own,
    VMs would boot without what Kubernetes needs, so that is an error.
    """
    directory = directory or cluster.templates or TEMPLATE_DIR
    if not directory.is_dir():
        raise errors.SetupError(
            f"the user-data templates are missing: {directory} is not a directory",
            "reinstall kubenet" if directory == TEMPLATE_DIR else f"fix templates in {cluster.source}",
        )
    names = [COMMON_TEMPLATE, *(role.name for role in cluster.roles)]
    return [directory / f"{name}.yaml" for name in names if (directory / f"{name}.yaml").is_file()]


def read_templates(cluster: Cluster, directory: Path | None = None) -> dict[str, dict]:
    """Parsed templates by name: 'common' and each role that has a file."""
    import yaml

    known = known_keys()
    parsed = {}
    for path in template_paths(cluster, directory):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except UnicodeDecodeError:
            raise errors.SetupError(f"{path}: not UTF-8 text", "save the template as UTF-8") from None
        except yaml.YAMLError as error:
            raise errors.SetupError(f"{path}: not valid YAML: {error}".replace("\n", " ")) from None
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


def hosts_entries(cluster: Cluster, mode: NetworkMode) -> str:
    """What the VMs append to /etc/hosts: every cluster name, `vmhost` and `kubernetes`."""
    return "# kubenet cluster\n" + "\n".join(hosts_lines(cluster, mode)) + "\n"


def user_data(cluster: Cluster, vm: VM, mode: NetworkMode, templates: dict[str, dict], login_key: str, host_key: HostKey) -> str:
    own = {
        "user": {"name": cluster.user},
        "ssh_authorized_keys": [login_key.strip()],
        # The host key is ours: no other is generated, so none is trusted on first use.
        "ssh_keys": {"ed25519_private": host_key.private, "ed25519_public": host_key.public.strip()},
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],  # ours exists, so none is generated
        "write_files": [{"path": "/etc/hosts", "append": True, "content": hosts_entries(cluster, mode)}],
    }
    config = merge_cloud_config(own, templates.get(COMMON_TEMPLATE, {}), templates.get(vm.role, {}))
    return "#cloud-config\n" + _dump(config)


def meta_data(vm: VM) -> str:
    return _dump({"instance-id": vm.name, "local-hostname": vm.name})


def network_config(cluster: Cluster, vm: VM, mode: NetworkMode) -> str:
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
    return _dump({"version": 2, "ethernets": ethernets})


def seed_files(
    cluster: Cluster, vm: VM, mode: NetworkMode, templates: dict[str, dict], login_key: str, host_key: HostKey
) -> dict[str, bytes]:
    return {
        "user-data": user_data(cluster, vm, mode, templates, login_key, host_key).encode(),
        "meta-data": meta_data(vm).encode(),
        "network-config": network_config(cluster, vm, mode).encode(),
    }


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
