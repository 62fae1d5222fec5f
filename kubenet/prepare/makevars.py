"""The cluster as Make variables, for the Makefile's per-VM rules (`invoke makevars`).

Make has no quoting: every path it is given is checked to be one that make
takes literally, as `$`, `#`, `%`, `:`, whitespace and the like would be read
as make syntax.
"""

from __future__ import annotations

from pathlib import Path

from ..machine.target import Target
from ..model.cluster import Cluster
from ..model.host import needs_efivars
from ..plumbing import errors


def make_variables(cluster: Cluster, target: Target) -> str:
    """Make variable assignments describing the cluster."""
    from .image import base_image
    from .seed import template_paths
    from .sshkeys import login_key_path

    base = base_image(cluster, target.host)
    paths = {
        "state_dir": [cluster.state_dir],
        "image.url": [base] if base else [],
        "templates": template_paths(cluster),
        "ssh_key": [login_key_path(cluster)],
        # the seed is also remade when the code that writes it changes
        "the kubenet checkout": [Path(__file__).with_name("seed.py"), Path(__file__).with_name("bootmarks.py")],
    }
    for key, values in paths.items():
        for path in values:
            check_make_path(key, path)
    values = {
        "KUBENET_STATE": str(cluster.state_dir),
        "KUBENET_VMS": " ".join(vm.name for vm in cluster.local_vms),
        "KUBENET_BASE_IMAGE": str(base or ""),
        "KUBENET_SEED_INPUTS": " ".join(str(p) for key in ("templates", "ssh_key", "the kubenet checkout") for p in paths[key]),
        "KUBENET_EFIVARS": "yes" if needs_efivars(cluster, target.host) else "",
        "KUBENET_HOSTS": " ".join(host.name for host in cluster.placed_hosts()),  # names are [a-z0-9-]
    }
    return "".join(f"{name} := {value}\n" for name, value in values.items())


MAKE_SAFE_PUNCTUATION = frozenset("/._-+,@~")


def check_make_path(key: str, path: Path) -> None:
    """Refuse a path that make would not read as a plain file name."""
    text = str(path)
    bad = sorted({char for char in text if not (char.isalnum() or char in MAKE_SAFE_PUNCTUATION)})
    if bad:
        shown = " ".join(repr(char) for char in bad)
        raise errors.SetupError(
            f"{key}: {text!r} has characters that make cannot take in a file name: {shown}",
            "use a path of letters, digits and / . _ - + , @ ~ (or run the invoke tasks without make)",
        )


def write_variables(cluster: Cluster, target: Target, output: str | None) -> None:
    """The variables on stdout, or written (atomically) to `output`, the file make includes."""
    from ..plumbing.fsutil import write_atomic

    text = make_variables(cluster, target)
    if output is None:
        print(text, end="")
    else:
        write_atomic(Path(output), text.encode(), 0o644)
