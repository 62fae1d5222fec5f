"""kubenet as an installed package: the wheel carries the role templates, and a seed made from it has them."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import ROOT

SEED_SCRIPT = """
import kubenet
from pathlib import Path
from kubenet.model.config import build_cluster
from kubenet.prepare.seed import read_templates, user_data
from kubenet.prepare.sshkeys import HostKey

cluster = build_cluster({}, Path("cluster.yaml"))
worker = cluster.vm_by_name("worker0")
text = user_data(cluster, worker, "user", read_templates(cluster), "ssh-ed25519 AAAA test", HostKey("private", "ssh-ed25519 BBBB"))
print(kubenet.__file__)
print(text)
"""


def test_the_wheel_installs_with_its_templates_and_makes_a_seed(tmp_path):
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):  # a copy: building writes build/ beside the sources
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "kubenet", source / "kubenet", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = wheels.glob("kubenet-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    # kubenet from the wheel; its dependencies (not kubenet) from the test environment, after it on the path
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, str(wheel)], check=True, capture_output=True)
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([str(python), "-c", SEED_SCRIPT], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    location, text = done.stdout.split("\n", 1)
    assert location == f"{site}/kubenet/__init__.py"  # the installed copy, not this checkout
    assert "br_netfilter" in text and "net.bridge.bridge-nf-call-iptables" in text

    # the `kubenet` command the wheel installs: the tasks as a program, run from any directory
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(archive.read(name).decode() for name in archive.namelist() if name.endswith("entry_points.txt"))
    assert "[console_scripts]\nkubenet = kubenet.cli.program:main" in entry_points
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "mine.yaml").write_text("name: x\nroles:\n  - {name: node, count: 2}\n")
    command = "import sys; from kubenet.cli.program import main; sys.argv[0] = 'kubenet'; main()"
    listed = subprocess.run([str(python), "-c", command, "ls", "--names", "--config", str(tmp_path / "mine.yaml")], capture_output=True, text=True, cwd=elsewhere)
    assert (listed.returncode, listed.stdout) == (0, "node0\nnode1\n"), listed.stderr
    version = subprocess.run([str(python), "-c", command, "--version"], capture_output=True, text=True, cwd=elsewhere)
    assert version.stdout.strip() == "kubenet 0.1.0"
