"""What a newcomer reads and types first: the README's tasks table whole, the make targets
aligned in `make help`, and `make up`'s virtualenv without the test tools."""

import re
import subprocess

from conftest import ROOT


def tasks_table() -> list[str]:
    """The lines of the README's table of tasks, from its header to the first line that is not a row."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| command | what it does |")
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def test_every_task_is_a_row_of_one_unbroken_table():
    import invoke

    from kubenet.cli import tasks

    rows = "\n".join(tasks_table())
    names = sorted(invoke.Collection.from_module(tasks).task_names)
    for name in names:
        if name in ("host-setup", "plug", "makevars", "setup-hosts"):  # run by make and by other hosts, not by people
            continue
        assert f"invoke {name}" in rows or f"make {name}" in rows, name
    assert "`make destroy`" in rows  # the last row is still a row of the table


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
