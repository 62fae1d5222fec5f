"""The NFS export of the tutorial's ch. 7 (`nfs: {path: …}` in cluster.yaml): a host folder
that the dynamic provisioner mounts as vmhost:<path>, read-write for the cluster's subnet only.

On Linux kubenet runs an NFS server of its own, nfs-ganesha, in user space, as it runs
dnsmasq for DNS: started with a configuration kubenet wrote, listening on the bridge
address alone, stopped by `hostnet --remove`. The host's /etc/exports, its nfs-server
service and its kernel are left as they are, and a kernel without nfsd (a container's)
serves all the same. NFSv4 only, so neither rpcbind nor mountd is needed.
On macOS the system's nfsd serves a block of /etc/exports between markers, the tutorial's
own line.

Root in a VM (the provisioner, pods) writes as the folder's owner on the host, as macOS's
`-maproot` does, so the learner reads and removes what the cluster wrote without sudo;
every other user writes as itself.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from . import errors
from .cluster import Cluster

NFS_PORT = 2049


def folder_owner(path: Path) -> tuple[int, int]:
    """The uid and gid of `path`, or of its nearest existing parent (a folder still to be made)."""
    for candidate in (path, *path.parents):
        try:
            info = candidate.stat()
        except FileNotFoundError:
            continue
        return info.st_uid, info.st_gid
    return 0, 0


def ganesha_conf(cluster: Cluster, folder: Path, owner: tuple[int, int], recovery: Path) -> str:
    network = cluster.network
    uid, gid = owner
    return f"""\
# Written by kubenet for {cluster.source}; `invoke hostnet --remove` takes it out.
NFS_CORE_PARAM {{
    Protocols = 4;
    Bind_addr = {network.host_address};
    NFS_Port = {NFS_PORT};
    Enable_NLM = false;
    Enable_RQUOTA = false;
}}
NFSV4 {{
    Graceless = true;  # a restarted server serves at once; NFSv4 clients reclaim nothing here
    RecoveryRoot = "{recovery}";
    Only_Numeric_Owners = true;  # owners as uids, as the VMs and the host number them: no idmapd needed
}}
EXPORT {{
    Export_Id = 1;
    Path = "{folder}";
    Pseudo = "{folder}";  # the same path as on the host: the provisioner's nfs.path
    Protocols = 4;
    SecType = sys;
    Access_Type = None;  # nobody, but the subnet below
    Squash = Root_Squash;  # root in a VM writes as the folder's owner
    Anonymous_Uid = {uid};
    Anonymous_Gid = {gid};
    CLIENT {{
        Clients = {network.subnet};
        Access_Type = RW;
    }}
    FSAL {{
        Name = VFS;
    }}
}}
"""


def darwin_exports_line(cluster: Cluster, folder: Path, owner: tuple[int, int]) -> str:
    """The tutorial's /etc/exports line for macOS's nfsd: the subnet only, root mapped to the folder's owner."""
    network = cluster.network.subnet
    return f'"{folder}" -alldirs -maproot={owner[0]} -network {network.network_address} -mask {network.netmask}'


def make_folder(folder: Path) -> None:
    """Create the exported folder as its parent's owner has it (hostnet runs as root;
    the folder is the learner's)."""
    if not folder.parent.is_dir():
        raise errors.HostError(f"nfs.path: {folder.parent} does not exist", "create it, or point nfs.path elsewhere")
    uid, gid = folder_owner(folder.parent)
    folder.mkdir(mode=0o755)
    os.chown(folder, uid, gid)


def answers(address: str) -> bool:
    """Whether something accepts connections on the NFS port of `address`."""
    try:
        with socket.create_connection((address, NFS_PORT), timeout=1):
            return True
    except OSError:
        return False


def wait_serving(address: str, alive, timeout: float = 15) -> bool:
    """Whether the server accepts connections on `address` before `timeout`, while `alive()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        if answers(address):
            return True
        time.sleep(0.1)
    return False
