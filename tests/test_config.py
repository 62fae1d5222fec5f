"""One test per kind of configuration error, asserting the whole one-line message."""

import os
from pathlib import Path

import pytest

from kubenet.plumbing import errors
from kubenet.model.config import config_path, load_cluster


def load(cluster_file, text):
    return load_cluster(cluster_file(text))


def message(excinfo, tmp_path):
    return str(excinfo.value).replace(str(tmp_path / "cluster.yaml"), "cluster.yaml")


def test_the_repository_cluster_file_is_the_tutorials():
    cluster = load_cluster(Path(__file__).parent.parent / "cluster.yaml")
    assert [vm.name for vm in cluster.vms] == [
        "gateway", "control0", "control1", "control2", "worker0", "worker1", "worker2",
    ]  # fmt: skip
    assert cluster.network.mode == "auto" and str(cluster.network.api_address) == "192.168.1.21"


def test_an_empty_file_gives_the_defaults(cluster_file):
    assert len(load(cluster_file, "").vms) == 7


@pytest.mark.parametrize(
    "text, kind, expected",
    [
        (
            "roles:\n  - {name: worker, count: 3, memory: 4G, vcpu: 4}\n",
            errors.UnknownKeyError,
            "cluster.yaml: roles[0].vcpu: unknown key; allowed: name, count, vcpus, memory, qemu_args, host, cpu (hint: did you mean 'vcpus'?)",
        ),
        (
            "colour: blue\n",
            errors.UnknownKeyError,
            "cluster.yaml: colour: unknown key; allowed: name, roles, network, image, disk_size, user, ssh_key, templates, accel, tcg_tb_size, state_dir, ready, qemu_args, forward, pod_routes, nfs, hosts, here",
        ),
        (
            "roles:\n  - {name: worker, count: three}\n",
            errors.WrongTypeError,
            "cluster.yaml: roles[0].count: expected a whole number, got a string ('three')",
        ),
        (
            "network: [bridge]\n",
            errors.WrongTypeError,
            "cluster.yaml: network: expected a mapping, got a list",
        ),
        (
            "roles:\n  - {name: worker, count: 3, memory: 4X}\n",
            errors.BadValueError,
            "cluster.yaml: roles[0].memory: '4X' is not allowed; allowed: a whole number with a unit K, M, G or T, e.g. 4G",
        ),
        (
            "roles:\n  - {name: worker, count: -1}\n",
            errors.BadValueError,
            "cluster.yaml: roles[0].count: -1 is out of range; allowed: 0 or more",
        ),
        (
            "roles:\n  - {name: worker, count: 2}\n  - {name: worker1}\n",
            errors.DuplicateNameError,
            "cluster.yaml: roles: VM name 'worker1' is made by both role 'worker' and role 'worker1' (hint: rename one of the roles)",
        ),
        (
            "roles:\n  - {name: worker, count: 2}\n  - {name: worker, count: 1}\n",
            errors.DuplicateNameError,
            "cluster.yaml: roles[1].name: role 'worker' is declared twice",
        ),
        (
            "roles:\n  - {name: worker, count: 300}\n",
            errors.CapacityError,
            "cluster.yaml: roles: 300 VMs, but 192.168.1.0/24 from offset 10 and MACs 52:52:52:00:00:xx hold at most 245 (hint: use fewer VMs, a larger network.subnet or a smaller network.first_vm_offset)",
        ),
        (
            "roles:\n  - {name: worker, count: 250}\nnetwork: {api_address: 192.168.1.2}\n",
            errors.CapacityError,
            "cluster.yaml: roles: 250 VMs, but 192.168.1.0/24 from offset 10 and MACs 52:52:52:00:00:xx hold at most 245"
            " (hint: use fewer VMs, a larger network.subnet or a smaller network.first_vm_offset)",
        ),
        (
            "roles:\n  - {name: worker, count: 12}\n",
            errors.CapacityError,
            "cluster.yaml: network.api_address: 192.168.1.21 is also the address of VM worker11"
            " (hint: move it out of the VMs' range or change network.first_vm_offset)",
        ),
        (
            "network: {mode: nat}\n",
            errors.BadValueError,
            "cluster.yaml: network.mode: 'nat' is not allowed; allowed: auto, vmnet-shared, bridge, user",
        ),
        (
            "network: {subnet: 192.168.1.0/33}\n",
            errors.BadValueError,
            "cluster.yaml: network.subnet: '192.168.1.0/33' is not an IPv4 network; e.g. 192.168.1.0/24",
        ),
        (
            "accel: whpx\n",
            errors.BadValueError,
            "cluster.yaml: accel: 'whpx' is not allowed; allowed: hvf, kvm, tcg",
        ),
        (
            "roles:\n  - {name: Worker, count: 1}\n",
            errors.BadValueError,
            "cluster.yaml: roles[0].name: 'Worker' is not allowed; allowed: lower-case letters, digits and '-', starting with a letter",
        ),
        (
            "roles: []\n",
            errors.WrongTypeError,
            "cluster.yaml: roles: expected a non-empty list of roles, got a list",
        ),
        (
            "roles:\n  - {name: worker, count: 0}\n",
            errors.BadValueError,
            "cluster.yaml: roles: the cluster has no VMs; give a role a count of 1 or more",
        ),
        (
            "image: {kind: kernel, kernel: vmlinuz}\n",
            errors.BadValueError,
            "cluster.yaml: image.initrd: missing; a kernel image needs kernel and initrd paths",
        ),
        (
            "roles:\n  - name: worker\n   count: 3\n",
            errors.ConfigFileError,
            "cluster.yaml: line 3: did not find expected '-' indicator (hint: check indentation and quoting near that line)",
        ),
    ],
)
def test_each_kind_of_error_is_one_clear_line(cluster_file, tmp_path, text, kind, expected):
    with pytest.raises(kind) as excinfo:
        load(cluster_file, text)
    assert isinstance(excinfo.value, errors.ConfigError)
    assert message(excinfo, tmp_path) == expected
    assert "\n" not in str(excinfo.value)


