"""Per-role network-config extras: read, checked as network config v2, merged into what
kubenet generates without changing any of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubenet.plumbing import errors
from kubenet.model.config import load_cluster
from kubenet.prepare.netconfig import check_network_config, merge_network
from kubenet.prepare.seed import network_config, read_network_templates, template_paths

VIP = "192.168.1.21/32"


def cluster_with(tmp_path: Path, extras: dict[str, str]):
    templates = tmp_path / "templates"
    (templates / "network-config").mkdir(parents=True)
    for name, text in extras.items():
        (templates / "network-config" / f"{name}.yaml").write_text(text)
    (tmp_path / "cluster.yaml").write_text(f"templates: {templates}\n")
    return load_cluster(tmp_path / "cluster.yaml")


def test_the_tutorials_api_address_goes_on_the_control_nodes_loopback_and_the_gateways_nic(tmp_path):
    cluster = cluster_with(tmp_path, {
        "control": f"ethernets:\n  lo: {{match: {{name: lo}}, addresses: [{VIP}]}}\n",
        "gateway": f"version: 2\nethernets:\n  cluster: {{addresses: [{VIP}]}}\n",
    })  # fmt: skip
    extras = read_network_templates(cluster)
    assert [path.name for path in template_paths(cluster)] == ["gateway.yaml", "control.yaml"]  # make sees them as the seeds' inputs
    gateway, control0, worker0 = (yaml.safe_load(network_config(cluster, cluster.vms[i], "bridge", extras)) for i in (0, 1, 4))
    assert gateway["ethernets"]["cluster"]["addresses"] == ["192.168.1.10/24", VIP]
    assert gateway["ethernets"]["cluster"]["routes"] == [{"to": "0.0.0.0/0", "via": "192.168.1.1"}]  # kubenet's stays
    assert control0["ethernets"]["lo"] == {"match": {"name": "lo"}, "addresses": [VIP]}
    assert control0["ethernets"]["cluster"]["addresses"] == ["192.168.1.11/24"]
    assert "lo" not in worker0["ethernets"] and worker0 == yaml.safe_load(network_config(cluster, cluster.vms[4], "bridge"))
    assert gateway["version"] == 2


def test_common_extras_reach_every_role_and_a_value_kubenet_set_cannot_be_changed(tmp_path):
    cluster = cluster_with(tmp_path, {"common": "ethernets:\n  cluster: {mtu: 1400}\n"})
    assert all(yaml.safe_load(network_config(cluster, vm, "user", read_network_templates(cluster)))["ethernets"]["cluster"]["mtu"] == 1400
               for vm in cluster.vms)  # fmt: skip
    with pytest.raises(errors.SetupError) as refused:
        merge_network({"ethernets": {"cluster": {"match": {"macaddress": "52:52:52:00:00:01"}}}},
                      {"ethernets": {"cluster": {"match": {"macaddress": "aa:bb:cc:dd:ee:ff"}}}}, "network-config/worker.yaml")  # fmt: skip
    assert "network-config/worker.yaml: ethernets.cluster.match.macaddress is kubenet's ('52:52:52:00:00:01')" in str(refused.value)


@pytest.mark.parametrize(
    "text, said",
    [
        ("- a list\n", "expected a mapping"),
        ("version: 1\nconfig: []\n", "only version 2 is merged"),
        ("ethernet:\n  lo: {}\n", "unknown key 'ethernet'"),
        ("ethernets: [lo]\n", "ethernets must map device names"),
        ("ethernets:\n  lo: {adresses: [10.0.0.1/32]}\n", "ethernets.lo: unknown key 'adresses'"),
        ("ethernets:\n  lo: {addresses: 10.0.0.1/32}\n", "ethernets.lo.addresses must be a list"),
        ("ethernets: {lo: {addresses: [", "not valid YAML"),
    ],
)
def test_a_template_that_is_not_network_config_v2_is_one_line_naming_it(tmp_path, text, said):
    cluster = cluster_with(tmp_path, {"worker": text})
    with pytest.raises(errors.SetupError) as refused:
        read_network_templates(cluster)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path}/templates/network-config/worker.yaml: ") and said in message and "\n" not in message


def test_an_empty_template_adds_nothing(tmp_path):
    assert check_network_config(tmp_path / "x.yaml", None) == {}
