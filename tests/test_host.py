"""Host probing against a made-up root directory: firmware descriptors, /dev/kvm, bridges."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from kubenet.plumbing import errors
from kubenet.machine.firmware import find_firmware
from kubenet.model.host import Firmware
from kubenet.model.host import Arch, host_profile
from kubenet.machine.probe import probe_accel, probe_host
from kubenet.machine.target import choose_accel


def descriptor(code: Path, vars_template: Path | None, arch="x86_64", machines=("pc-q35-*",), features=(), interfaces=("uefi",)):
    mapping = {"device": "flash", "executable": {"filename": str(code), "format": "raw"}}
    if vars_template:
        mapping["nvram-template"] = {"filename": str(vars_template), "format": "raw"}
    return {
        "description": "test firmware",
        "interface-types": list(interfaces),
        "mapping": mapping,
        "targets": [{"architecture": arch, "machines": list(machines)}],
        "features": list(features),
        "tags": [],
    }


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content) if isinstance(content, dict) else content)
    return path


@pytest.fixture
def root(tmp_path):
    return tmp_path / "root"


def test_descriptor_order_and_secure_boot_skipped(root):
    share = root / "usr/share/qemu/firmware"
    code = write(root / "fw/CODE.fd", "x")
    secure = write(root / "fw/CODE.secboot.fd", "x")
    template = write(root / "fw/VARS.fd", "x")
    write(share / "40-secure.json", descriptor(secure, template, features=("secure-boot", "requires-smm")))
    write(share / "60-plain.json", descriptor(code, template))
    write(share / "10-bios.json", descriptor(code, None, interfaces=("bios",)))
    write(share / "20-arm.json", descriptor(code, None, arch="aarch64", machines=("virt-*",)))
    assert find_firmware("x86_64", "pc-q35", root, [Path("/usr")]) == Firmware(code, template)


def test_etc_overrides_a_descriptor_of_the_same_name(root):
    plain = write(root / "fw/CODE.fd", "x")
    mine = write(root / "fw/MINE.fd", "x")
    write(root / "usr/share/qemu/firmware/60-edk2.json", descriptor(plain, None))
    write(root / "etc/qemu/firmware/60-edk2.json", descriptor(mine, None))
    assert find_firmware("x86_64", "pc-q35", root, [Path("/usr")]).code == mine


def test_homebrew_prefix_and_aarch64(root):
    code = write(root / "opt/homebrew/share/qemu/edk2-aarch64-code.fd", "x")
    write(root / "opt/homebrew/share/qemu/firmware/60-edk2-aarch64.json", descriptor(code, None, arch="aarch64", machines=("virt-*",)))
    write(root / "opt/homebrew/share/qemu/firmware/broken.json", "{not json")
    assert find_firmware("aarch64", "virt", root, [Path("/opt/homebrew")]) == Firmware(code, None)


def test_a_descriptor_pointing_at_a_missing_file_is_skipped_then_known_paths_are_used_with_a_note(root):
    write(root / "usr/share/qemu/firmware/60.json", descriptor(root / "gone.fd", None))
    code = write(root / "usr/share/OVMF/OVMF_CODE.fd", "x")
    template = write(root / "usr/share/OVMF/OVMF_VARS.fd", "x")
    firmware = find_firmware("x86_64", "pc-q35", root, [Path("/usr")])
    assert (firmware.code, firmware.vars_template) == (code, template)
    assert firmware.note == f"no QEMU firmware descriptor for x86_64 found; using {code}"


def test_no_firmware_at_all_names_where_it_looked_and_what_to_install(root):
    with pytest.raises(errors.HostError) as excinfo:
        find_firmware("x86_64", "pc-q35", root, [Path("/usr")])
    assert str(excinfo.value) == (
        f"no UEFI firmware for x86_64 (searched {root}/etc/qemu/firmware, {root}/usr/share/qemu/firmware)"
        " (hint: install UEFI firmware: `apt install ovmf`, `dnf install edk2-ovmf` or `brew install qemu`)"
    )


def fake_qemu(root: Path, accels: str) -> Path:
    script = write(root / "bin/qemu-system-x86_64", f"#!/bin/sh\nprintf 'Accelerators supported in QEMU binary:\\n{accels}\\n'\n")
    script.chmod(0o755)
    return script


def test_kvm_is_chosen_only_when_dev_kvm_opens_and_qemu_lists_it(root):
    qemu = fake_qemu(root, "tcg\\nkvm")
    environ = {"KUBENET_QEMU": str(qemu)}
    (root / "sys/class/net/kubr0/bridge").mkdir(parents=True)
    (root / "sys/class/net/eth0").mkdir(parents=True)
    host = probe_host(root, environ, system="Linux", machine="x86_64")
    accel = lambda: probe_accel(probe_host(root, environ, system="Linux", machine="x86_64"), root)  # noqa: E731
    assert (accel(), host.bridges, host.qemu) == ("tcg", frozenset({"kubr0"}), str(qemu))  # no /dev/kvm
    write(root / "dev/kvm", "")
    assert accel() == "kvm"
    os.chmod(root / "dev/kvm", 0o400)
    if os.geteuid() != 0:  # root opens anything
        assert accel() == "tcg"
    fake_qemu(root, "tcg")
    os.chmod(root / "dev/kvm", 0o600)
    assert accel() == "tcg"


def test_what_qemu_lists_is_remembered_per_binary(root, tmp_path):
    qemu, cache, asked = fake_qemu(root, "tcg\\nkvm"), tmp_path / "cache", []

    def capture(argv):
        asked.append(argv)
        return subprocess.run(argv, capture_output=True, text=True).stdout

    write(root / "dev/kvm", "")
    probe = lambda: probe_accel(probe_host(root, {"KUBENET_QEMU": str(qemu)}, "Linux", "x86_64"), root, capture, cache)
    assert (probe(), probe(), len(asked)) == ("kvm", "kvm", 1)  # the second answer came from the cache
    fake_qemu(root, "tcg")  # another qemu binary: asked again
    assert (probe(), len(asked)) == ("tcg", 2)


def test_macos_probe_uses_hvf_when_supported(root):
    answers = {"sysctl": "1\n"}
    host = probe_host(root, {"KUBENET_QEMU": "/x/qemu"}, system="Darwin", machine="arm64")
    assert (host.system, host.arch, probe_accel(host, root, lambda argv: answers[argv[0]])) == ("darwin", Arch.aarch64, "hvf")
    answers["sysctl"] = "0\n"
    assert probe_accel(host, root, lambda argv: answers[argv[0]]) == "tcg"


def test_missing_firmware_is_remembered_not_raised(root):
    host = probe_host(root, {"KUBENET_QEMU": "/x/qemu"}, system="Linux", machine="x86_64")
    assert host.firmware is None and "no UEFI firmware for x86_64" in host.firmware_error


def test_accelerator_precedence():
    offered = lambda: "kvm"  # noqa: E731
    assert choose_accel(offered, None, {}) == "kvm"
    assert choose_accel(offered, "tcg", {}) == "tcg"
    assert choose_accel(offered, "kvm", {"KUBENET_ACCEL": "tcg"}) == "tcg"
    assert choose_accel(offered, "kvm", {"KUBENET_ACCEL": "tcg"}, option="hvf") == "hvf"
    with pytest.raises(errors.HostError, match="KUBENET_ACCEL 'fast' is not an accelerator; allowed: hvf, kvm, tcg"):
        choose_accel(offered, None, {"KUBENET_ACCEL": "fast"})
    with pytest.raises(errors.HostError, match="--accel 'bogus' is not an accelerator"):
        choose_accel(offered, None, {}, option="bogus")


def test_unknown_host_kind():
    with pytest.raises(errors.HostError, match="unknown host kind 'windows-x86'; allowed: darwin-arm64, linux-x86_64, linux-aarch64"):
        host_profile("windows-x86")
