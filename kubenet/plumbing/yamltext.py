"""YAML read as kubenet reads the files users give it (cluster.yaml, role templates,
network-config extras): PyYAML's safe loader, a key given twice refused, and a document
whose aliases expand past a bound refused before it is built.

Aliases share one object in Python, so a "billion laughs" document (anchors of anchors,
9^10 strings) loads quickly and small; it is what comes after that pays: a seed written
from it, or a walk over it, takes minutes and gigabytes. Its expanded size is counted
on the composed node graph first, each node once (a shared node's size remembered), so
even a bomb is measured in milliseconds.
"""

from __future__ import annotations

from typing import Any

MAX_VALUES = 100_000  # values (scalars, lists, mappings) a document may expand to: far past any template


class DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, line: int):
        self.key, self.first, self.line = key, first, line


class TooLarge(Exception):
    """The document expands to more than MAX_VALUES values (or refers to itself)."""


def loader_class(yaml):
    """PyYAML's safe loader (its C one where built), refusing a key given twice in a mapping."""

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:
                    continue  # an unhashable key: the constructor says what is wrong with it
            return super().construct_mapping(node, deep)

    return Loader


def expanded_size(node, limit: int = MAX_VALUES) -> int:
    """How many values the node stands for once every alias is expanded; TooLarge past `limit`."""
    import yaml

    sizes: dict[int, int] = {}
    building: set[int] = set()

    def size(current) -> int:
        if id(current) in sizes:
            return sizes[id(current)]
        if id(current) in building:
            raise TooLarge("it refers to itself")
        building.add(id(current))
        if isinstance(current, yaml.MappingNode):
            total = 1 + sum(size(key) + size(value) for key, value in current.value)
        elif isinstance(current, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in current.value)
        else:
            total = 1
        building.discard(id(current))
        if total > limit:
            raise TooLarge(f"its aliases expand it to more than {limit} values")
        sizes[id(current)] = total
        return total

    try:
        return size(node)
    except RecursionError:
        raise TooLarge("it is nested too deep") from None


def load(text: str, limit: int = MAX_VALUES) -> Any:
    """The document in `text`, built only once its expanded size is known to be within `limit`.
    Raises yaml.YAMLError, DuplicateKey or TooLarge."""
    import yaml

    loader = loader_class(yaml)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded_size(node, limit)
        return loader.construct_document(node)
    finally:
        loader.dispose()


MAX_TEMPLATE_BYTES = 4 << 20  # far more than any template; a device or an endless file is refused


def read_template(path, kind: str = "template") -> Any:
    """A template's document: a regular file of at most MAX_TEMPLATE_BYTES, UTF-8, loaded
    within the bound; each mistake a SetupError naming the file."""
    import os
    import stat

    import yaml

    from . import errors

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise errors.SetupError(f"{path}: cannot read: {error.strerror}") from None
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise errors.SetupError(f"{path}: not a regular file", f"make the {kind} a plain file")
        data = stream.read(MAX_TEMPLATE_BYTES + 1)
    if len(data) > MAX_TEMPLATE_BYTES:
        raise errors.SetupError(f"{path}: larger than {MAX_TEMPLATE_BYTES >> 20} MiB: not a {kind}")
    try:
        return load(data.decode())
    except UnicodeDecodeError:
        raise errors.SetupError(f"{path}: not UTF-8 text", f"save the {kind} as UTF-8") from None
    except DuplicateKey as duplicate:
        raise errors.SetupError(f"{path}: line {duplicate.line}: {duplicate.key!r} is given twice (lines {duplicate.first} and {duplicate.line})",
                                "keep one of them: YAML would silently use the last") from None  # fmt: skip
    except TooLarge as large:
        raise errors.SetupError(f"{path}: refused: {large} (a YAML bomb?)", f"write the {kind} out plainly, without aliases of aliases") from None
    except yaml.YAMLError as error:
        raise errors.SetupError(f"{path}: not valid YAML: {error}".replace("\n", " ")) from None
