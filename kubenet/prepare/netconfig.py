"""Per-role network-config extras: `network-config/common.yaml` and `network-config/<role>.yaml`
in the templates directory, cloud-init network config version 2, merged into what
kubenet generates for each VM (its NICs, addresses, routes and nameservers stay).

The tutorial's chapter 5 is the example: the API's virtual IP on each control node's
loopback, and on the gateway's cluster NIC:

    # network-config/control.yaml
    ethernets:
      lo: {match: {name: lo}, addresses: [192.168.1.21/32]}
    # network-config/gateway.yaml
    ethernets:
      cluster: {addresses: [192.168.1.21/32]}

kubenet's own NICs are named `cluster` (the 192.168.1.x one) and, in user mode,
`uplink`. Mappings merge key by key, lists are joined after kubenet's items, and a
value kubenet set cannot be changed: that would cut the VM off its cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plumbing import errors

DIRECTORY = "network-config"
SECTIONS = ("ethernets", "bonds", "bridges", "vlans")
# The device keys of network config v2 that cloud-init reads (its networking docs).
DEVICE_KEYS = frozenset({
    "match", "set-name", "wakeonlan", "dhcp4", "dhcp6", "dhcp4-overrides", "dhcp6-overrides", "accept-ra",
    "addresses", "gateway4", "gateway6", "mtu", "nameservers", "routes", "routing-policy", "optional",
    "macaddress", "interfaces", "parameters", "id", "link", "renderer",
})  # fmt: skip


def network_template_paths(directory: Path, names: list[str]) -> list[Path]:
    """The extras that exist for `names` (common, then each role), in that order."""
    return [directory / DIRECTORY / f"{name}.yaml" for name in names if (directory / DIRECTORY / f"{name}.yaml").is_file()]


def check_network_config(path: Path, data: Any) -> dict:
    """A template's content as cloud-init network config v2, or a one-line error naming it."""

    def bad(what: str) -> errors.SetupError:
        return errors.SetupError(f"{path}: {what}", "network-config templates are cloud-init network config version 2: ethernets, bonds, bridges, vlans")

    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad("expected a mapping")
    if data.get("version", 2) != 2:
        raise bad(f"version {data['version']!r}: only version 2 is merged")
    for key, section in data.items():
        if key == "version":
            continue
        if key not in SECTIONS:
            raise bad(f"unknown key {key!r}")
        if not isinstance(section, dict):
            raise bad(f"{key} must map device names to their settings")
        for device, settings in section.items():
            if not isinstance(settings, dict):
                raise bad(f"{key}.{device} must be a mapping")
            unknown = sorted(set(settings) - DEVICE_KEYS)
            if unknown:
                raise bad(f"{key}.{device}: unknown key {unknown[0]!r}")
            for list_key in ("addresses", "routes", "interfaces"):
                if list_key in settings and not isinstance(settings[list_key], list):
                    raise bad(f"{key}.{device}.{list_key} must be a list")
    return {key: value for key, value in data.items() if key != "version"}


def read_network_templates(directory: Path, names: list[str]) -> dict[str, dict]:
    """Each existing extra, checked, by name (common or a role)."""
    from ..plumbing.yamltext import read_template

    parsed = {}
    for path in network_template_paths(directory, names):
        parsed[path.stem] = check_network_config(path, read_template(path, "network-config extra"))
    return parsed


def merge_network(own: dict, extra: dict, source: str, at: str = "") -> dict:
    """`extra` merged into `own`: mappings key by key, lists joined (kubenet's first, no
    repeats), and any other value kubenet set kept, or the change refused."""
    merged = dict(own)
    for key, value in extra.items():
        here = f"{at}.{key}" if at else key
        if key not in merged:
            merged[key] = value
        elif isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = merge_network(merged[key], value, source, here)
        elif isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = [*merged[key], *(item for item in value if item not in merged[key])]
        elif merged[key] != value:
            raise errors.SetupError(
                f"{source}: {here} is kubenet's ({merged[key]!r}) and cannot be changed to {value!r}",
                "add to kubenet's settings (addresses, routes) or give a device of your own",
            )
    return merged
