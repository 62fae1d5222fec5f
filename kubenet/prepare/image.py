"""The base image: fetched once into a per-user cache, verified, then shared by every VM.

A download goes to `<name>.part` and gets its final name only once its SHA-256
matches, so the final name always holds a verified image. An interrupted
download resumes from the `.part` file (or restarts if the server cannot
resume). Local paths and file:// URLs are used in place, offline.

Cached images are never modified or replaced, as VM disks read through to
them: each lives in a directory of its own, named by its SHA-256 when
cluster.yaml pins one (`images/<sha256>/<name>`), else by its URL
(`images/url-<hash of the URL>/<name>`). A new digest is a new file; disks made
on the old one keep it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import unquote, urlparse

from ..model.cluster import Cluster
from ..model.host import Host
from ..model.paths import cache_dir
from ..plumbing import errors
from ..plumbing.fsutil import locked, sha256_of, write_atomic

CHUNK = 1 << 20
TIMEOUT = 60


def image_url(cluster: Cluster, host: Host) -> str:
    return cluster.image.url.format(arch=host.arch.image_arch())


def local_path(url: str, base: Path) -> Path | None:
    """The file a local path or file:// URL names; None for a remote URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        path = Path(url).expanduser()
        return path if path.is_absolute() else base / path
    return None


