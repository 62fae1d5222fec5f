"""What a newcomer reads and types first: a README read in minutes with the docs beside it,
every link of theirs resolving, every task and cluster.yaml key in the reference, the
make targets aligned in `make help`, and `make up`'s virtualenv without the test tools."""

import re
import subprocess
from dataclasses import fields
from pathlib import Path

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (outside code blocks)."""
    found, fence = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readme_is_short_and_says_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "make up " in text and "make test" in text


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for path in DOCS:
        for link in links(path):
            if re.match(r"[a-z]+://", link) or link.startswith("mailto:"):
                continue
            target, _, anchor = link.partition("#")
            file = (path.parent / target).resolve() if target else path
            if not file.exists():
                broken.append(f"{path.name}: {link} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{path.name}: {link} (no such heading)")
    assert broken == []


def test_every_task_is_in_the_reference_in_one_unbroken_table():
    import invoke

    from kubenet.cli import tasks

    reference = (ROOT / "docs" / "tasks.md").read_text()
    rows = "\n".join(line for line in reference.splitlines() if line.startswith("|"))
    missing = [name for name in sorted(invoke.Collection.from_module(tasks).task_names) if f"invoke {name}" not in rows and f"make {name}" not in rows]
    assert missing == []
    table = reference.split("| command | what it does |")[1].split("\n\n")[0]
    assert "`make destroy`" in table  # the first table runs on to its last row


def test_every_cluster_yaml_key_is_in_the_reference():
    from kubenet.model.cluster import Image, Network
    from kubenet.model.config import HOST_KEYS, ROLE_KEYS, build_cluster
    from kubenet.plumbing import errors

    try:  # the keys the loader allows, as its own message lists them
        build_cluster({"no-such-key": 1}, Path("/x/cluster.yaml"))
    except errors.KubenetError as refused:
        TOP_KEYS = str(refused).split("allowed: ", 1)[1].split(" (")[0].split(", ")
    reference = (ROOT / "docs" / "cluster-yaml.md").read_text()
    keys = [*TOP_KEYS, *(f"roles[].{key}" for key in ROLE_KEYS), *(f"network.{field.name}" for field in fields(Network)),
            *(f"image.{field.name}" for field in fields(Image))]  # fmt: skip
    assert [key for key in keys if f"`{key}`" not in reference] == []
    assert [key for key in HOST_KEYS if key not in reference.split("`hosts`")[1]] == []


def test_make_help_aligns_every_target_and_its_words():
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "help", "INVOKE=/nonexistent"], capture_output=True, text=True)
    documented = re.findall(r"^([a-z-]+):.*## ", (ROOT / "Makefile").read_text(), re.MULTILINE)
    targets = [line for line in done.stdout.splitlines() if line.split()[:1] and line.split()[0] in documented]
    assert len(targets) == len(documented) > 10
    columns = {len(re.match(r"  [a-z-]+ +", line)[0]) for line in targets}
    assert len(columns) == 1, targets


def test_make_up_installs_kubenet_without_the_test_tools(tmp_path):
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), "venv", f"VENV={venv}"], capture_output=True, text=True)
    installs = [line for line in done.stdout.splitlines() if "pip install" in line and "-e " in line]
    assert installs and all(line.rstrip().endswith("-e .") for line in installs), done.stdout
    tested = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), "test", f"VENV={venv}"], capture_output=True, text=True)
    assert "-e '.[test]'" in tested.stdout