def test_a_missing_file_says_how_to_choose_one(tmp_path):
    with pytest.raises(errors.ConfigFileError) as excinfo:
        load_cluster(tmp_path / "nope.yaml")
    assert str(excinfo.value) == (
        f"{tmp_path}/nope.yaml: no such cluster file (hint: run from the directory holding cluster.yaml,"
        " or pass --config PATH / set KUBENET_CONFIG)"
    )


def test_config_path_prefers_option_then_environment():
    assert config_path("a.yaml", {"KUBENET_CONFIG": "b.yaml"}) == Path("a.yaml")
    assert config_path(None, {"KUBENET_CONFIG": "b.yaml"}) == Path("b.yaml")
    assert config_path(None, {}) == Path("cluster.yaml")


def test_sizes_are_normalised_and_paths_resolved(cluster_file, tmp_path):
    cluster = load(cluster_file, "disk_size: 10g\nstate_dir: vms\nssh_key: keys/me.pub\nroles:\n  - {name: node, count: 2, memory: 512m}\n")
    assert cluster.disk_size == "10G"
    assert cluster.vms[0].memory == "512M"
    assert cluster.state_dir == tmp_path / "vms"
    assert cluster.ssh_key == tmp_path / "keys/me.pub"


def test_kernel_paths_are_absolute_even_from_a_relative_cluster_path(cluster_file, tmp_path, monkeypatch):
    cluster_file("image: {kind: kernel, kernel: boot/vmlinuz, initrd: /srv/initrd.img, cmdline: quiet}\n")
    monkeypatch.chdir(tmp_path)
    image = load_cluster(Path("cluster.yaml")).image
    assert (image.kind, image.kernel, image.initrd, image.cmdline) == ("kernel", f"{tmp_path}/boot/vmlinuz", "/srv/initrd.img", "quiet")


def test_every_mistake_in_a_file_is_reported_at_once_a_line_each(cluster_file, tmp_path):
    text = "colour: blue\nroles:\n  - {name: worker, count: three, memory: 4X}\nnetwork: {mode: nat, subnet: 10.0.0.0/33}\nready: soon\n"
    with pytest.raises(errors.ConfigProblems) as excinfo:
        load(cluster_file, text)
    assert [line.replace(str(tmp_path / "cluster.yaml"), "cluster.yaml") for line in excinfo.value.lines()] == [
        "cluster.yaml: colour: unknown key; allowed: name, roles, network, image, disk_size, user, ssh_key, templates, accel, tcg_tb_size, state_dir, ready, qemu_args, forward, pod_routes, nfs, hosts, here",
        "cluster.yaml: roles[0].count: expected a whole number, got a string ('three')",
        "cluster.yaml: roles[0].memory: '4X' is not allowed; allowed: a whole number with a unit K, M, G or T, e.g. 4G",
        "cluster.yaml: network.mode: 'nat' is not allowed; allowed: auto, vmnet-shared, bridge, user",
        "cluster.yaml: network.subnet: '10.0.0.0/33' is not an IPv4 network; e.g. 192.168.1.0/24",
        "cluster.yaml: ready: 'soon' is not allowed; allowed: ssh, cloud-init",
    ]


