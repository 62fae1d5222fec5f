"""What the controlling checkout sends another host, and how that host takes it in.

A host gets, in a directory of its own (`hosts.<name>.dir`, in its user's home): its copy
of cluster.yaml (which says which host reads it, `here:`, and keeps state there, in
`state`), the login user's public key, the templates, and a kernel-boot image's kernel
and initrd. Never a private key: the host makes its VMs' host keys itself and the
controller pins what it is told back over the host's own pinned connection.

It travels as one tar stream on the stdin of kubenet there (`host-setup`), which takes
only regular files under the names below, each written whole, into a directory it
made and marked, as state_dir is.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path
from typing import BinaryIO

from ..model.cluster import Cluster, ImageKind, RemoteHost
from ..plumbing import errors

MARK = ".kubenet-host"
CLUSTER_FILE = "cluster.yaml"
LOGIN_KEY = "login.pub"
STATE = "state"
MAX_BYTES = 1 << 30  # far more than a kernel and an initrd; a stream past it is refused
# What may come: these names only, each file's base name plain (no dot first, no slash).
PLAIN = r"[A-Za-z0-9_][A-Za-z0-9._+-]*"
ACCEPTED = re.compile(rf"{CLUSTER_FILE}|{LOGIN_KEY}|templates/{PLAIN}\.yaml|templates/network-config/{PLAIN}\.yaml|image/{PLAIN}")
# Keys whose paths mean the controller's files, or pieces only the controller's host has.
CONTROLLER_ONLY = ("nfs", "forward", "pod_routes")


def host_copy(data: dict, cluster: Cluster, host: RemoteHost) -> dict:
    """The host's cluster file, from the controller's (as parsed): the same cluster, its
    paths pointing at what the bundle brings."""
    copy = {key: value for key, value in data.items() if key not in CONTROLLER_ONLY}
    copy["here"] = host.name
    copy["state_dir"] = STATE
    copy["ssh_key"] = LOGIN_KEY
    copy["hosts"] = {other.name: {"ssh": other.destination} for other in cluster.hosts}
    if cluster.templates is not None:
        copy["templates"] = "templates"
    if cluster.image.kind == ImageKind.KERNEL:
        image = dict(copy.get("image") or {})
        for key in ("kernel", "initrd"):
            if getattr(cluster.image, key):
                image[key] = f"image/{Path(getattr(cluster.image, key)).name}"
        copy["image"] = image
    return copy


def members(cluster: Cluster, host: RemoteHost) -> dict[str, Path | bytes]:
    """Each name the bundle holds, and the file (or text) it is made from."""
    import yaml

    from ..model.config import read_config_text
    from ..prepare.sshkeys import login_key_path

    data = yaml.safe_load(read_config_text(cluster.source)) or {}
    chosen: dict[str, Path | bytes] = {
        CLUSTER_FILE: yaml.safe_dump(host_copy(data, cluster, host), sort_keys=False).encode(),
        LOGIN_KEY: login_key_path(cluster),
    }
    if cluster.templates is not None:
        for path in sorted(cluster.templates.glob("*.yaml")) + sorted(cluster.templates.glob("network-config/*.yaml")):
            if path.is_file():
                chosen[f"templates/{path.relative_to(cluster.templates)}"] = path
    if cluster.image.kind == ImageKind.KERNEL:
        for path in (cluster.image.kernel, cluster.image.initrd):
            if path:
                chosen[f"image/{Path(path).name}"] = Path(path)
    return chosen


def pack(chosen: dict[str, Path | bytes]) -> bytes:
    """The tar stream: regular files, mode 0600, no owner names."""
    output = io.BytesIO()
    with tarfile.open(fileobj=output, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, source in chosen.items():
            data = source if isinstance(source, bytes) else source.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return output.getvalue()


def host_directory(path: Path) -> Path:
    """The host's directory, made (0700, marked) if missing; refused if it holds what this did not put there."""
    from ..store.statedir import check_ancestors, own_directory

    def refuse_if_used(found: Path) -> None:
        if any(os.scandir(found)):
            raise errors.SetupError(f"{found} holds files kubenet did not put there", "give this host another dir: in the controlling cluster.yaml's hosts:")

    check_ancestors(path)
    return own_directory(path, "kubenet's directory on this host", "kubenet's directory for a cluster driven from another host\n", refuse_if_used, MARK)


def unpack(stream: BinaryIO, directory: Path) -> list[str]:
    """Write each accepted file of the tar stream into `directory`; the templates there are
    replaced by those sent. The names written, in order."""
    from ..plumbing.fsutil import write_atomic

    host_directory(directory)
    written, total = [], 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile() or not ACCEPTED.fullmatch(member.name):
                    raise errors.SetupError(f"what came from the controlling host holds {member.name!r}, which kubenet never sends", "run the same kubenet on both hosts")
                total += member.size
                if total > MAX_BYTES:
                    raise errors.SetupError(f"what came from the controlling host is larger than {MAX_BYTES >> 20} MiB")
                data = tar.extractfile(member).read()
                written.append(member.name)
                target = directory / member.name
                for parent in reversed(target.relative_to(directory).parents[:-1]):
                    (directory / parent).mkdir(mode=0o700, exist_ok=True)
                write_atomic(target, data, 0o600)
    except tarfile.TarError as error:
        raise errors.SetupError(f"what came from the controlling host is not a whole bundle: {error}", "run `make setup` there again") from None
    remove_unsent_templates(directory, set(written))
    return written


def remove_unsent_templates(directory: Path, sent: set[str]) -> None:
    """A template removed on the controlling host stops applying here too."""
    templates = directory / "templates"
    if not templates.is_dir():
        return
    for path in sorted(templates.glob("*.yaml")) + sorted(templates.glob("network-config/*.yaml")):
        if str(path.relative_to(directory)) not in sent:
            path.unlink()
