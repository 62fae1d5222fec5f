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
import shutil
import socket
import time
from pathlib import Path

from ..model.cluster import Cluster, NetworkMode
from ..plumbing import errors
from ..plumbing.fsutil import write_atomic
from ..plumbing.process import kill, own_pid, run, wait_for_exit
from .hostpiece import Piece, with_block, without_block, write_in_place

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


def make_folder(folder: Path, record: dict) -> None:
    """Create the exported folder, if missing, as its parent's owner has it (hostnet runs as
    root; the folder is the learner's), and note in `record` that hostnet made it."""
    if folder.exists():
        return
    if not folder.parent.is_dir():
        raise errors.HostError(f"nfs.path: {folder.parent} does not exist", "create it, or point nfs.path elsewhere")
    uid, gid = folder_owner(folder.parent)
    folder.mkdir(mode=0o755)
    os.chown(folder, uid, gid)
    record["nfs_created"] = str(folder)


def remove_made_folder(record: dict) -> None:
    """Take away the folder hostnet made, if it is still empty; anything written there stays."""
    created = Path(record.get("nfs_created", "/nonexistent"))
    if created.is_dir() and not any(created.iterdir()):
        created.rmdir()


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


def note(cluster: Cluster, system: str, mode: NetworkMode) -> str | None:
    """What `ls` says of the export, when cluster.yaml asks for one. Only an address of this
    host's own bridge is asked: never a machine elsewhere that happens to have it."""
    if cluster.nfs is None:
        return None
    mount = f"vmhost:{cluster.nfs}"
    if mode == NetworkMode.VMNET_SHARED:
        return f"kubenet: NFS export: {cluster.nfs}, mounted as {mount} (macOS's nfsd)"
    if mode != NetworkMode.BRIDGE or system != "linux":
        return f"kubenet: NFS export: {cluster.nfs} is for bridge mode or vmnet-shared; in {mode} mode the VMs cannot reach it"
    from ..machine.probe import has_host_address

    if has_host_address(cluster.network) and answers(str(cluster.network.host_address)):
        return f"kubenet: NFS export: {cluster.nfs}, mounted as {mount}"
    return f"kubenet: NFS export: {cluster.nfs} is not served (`make hostnet` starts its server)"


# ---- the pieces `hostnet` adds and removes ----------------------------------------


class NfsServer(Piece):
    """Linux: nfs-ganesha serving the cluster's NFS folder on the bridge address."""

    key = "nfs"

    def file(self, suffix: str) -> Path:
        return self.where.state / f"ganesha-{self.cluster.name}.{suffix}"

    @property
    def folder(self) -> Path:
        # the one exported when cluster.yaml no longer names one: `--remove` still says what it stops
        return self.cluster.nfs or Path(self.record.get("nfs_folder", "(none)"))

    @property
    def recovery(self) -> Path:
        return self.where.state / f"ganesha-{self.cluster.name}-recovery"

    def conf_text(self) -> str:
        return ganesha_conf(self.cluster, self.folder, folder_owner(self.folder), self.recovery)

    def describe(self) -> str:
        return f"an NFS export of {self.folder} to {self.network.subnet}, mounted as {self.network.host_address}:{self.folder} (nfs-ganesha)"

    def pid(self) -> int | None:
        return own_pid(self.file("pid"), str(self.file("conf")))

    def present(self) -> bool:
        conf = self.file("conf")
        return self.folder.is_dir() and self.pid() is not None and conf.is_file() and conf.read_text() == self.conf_text()

    def add(self) -> None:
        if shutil.which("ganesha.nfsd") is None:  # before anything is made
            raise errors.HostError("nfs: needs an NFS server, and nfs-ganesha is not installed", "install it: `scripts/install-deps --nfs`")
        self._stop()
        if answers(str(self.network.host_address)):  # the host's own nfsd, say, on every address
            raise errors.HostError(f"another program serves {self.network.host_address}:{NFS_PORT} (the host's own NFS server?)",
                                   "stop it (`systemctl stop nfs-server`), or export the folder with it yourself and leave nfs: out")  # fmt: skip
        self.record["nfs_folder"] = str(self.folder)
        make_folder(self.folder, self.record)
        self.recovery.mkdir(mode=0o700, exist_ok=True)
        write_atomic(self.file("conf"), self.conf_text().encode(), 0o644)
        conf, pid, log = (str(self.file(suffix)) for suffix in ("conf", "pid", "log"))
        run(["ganesha.nfsd", "-f", conf, "-p", pid, "-L", log])
        if not wait_serving(str(self.network.host_address), lambda: self.pid() is not None):
            self._clear(keep_log=True)  # nothing half-made stays, but what the server said
            raise errors.HostError(f"nfs-ganesha did not start serving on {self.network.host_address}:{NFS_PORT}", f"see {log}")

    def remove(self) -> None:
        self._clear(keep_log=False)

    def _clear(self, keep_log: bool) -> None:
        self._stop()
        for suffix in ("conf", "pid") if keep_log else ("conf", "pid", "log"):
            self.file(suffix).unlink(missing_ok=True)
        shutil.rmtree(self.recovery, ignore_errors=True)
        remove_made_folder(self.record)

    def _stop(self) -> None:
        running = self.pid()
        if running is not None:
            kill(running, 15)
            wait_for_exit(running, 10)  # the port is free again before a new server takes it


class NfsExports(Piece):
    """macOS: the folder in /etc/exports between markers, served by the system's nfsd."""

    key = "nfs-exports"

    def lines(self) -> list[str]:
        return [darwin_exports_line(self.cluster, self.cluster.nfs, folder_owner(self.cluster.nfs))]

    def describe(self) -> str:
        return f"an NFS export of {self.cluster.nfs or 'a folder'} to {self.network.subnet} in {self.where.exports} (nfsd)"

    def present(self) -> bool:
        exports = self.where.exports
        text = exports.read_text() if exports.is_file() else ""
        return self.cluster.nfs.is_dir() and with_block(text, self.cluster, self.lines()) == text

    def add(self) -> None:
        make_folder(self.cluster.nfs, self.record)
        exports = self.where.exports
        before = exports.read_text() if exports.is_file() else ""
        write_in_place(exports, with_block(before, self.cluster, self.lines()))
        if run(["nfsd", "checkexports"], check=False).code != 0:
            write_in_place(exports, before)
            raise errors.HostError(f"nfsd refuses the export of {self.cluster.nfs}", "see `nfsd checkexports`")
        run(["nfsd", "enable"], check=False)  # already enabled: it says so, and that is fine
        run(["nfsd", "update"])

    def remove(self) -> None:
        exports = self.where.exports
        if exports.is_file():
            write_in_place(exports, without_block(exports.read_text(), self.cluster))
            run(["nfsd", "update"], check=False)
        remove_made_folder(self.record)
