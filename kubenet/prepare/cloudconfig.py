"""Checking cloud-config before a seed carries it: cloud-init rejects a whole user-data for
one wrong key, and says so only in the guest's log, minutes after boot.

Three checks, cheapest first: the types of the keys kubenet joins across templates
(always); the top-level keys against those cloud-init's schema knows (where
cloud-init is installed: a misspelt `pakages` is otherwise silently ignored); and the
generated user-data against that schema with `cloud-init schema` (where installed;
each verdict remembered by content, as the tool takes a third of a second).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from ..plumbing import errors

# Keys whose lists kubenet joins from the templates, and what each item must be.
LIST_KEYS = {
    "packages": (str, list),
    "runcmd": (str, list),
    "bootcmd": (str, list),
    "write_files": (dict,),
    "ssh_authorized_keys": (str,),
}
SCHEMA_PLACES = (
    "/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json",
    "/usr/lib/python3/site-packages/cloudinit/config/schemas/schema-cloud-config-v1.json",
)
KIND = {str: "a string", list: "a list", dict: "a mapping"}


def _kind(value: Any) -> str:
    return KIND.get(type(value), type(value).__name__)


def check_types(source: Path, data: dict) -> None:
    """The keys kubenet joins are lists of what cloud-init takes there; anything else is one line."""
    for key, allowed in LIST_KEYS.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, list):
            raise errors.SetupError(f"{source}: {key}: expected a list, got {_kind(value)} ({value!r:.60})", f"write it as `{key}: [...]`")
        for index, item in enumerate(value):
            if not isinstance(item, allowed):
                wanted = " or ".join(KIND[kind] for kind in allowed)
                raise errors.SetupError(f"{source}: {key}[{index}]: expected {wanted}, got {_kind(item)} ({item!r:.60})")
            if key == "write_files" and not isinstance(item.get("path"), str):
                raise errors.SetupError(f"{source}: write_files[{index}]: has no `path`", "each file needs a path and its content")


def schema_file() -> Path | None:
    return next((Path(place) for place in SCHEMA_PLACES if Path(place).is_file()), None)


def known_keys(schema: Path | None = None) -> frozenset[str] | None:
    """The top-level keys of cloud-config that the installed cloud-init knows; None without it."""
    schema = schema or schema_file()
    if schema is None:
        return None
    try:
        data = json.loads(schema.read_text())
        names = [ref["$ref"].rsplit("/", 1)[1] for ref in data["allOf"]]
        return frozenset(key for name in names for key in data["$defs"][name].get("properties", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a schema we cannot read is no reason to refuse a template


def check_known_keys(source: Path, data: dict, known: frozenset[str] | None) -> None:
    if known is None:
        return
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            raise errors.SetupError(
                f"{source}: {key!r:.60} is not a cloud-config key cloud-init knows",
                f"did you mean '{close[0]}'?" if close else "see the cloud-init documentation's module reference",
            )


def check_with_cloud_init(texts: dict[str, str], cache: Path | None) -> None:
    """Each user-data (by what it is for, e.g. `role worker`) as `cloud-init schema` judges it."""
    if not shutil.which("cloud-init"):
        return
    from ..plumbing.fsutil import write_atomic
    from ..plumbing.parallel import for_each
    from ..plumbing.process import run

    def verdict(item: tuple[str, str]) -> tuple[str, str | None]:
        what, text = item
        digest = hashlib.sha256(text.encode()).hexdigest()
        remembered = cache / digest if cache is not None else None
        if remembered is not None and remembered.is_file():
            return what, None
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as stream:
            stream.write(text)
            stream.flush()
            done = run(["cloud-init", "schema", "--config-file", stream.name], check=False, timeout=60)
        if done.code != 0:
            said = [line.strip() for line in (done.stdout + done.stderr).splitlines() if "schema errors" in line or "Error" in line]
            return what, (said[-1] if said else f"cloud-init schema exit code {done.code}").removeprefix("Cloud config schema errors: ")
        if remembered is not None:
            try:
                write_atomic(remembered, b"valid\n", 0o644)
            except OSError:
                pass  # an unwritable cache only costs time
        return what, None

    for role, problem in for_each(sorted(texts.items()), verdict):
        if problem:
            raise errors.SetupError(
                f"the user-data of role {role} is not valid cloud-config (cloud-init schema): {problem}",
                f"fix the templates it is made from: common.yaml and {role}.yaml",
            )
