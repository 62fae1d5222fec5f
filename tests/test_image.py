"""The base image download against a real HTTP server on 127.0.0.1."""

import hashlib

import pytest

from kubenet.plumbing import errors
from kubenet.model.config import build_cluster
from kubenet.model.host import host_profile
from kubenet.prepare.image import base_image_path, fetch_image, parse_sha256sums

IMAGE = bytes(range(256)) * 4096  # 1 MiB, not all one byte
NAME = "jammy-server-cloudimg-amd64.img"
HOST, _ = host_profile("linux-x86_64")


def sums(data: bytes, name: str = NAME) -> bytes:
    return f"{'0' * 64} *other.img\n{hashlib.sha256(data).hexdigest()} *{name}\n".encode()


def make_cluster(tmp_path, server, **image):
    url = f"http://127.0.0.1:{server.server_port}/jammy/{{arch}}/jammy-server-cloudimg-{{arch}}.img"
    return build_cluster({"image": {"url": url, **image}}, tmp_path / "cluster.yaml")


@pytest.fixture
def cache(tmp_path):
    return {"KUBENET_CACHE": str(tmp_path / "cache")}


def test_good_download_is_verified_against_sha256sums_and_then_reused(tmp_path, server, cache):
    server.files = {f"/jammy/amd64/{NAME}": IMAGE, "/jammy/amd64/SHA256SUMS": sums(IMAGE)}
    cluster = make_cluster(tmp_path, server)
    path = fetch_image(cluster, HOST, cache, progress=False)
    assert path == base_image_path(cluster, HOST, cache)
    assert (path.parent.parent, path.parent.name[:4], path.name) == (tmp_path / "cache" / "images", "url-", NAME)
    assert path.read_bytes() == IMAGE
    assert path.stat().st_mode & 0o777 == 0o444  # it backs disks: read-only
    assert sorted(p.name for p in path.parent.iterdir()) == [f".{NAME}.lock", NAME, f"{NAME}.sha256"]
    count = len(server.requests)
    assert fetch_image(cluster, HOST, cache, progress=False) == path
    assert len(server.requests) == count  # reused: nothing fetched again


def test_wrong_checksum_is_a_clear_error_and_nothing_is_kept(tmp_path, server, cache):
    server.files = {f"/jammy/amd64/{NAME}": IMAGE, "/jammy/amd64/SHA256SUMS": sums(b"something else")}
    cluster = make_cluster(tmp_path, server)
    with pytest.raises(errors.DownloadError) as excinfo:
        fetch_image(cluster, HOST, cache, progress=False)
    url = f"http://127.0.0.1:{server.server_port}/jammy/amd64/{NAME}"
    assert str(excinfo.value) == (
        f"{url}: SHA-256 is {hashlib.sha256(IMAGE).hexdigest()}, expected {hashlib.sha256(b'something else').hexdigest()};"
        " the download was deleted (hint: run again; if it repeats, check image.url and image.sha256)"
    )
    assert [p.name for p in base_image_path(cluster, HOST, cache).parent.iterdir()] == [f".{NAME}.lock"]


def test_sha256_from_cluster_yaml_needs_no_sha256sums(tmp_path, server, cache):
    server.files = {f"/jammy/amd64/{NAME}": IMAGE}
    cluster = make_cluster(tmp_path, server, sha256=f"sha256:{hashlib.sha256(IMAGE).hexdigest()}")
    assert fetch_image(cluster, HOST, cache, progress=False).read_bytes() == IMAGE
    assert all(not path.endswith("SHA256SUMS") for path, _ in server.requests)


def test_interrupted_download_leaves_no_final_file_and_resumes(tmp_path, server, cache):
    server.files = {f"/jammy/amd64/{NAME}": IMAGE, "/jammy/amd64/SHA256SUMS": sums(IMAGE)}
    server.cut_after = 300_000
    cluster = make_cluster(tmp_path, server)
    with pytest.raises(errors.DownloadError, match="download interrupted at 300000 of 1048576 bytes .*run again to resume"):
        fetch_image(cluster, HOST, cache, progress=False)
    directory = base_image_path(cluster, HOST, cache).parent
    assert not (directory / NAME).exists()
    assert (directory / f"{NAME}.part").stat().st_size == 300_000
    path = fetch_image(cluster, HOST, cache, progress=False)
    assert path.read_bytes() == IMAGE
    assert server.requests[-1] == (f"/jammy/amd64/{NAME}", "bytes=300000-")
    assert not (directory / f"{NAME}.part").exists()


def test_missing_image_on_server(tmp_path, server, cache):
    server.files = {"/jammy/amd64/SHA256SUMS": sums(IMAGE)}
    with pytest.raises(errors.DownloadError, match=r"HTTP 404 .*check image.url"):
        fetch_image(make_cluster(tmp_path, server), HOST, cache, progress=False)


def test_progress_goes_to_stderr_only_when_asked(tmp_path, server, cache, capsys):
    server.files = {f"/jammy/amd64/{NAME}": IMAGE, "/jammy/amd64/SHA256SUMS": sums(IMAGE)}
    fetch_image(make_cluster(tmp_path, server), HOST, cache, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{NAME} [##############################] 100.0%" in captured.err


def test_local_paths_and_file_urls_are_used_in_place(tmp_path, cache):
    local = tmp_path / "images" / "base.img"
    local.parent.mkdir()
    local.write_bytes(IMAGE)
    for url in ("images/base.img", f"file://{local}", str(local)):
        cluster = build_cluster({"image": {"url": url, "sha256": hashlib.sha256(IMAGE).hexdigest()}}, tmp_path / "cluster.yaml")
        assert fetch_image(cluster, HOST, cache, progress=False) == local
    bad = build_cluster({"image": {"url": str(local), "sha256": "0" * 64}}, tmp_path / "cluster.yaml")
    with pytest.raises(errors.DownloadError, match="SHA-256 is .*, expected 0000"):
        fetch_image(bad, HOST, cache, progress=False)
    missing = build_cluster({"image": {"url": "nope.img"}}, tmp_path / "cluster.yaml")
    with pytest.raises(errors.DownloadError, match="nope.img does not exist"):
        fetch_image(missing, HOST, cache, progress=False)


def test_sha256sums_parsing():
    text = "aa *a.img\nBB  b.img\n"
    assert parse_sha256sums(text, "b.img") == "bb"
    assert parse_sha256sums(text, "c.img") is None