def base_image_path(cluster: Cluster, host: Host, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the base image is (local) or will be (cached download)."""
    url = image_url(cluster, host)
    local = local_path(url, cluster.source.absolute().parent)
    if local is not None:
        return local
    return cache_dir(environ) / "images" / cache_key(url, cluster.image.sha256) / image_file_name(url)


def base_image(cluster: Cluster, host: Host) -> Path | None:
    """The image every VM's disk overlays; None when disks start blank (a kernel image without `url`)."""
    return base_image_path(cluster, host) if cluster.image.url else None


def cache_key(url: str, sha256: str | None) -> str:
    return sha256 or "url-" + hashlib.sha256(url.encode()).hexdigest()[:16]


def image_file_name(url: str) -> str:
    return Path(unquote(urlparse(url).path)).name or "image"


def parse_sha256sums(text: str, filename: str) -> str | None:
    """The digest SHA256SUMS lists for `filename` (`<hex> *<name>` or `<hex>  <name>`)."""
    for line in text.splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*").strip() == filename:
            return parts[0].lower()
    return None


def fetch_image(
    cluster: Cluster,
    host: Host,
    environ: Mapping[str, str] = os.environ,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Make the base image available and verified; returns its path. A cached image is never replaced."""
    url = image_url(cluster, host)
    expected = cluster.image.sha256
    target = base_image_path(cluster, host, environ)
    if local_path(url, cluster.source.absolute().parent) is not None:
        if not target.is_file():
            raise errors.DownloadError(f"base image {target} does not exist", "fix image.url in cluster.yaml")
        if expected:
            _check_digest(target, expected, url)
        return target
    marker = target.with_name(target.name + ".sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target.with_name(f".{target.name}.lock")):
        if target.is_file() and marker.is_file():
            return target  # verified when it was fetched, and never written since
        if expected is None:
            expected = published_sha256(url)
        part = target.with_name(target.name + ".part")
        show = sys.stderr.isatty() if progress is None else progress
        download(url, part, _progress_printer(target.name) if show else None)
        actual = sha256_of(part)
        if actual != expected:
            part.unlink()
            raise errors.DownloadError(
                f"{url}: SHA-256 is {actual}, expected {expected}; the download was deleted",
                "run again; if it repeats, check image.url and image.sha256",
            )
        os.chmod(part, 0o444)  # it will back VM disks: nothing may write to it
        os.replace(part, target)
        write_atomic(marker, f"{actual}\n".encode(), 0o644)
    others = sorted(p for p in target.parent.parent.glob(f"*/{target.name}") if p != target)
    if say and others:  # a newly fetched version of an image cached before
        say(
            f"kubenet: new disks will use {target}; disks made before keep the image they were made on "
            f"({', '.join(str(p) for p in others)}); `invoke reset` moves a VM to the new one"
        )
    return target


def check_local_image(cluster: Cluster, host: Host, environ: Mapping[str, str] = os.environ) -> None:
    """A local image.url with an image.sha256 must match it before a disk is made on it.

    The verdict is remembered per file (path, size, mtime) in the cache, so that
    later setups need not read the whole image again.
    """
    url = image_url(cluster, host)
    local = local_path(url, cluster.source.absolute().parent)
    expected = cluster.image.sha256
    if local is None or not expected:
        return
    if not local.is_file():
        raise errors.DownloadError(f"base image {local} does not exist", "fix image.url in cluster.yaml")
    info = local.stat()
    key = hashlib.sha256(f"{os.path.realpath(local)}\0{info.st_size}\0{info.st_mtime_ns}".encode()).hexdigest()
    verdict = cache_dir(environ) / "verified" / key
    try:
        if verdict.read_text().strip() == expected:
            return
    except OSError:
        pass
    _check_digest(local, expected, url)
    try:
        write_atomic(verdict, f"{expected}\n".encode(), 0o644)
    except OSError:
        pass  # an unwritable cache only costs time


def published_sha256(url: str) -> str:
    """The digest from the SHA256SUMS file published beside the image."""
    sums_url = url.rsplit("/", 1)[0] + "/SHA256SUMS"
    name = url.rsplit("/", 1)[1]
    text = _read_url(sums_url).decode(errors="replace")
    digest = parse_sha256sums(text, name)
    if digest is None:
        raise errors.DownloadError(
            f"{sums_url} lists no checksum for {name}", "give image.sha256 in cluster.yaml"
        )
    return digest


def download(url: str, part: Path, report: Callable[[int, int | None], None] | None) -> None:
    """Fetch `url` into `part`, resuming what an earlier attempt left there."""
    import http.client
    import urllib.error
    import urllib.request

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to fetch: the part is whole
            return
        raise errors.DownloadError(f"{url}: HTTP {error.code} {error.reason}", "check image.url in cluster.yaml") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise errors.DownloadError(f"{url}: cannot connect: {reason}", "check the network and image.url") from None
    with response:
        resumed = response.status == 206
        length = response.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length else None
        done = have if resumed else 0
        try:
            with open(part, "ab" if resumed else "wb") as stream:
                os.chmod(part, 0o644)
                while chunk := response.read(CHUNK):
                    stream.write(chunk)
                    done += len(chunk)
                    if report:
                        report(done, total)
        except (OSError, http.client.HTTPException) as error:
            raise errors.DownloadError(
                f"{url}: download interrupted at {done} bytes ({error})", "run again to resume"
            ) from None
        finally:
            if report:
                print(file=sys.stderr)
    if total is not None and done < total:
        raise errors.DownloadError(f"{url}: download interrupted at {done} of {total} bytes", "run again to resume")


def _read_url(url: str) -> bytes:
    import http.client
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        raise errors.DownloadError(f"{url}: HTTP {error.code} {error.reason}", "give image.sha256 in cluster.yaml") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise errors.DownloadError(f"{url}: cannot read: {getattr(error, 'reason', error)}", "check the network and image.url") from None


def _check_digest(path: Path, expected: str, url: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise errors.DownloadError(f"{url}: SHA-256 is {actual}, expected {expected}", "check image.sha256 in cluster.yaml")


def _progress_printer(name: str) -> Callable[[int, int | None], None]:
    started = time.monotonic()
    last = [0.0]

    def report(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2 and done != total:
            return
        last[0] = now
        rate = done / max(now - started, 1e-3) / 2**20
        if total:
            bar = "#" * int(30 * done / total)
            text = f"{name} [{bar:<30}] {100 * done / total:5.1f}% {done / 2**20:8.1f}/{total / 2**20:.1f} MiB {rate:6.1f} MiB/s"
        else:
            text = f"{name} {done / 2**20:8.1f} MiB {rate:6.1f} MiB/s"
        print(f"\r{text}", end="", file=sys.stderr, flush=True)

    return report


def fetch_image_of(cluster: Cluster, host: Host, say: Callable[[str], None]) -> None:
    """`invoke image`: the verified base image's path on stdout (none when image.url is not set)."""
    if not cluster.image.url:
        say("kubenet: image.url is not set: no base image to fetch")
        return
    print(fetch_image(cluster, host, say=say))