def test_a_task_prints_every_mistake_as_its_own_error_line(cluster_file):
    from conftest import run_invoke

    path = cluster_file("disk_size: big\nuser: Root\nroles:\n  - {name: w, vcpus: 0}\n")
    done = run_invoke("ls", "--config", str(path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert [line.split(": ")[3] for line in lines] == ["disk_size", "user", "roles[0].vcpus"]
    assert all(line.startswith(f"kubenet: error: {path}: ") for line in lines)


def test_a_key_given_twice_is_refused_with_both_lines(cluster_file, tmp_path):
    with pytest.raises(errors.DuplicateKeyError) as excinfo:
        load(cluster_file, "roles:\n  - {name: a}\nname: x\nroles:\n  - {name: b}\n")
    assert message(excinfo, tmp_path) == (
        "cluster.yaml: line 4: 'roles' is given twice (lines 1 and 4) (hint: keep one of them: YAML would silently use the last)"
    )
    with pytest.raises(errors.DuplicateKeyError) as excinfo:
        load(cluster_file, "roles:\n  - {name: a, count: 2, count: 3}\n")
    assert "line 2: 'count' is given twice (lines 2 and 2)" in message(excinfo, tmp_path)


def test_a_huge_value_is_cut_short_in_the_message(cluster_file):
    with pytest.raises(errors.BadValueError) as excinfo:
        load(cluster_file, f"name: '{'x' * 1_000_000}!'\n")
    assert len(str(excinfo.value)) < 300
    assert "... (1000001 characters) is not allowed" in str(excinfo.value)


def test_only_a_regular_file_of_a_sane_size_is_read(tmp_path):
    import subprocess

    from conftest import INVOKE, ROOT

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (5 << 20))
    for path, expected in (("/dev/zero", "not a regular file"), (str(fifo), "not a regular file"), (str(tmp_path), "not a regular file"), (str(big), "larger than 4 MiB")):
        # a FIFO without a writer, or an endless device, must not hang or fill memory
        done = subprocess.run([str(INVOKE), "--search-root", str(ROOT), "ls", "--config", path], capture_output=True, text=True, timeout=30)
        assert done.returncode == 1 and expected in done.stderr and len(done.stderr.splitlines()) == 1, (path, done.stderr)


def test_the_nfs_folder_is_a_path_beside_the_cluster_file_and_its_mistakes_say_how_to_write_it(cluster_file, tmp_path):
    assert load(cluster_file, "nfs: {path: nfs-pvs}\n").nfs == tmp_path / "nfs-pvs"
    assert load(cluster_file, "nfs: {path: /srv/pvs}\n").nfs == Path("/srv/pvs")
    with pytest.raises(errors.ConfigProblems) as excinfo:
        load(cluster_file, "nfs: {folder: x}\n")
    assert [line.replace(str(tmp_path / "cluster.yaml"), "cluster.yaml") for line in excinfo.value.lines()] == [
        "cluster.yaml: nfs.folder: unknown key; allowed: path",
        "cluster.yaml: nfs: has no path (hint: e.g. nfs: {path: nfs-pvs}, relative to the cluster file)",
    ]
    with pytest.raises(errors.BadValueError, match=r"nfs.path: .* holds a quote or a backslash"):
        load(cluster_file, "nfs: {path: 'a\"b'}\n")
    for folder in (".", "/", str(tmp_path.parent)):  # the checkout, the machine, what holds them
        with pytest.raises(errors.BadValueError, match=r"nfs.path: .* holds .*: (state_dir|the cluster file)"):
            load(cluster_file, f"nfs: {{path: '{folder}'}}\n")


def test_an_nfs_export_never_reaches_a_vms_files_the_image_cache_keys_or_the_virtualenv(cluster_file, tmp_path, monkeypatch):
    import sys

    cache = tmp_path / "cache"
    monkeypatch.setenv("KUBENET_CACHE", str(cache))
    (tmp_path / ".kubenet" / "worker0").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / ".kubenet" / "worker0")
    hint = " (hint: give the export a folder of its own, outside those, e.g. nfs-pvs beside the cluster file)"
    cases = [
        (".kubenet/worker0", f"{tmp_path / '.kubenet/worker0'} lies inside {tmp_path / '.kubenet'}: state_dir (every VM's disk and private host key)"),
        ("link", f"{tmp_path / '.kubenet/worker0'} lies inside {tmp_path / '.kubenet'}: state_dir (every VM's disk and private host key)"),
        (str(cache / "images"), f"{cache / 'images'} lies inside {cache}: the image cache (the base image every disk is made from)"),
        (str(Path.home() / ".ssh"), f"{Path.home() / '.ssh'} is {Path.home() / '.ssh'}: ~/.ssh (your SSH keys)"),
        (str(Path(sys.prefix) / "lib"), f"{Path(sys.prefix) / 'lib'} lies inside {Path(sys.prefix)}: kubenet's virtualenv (the code kubenet runs)"),
    ]
    for folder, said in cases:
        with pytest.raises(errors.BadValueError) as refused:
            load(cluster_file, f"nfs: {{path: '{folder}'}}\n")
        assert str(refused.value) == f"{tmp_path / 'cluster.yaml'}: nfs.path: {said}, which every VM could then read and change over NFS{hint}"
    assert load(cluster_file, "nfs: {path: nfs-pvs}\n").nfs == tmp_path / "nfs-pvs"
