"""What a VM's qemu holds of the host's memory under TCG, and what the translation cache
size costs in boot time.

1. For each TCG translation cache size (`tcg_tb_size`), a fresh cluster of one VM is
   brought up with `make up`: the tiny guest (256 MiB, to SSH) and the UEFI Debian
   guest with real cloud-init (2 GiB, to cloud-init done). Printed: the time of
   `make up` and the qemu's resident memory once ready (`invoke ls --json`).
2. Page cache given back: in the UEFI guest, a 1 GiB file is read into the page cache
   (`cat`), then dropped (`echo 3 > /proc/sys/vm/drop_caches`); qemu's resident memory
   is printed before, after the read, and each 10 s for a minute after the drop. Once
   with QEMU's default cache (1 GiB) and the guest's balloon driver unbound (as before
   kubenet had a balloon), once as kubenet runs it now.
3. The tutorial's 7 VMs as tiny guests: their qemus' memory together, idle, both ways.

Run: `make bench-memory` (or python bench/memory.py [sizes...]); it takes about 10 minutes.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from kubenet.run.qemu import TCG_TB_SIZE_MIB  # noqa: E402
from tinyimage.build import build  # noqa: E402
from tinyimage.cluster import TUTORIAL_ROLES, free_port_base, tear_down, write_cluster  # noqa: E402

INVOKE = str(Path(sys.executable).parent / "invoke")
SIZES = [64, 128, 256, 512, 1024]
DEFAULT_TB_SIZE = 1024  # QEMU's own for system emulation
UNBIND_BALLOON = "for d in /sys/bus/virtio/drivers/virtio_balloon/virtio*; do echo ${d##*/} > /sys/bus/virtio/drivers/virtio_balloon/unbind; done"


class Bench:
    """One throwaway cluster: its directory, cluster.yaml and tmux server."""

    def __init__(self, write_config: Callable[[Path], Path]):
        self.directory = Path(tempfile.mkdtemp(prefix="knmem"))
        self.config = write_config(self.directory)
        self.env = {**os.environ, "KUBENET_TMUX_SOCKET": str(self.directory / "tmux.sock"), "KUBENET_ACCEL": "tcg"}

    def invoke(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([INVOKE, "--search-root", str(ROOT), *args, "--config", str(self.config)], env=self.env, capture_output=True, text=True)

    def up(self) -> float:
        started = time.perf_counter()
        done = subprocess.run(["make", "-C", str(ROOT), "up", f"CONFIG={self.config}"], env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"make up failed:\n{done.stderr}")
        return time.perf_counter() - started

    def held(self) -> dict[str, int]:
        """Each running VM's qemu resident memory, in MiB."""
        return {row["name"]: row["rss"] >> 20 for row in json.loads(self.invoke("ls", "--json").stdout) if row["rss"] is not None}

    def root(self, vm: str, command: str, sudo: bool) -> str:
        ssh = ["ssh", "-F", str(self.directory / ".kubenet/ssh_config"), *([] if sudo else ["-l", "root"]), vm]
        done = subprocess.run([*ssh, f"sudo -n sh -c {shlex.quote(command)}" if sudo else command], capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise SystemExit(f"{vm}: {command}: {done.stderr.strip()}")
        return done.stdout

    def close(self) -> None:
        tear_down(self.directory, self.config, self.env, [INVOKE, "--search-root", str(ROOT)], seconds=60)


def tiny_config(kernel: Path, initrd: Path, roles: str, count: int, tb_size: int) -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        config = write_cluster(directory, kernel, initrd, roles, count)
        config.write_text(config.read_text() + f"tcg_tb_size: {tb_size}\n")
        return config

    return write


def uefi_config(image: Path, digest: str, tb_size: int) -> Callable[[Path], Path]:
    from test_uefi_cloud import offline_templates

    def write(directory: Path) -> Path:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "id_ed25519")], check=True)
        config = directory / "cluster.yaml"
        config.write_text(
            "name: kmem\nroles:\n  - {name: node, count: 1, vcpus: 1, memory: 2G}\n"
            f"network: {{mode: user, ssh_port_base: {free_port_base(1)}}}\n"
            f"image: {{kind: cloud, url: 'file://{image}', sha256: {digest}}}\n"
            f"templates: {offline_templates(directory / 'templates')}\nssh_key: {directory}/id_ed25519.pub\n"
            f"accel: tcg\ndisk_size: 4G\ntcg_tb_size: {tb_size}\n"
        )
        return config

    return write


def page_cache(bench: Bench, balloon: bool) -> list[str]:
    """qemu's resident memory around a 1 GiB read into the guest's page cache and its drop."""
    if not balloon:
        bench.root("node0", UNBIND_BALLOON, sudo=True)
    bench.root("node0", "dd if=/dev/zero of=/var/tmp/big bs=1M count=1024 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches", sudo=True)
    time.sleep(10)
    figures = [f"before {bench.held()['node0']}"]
    bench.root("node0", "cat /var/tmp/big > /dev/null", sudo=True)
    figures.append(f"read {bench.held()['node0']}")
    bench.root("node0", "echo 3 > /proc/sys/vm/drop_caches", sudo=True)
    for seconds in range(10, 61, 10):
        time.sleep(10)
        figures.append(f"+{seconds}s {bench.held()['node0']}")
    return figures


def main(sizes: list[int]) -> int:
    from realguest.build import build_uefi

    import hashlib

    kernel, initrd = build()
    image = build_uefi()
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    print(f"{os.cpu_count()} cores, TCG; kubenet's translation cache: {TCG_TB_SIZE_MIB} MiB")
    print("tb-size MiB | tiny 256M: make up s, qemu MiB | UEFI 2G: make up s, qemu MiB")
    balloon_figures = {}
    for size in sizes:
        tiny = Bench(tiny_config(kernel, initrd, "  - {name: node, count: 1, vcpus: 1, memory: 256M}\n", 1, size))
        try:
            tiny_up, tiny_held = tiny.up(), tiny.held()["node0"]
        finally:
            tiny.close()
        uefi = Bench(uefi_config(image, digest, size))
        try:
            uefi_up, uefi_held = uefi.up(), uefi.held()["node0"]
            if size in (DEFAULT_TB_SIZE, TCG_TB_SIZE_MIB):
                balloon_figures[size] = page_cache(uefi, balloon=size == TCG_TB_SIZE_MIB)
        finally:
            uefi.close()
        print(f"{size:11} | {tiny_up:6.1f} s {tiny_held:6} MiB | {uefi_up:6.1f} s {uefi_held:6} MiB", flush=True)
    for size, figures in balloon_figures.items():
        how = "kubenet now (balloon reporting)" if size == TCG_TB_SIZE_MIB else "before (1 GiB cache, no balloon driver)"
        print(f"UEFI page cache, {how}: qemu MiB " + ", ".join(figures))
    for size, balloon in ((DEFAULT_TB_SIZE, False), (TCG_TB_SIZE_MIB, True)):
        seven = Bench(tiny_config(kernel, initrd, TUTORIAL_ROLES, 7, size))
        try:
            seven.up()
            if not balloon:
                for vm in seven.held():
                    seven.root(vm, UNBIND_BALLOON, sudo=False)
            time.sleep(10)
            held = seven.held()
        finally:
            seven.close()
        print(f"7 tiny VMs, {'kubenet now' if balloon else 'before'} (tb-size {size}): {sum(held.values())} MiB together ({', '.join(map(str, held.values()))})")
    return 0


if __name__ == "__main__":
    sys.exit(main([int(arg) for arg in sys.argv[1:]] or SIZES))
