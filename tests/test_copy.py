"""`invoke cp`: what a command line means (pure), and copies to and from real VMs (the
tiny image under TCG, real scp over SFTP through the pinned host keys)."""

from __future__ import annotations

import pytest

from conftest import kill_recorded_qemus, make_up, on_vm, run_invoke, stop_vde_switch
from kubenet.reach.copy import Copy, landing, parse_side, plan, scp_argv, sftp_option
from tinyimage.cluster import write_cluster

NAMES = ["control0", "control1", "worker0"]


# ---- pure: sides and plans ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, side",
    [
        ("control0:/tmp/x", ("control0", "/tmp/x")),
        (":/tmp/x", ("", "/tmp/x")),
        ("worker1:my notes.txt", ("worker1", "my notes.txt")),
        ("./a:b", (None, "./a:b")),  # a colon after a slash: a local path, as scp reads it
        ("notes.txt", (None, "notes.txt")),
        ("/abs/x:y", (None, "/abs/x:y")),
    ],
)
def test_a_side_is_a_vms_when_a_colon_comes_before_any_slash(text, side):
    assert (parse_side(text).vm, parse_side(text).path) == side


def test_a_plan_names_each_copy_and_from_several_vms_each_goes_into_a_directory_of_its_own():
    assert plan(["ca.pem"], "control0:/tmp/", NAMES, None) == [Copy("control0", True, ("ca.pem",), "/tmp/")]
    assert plan(["worker0:/var/log/syslog"], ".", NAMES, None) == [Copy("worker0", False, ("/var/log/syslog",), ".")]
    assert plan(["ca.pem"], ":/tmp/", NAMES, ["control0", "control1"]) == [
        Copy("control0", True, ("ca.pem",), "/tmp/"),
        Copy("control1", True, ("ca.pem",), "/tmp/"),
    ]
    assert plan([":/etc/hostname"], "got", NAMES, ["control0", "worker0"]) == [
        Copy("control0", False, ("/etc/hostname",), "got/control0"),
        Copy("worker0", False, ("/etc/hostname",), "got/worker0"),
    ]
    # several sources at once, as scp takes them: one scp per VM
    assert plan(["a.pem", "b.pem"], ":certs/", NAMES, ["control0"]) == [Copy("control0", True, ("a.pem", "b.pem"), "certs/")]
    assert plan(["worker0:a", "worker0:b"], "here/", NAMES, None) == [Copy("worker0", False, ("a", "b"), "here/")]


@pytest.mark.parametrize(
    "destination, made",
    [("certs/", "certs"), ("/etc/kubernetes/pki/", "/etc/kubernetes/pki"), ("~/certs/", "certs"), ("certs", None), ("~/", None), ("x/y", None)],
)
def test_a_destination_ending_in_a_slash_is_made_on_the_vm(destination, made):
    from kubenet.reach.copy import remote_directory

    assert remote_directory(destination) == made


@pytest.mark.parametrize(
    "copy, said, told",
    [
        (Copy("control0", True, ("ca.pem",), "/etc/"), ['scp: dest open "/etc/ca.pem": Permission denied', "scp: failed to upload file ca.pem to /etc/"],
         "permission denied on control0 writing /etc/ (the login user may not write there); copy into its home directory, "
         "then `invoke exec --name control0 -- sudo install -m 644 ca.pem /etc/`"),
        (Copy("control0", True, ("ca.pem",), "certs/ca.pem"), ['scp: dest open "certs/ca.pem": No such file or directory', "scp: failed to upload file ca.pem to certs/ca.pem"],
         "no such directory on control0: certs (end the destination with / to have it made)"),
        (Copy("worker0", False, ("nope",), "."), ["scp: nope: No such file or directory"], "nope does not exist on worker0"),
        (Copy("worker0", False, ("/root/x",), "."), ["scp: open remote \"/root/x\": Permission denied"],
         "permission denied on worker0 reading /root/x (the login user may not read it); `invoke exec --name worker0 -- sudo cat PATH > FILE` reads it as root"),
        (Copy("worker0", False, ("x",), "."), ["ssh: connect to host 127.0.0.1 port 2204: Connection refused"], "ssh: connect to host 127.0.0.1 port 2204: Connection refused"),
    ],
)
def test_a_failed_copy_is_said_in_kubenets_words(copy, said, told):
    from kubenet.reach.copy import scp_failure

    assert scp_failure(copy, said, 1) == told


def test_the_paths_typed_after_a_task_are_counted_as_invoke_would_parse_them():
    from kubenet.cli.glue import bare_words

    flags = {"--role", "--config"}
    assert bare_words(["invoke", "cp", "a.pem", "b.pem", ":certs/", "--role", "control"], ("cp",), flags) == 3
    assert bare_words(["kubenet", "--search-root", "/x", "cp", "--config", "c.yaml", "a", ":b", "--all"], ("cp",), flags) == 2
    assert bare_words(["invoke", "cp", "--role=control", "a", ":b", "--", "c"], ("cp",), flags) == 2
    assert bare_words(["invoke", "ls"], ("cp",), flags) == 0


@pytest.mark.parametrize(
    "version, option",
    [
        ("OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19", []),
        ("OpenSSH_8.9p1 Ubuntu-3ubuntu0.10, OpenSSL 3.0.2", ["-s"]),
        ("OpenSSH_8.2p1 Ubuntu-4ubuntu0.11", None),
        ("OpenSSH_10.0p2, LibreSSL 3.3.6", []),
    ],
)
def test_scp_is_asked_for_sftp_as_its_version_needs(version, option):
    assert sftp_option(version) == option


def test_scp_gets_paths_as_single_arguments_after_its_options(tmp_path):
    copy = Copy("control0", True, ("-odd name",), "dir with space/")
    assert scp_argv(tmp_path / "ssh_config", copy, ["-s"])[-3:] == ["--", "-odd name", "control0:dir with space/"]
    back = Copy("w", False, ("a", "b c"), str(tmp_path))
    assert scp_argv(tmp_path / "ssh_config", back, [], into="/stage")[-4:] == ["--", "w:a", "w:b c", "/stage"]
    (tmp_path / "here").mkdir()
    assert landing(Copy("w", False, ("/var/log/",), str(tmp_path / "here"))) == tmp_path / "here" / "log"
    assert landing(Copy("w", False, ("/x",), str(tmp_path / "file"))) == tmp_path / "file"


# ---- real VMs ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_files_and_directories_go_to_and_come_from_vms_by_name_by_role_and_all(tiny_image, short_dir, tmux_server):
    roles = "  - {name: control, count: 2, vcpus: 1, memory: 256M}\n  - {name: worker, count: 1, vcpus: 1, memory: 256M}\n"
    config = write_cluster(short_dir, *tiny_image, roles=roles, count=3)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    here = short_dir / "here"
    (here / "certs" / "sub dir").mkdir(parents=True)
    (here / "my notes.txt").write_text("a note\n")
    (here / "certs" / "ca.pem").write_text("CA\n")
    (here / "certs" / "sub dir" / "key.pem").write_text("KEY\n")

    def cp(*args: str):
        return run_invoke("cp", *args, "--config", str(config), env=env)

    try:
        make_up(config, env)
        # a file with a space in its name, to one VM by name
        done = cp(str(here / "my notes.txt"), "worker0:my notes.txt")
        assert done.returncode == 0 and "kubenet: cp: worker0: copied" in done.stderr, done.stderr
        assert on_vm(state, "worker0", "cat 'my notes.txt'") == "a note\n"

        # a directory, whole, to every VM of a role
        done = cp(str(here / "certs"), ":certs", "--role", "control")
        assert done.returncode == 0, done.stderr
        assert sorted(line.split(":")[2].strip().split()[0] for line in done.stderr.splitlines()) == ["control0", "control1"]
        for vm in ("control0", "control1"):
            assert on_vm(state, vm, "cat certs/ca.pem 'certs/sub dir/key.pem'") == "CA\nKEY\n"
        assert on_vm(state, "worker0", "test -e certs && echo there || echo absent") == "absent\n"

        # from every VM: each into a directory of its own
        for vm in NAMES:
            on_vm(state, vm, f"echo {vm} > id.txt")
        (here / "got").mkdir()
        done = cp(":id.txt", str(here / "got"), "--all")
        assert done.returncode == 0, done.stderr
        assert {vm: (here / "got" / vm / "id.txt").read_text() for vm in NAMES} == {vm: f"{vm}\n" for vm in NAMES}

        # from one VM: a file here is never replaced unless asked
        (here / "id.txt").write_text("mine\n")
        refused = cp("control1:id.txt", str(here))
        assert refused.returncode == 1 and "id.txt exists; nothing was copied" in refused.stderr
        assert (here / "id.txt").read_text() == "mine\n"
        assert cp("control1:id.txt", str(here), "--force").returncode == 0
        assert (here / "id.txt").read_text() == "control1\n"

        # what is missing is one line, and a non-zero exit
        missing = cp(":no-such-file", str(here / "got"), "--all")
        assert missing.returncode == 1
        lines = missing.stderr.strip().splitlines()
        assert len(lines) == 3 and all(line.startswith("kubenet: cp: ") and "no-such-file" in line for line in lines), missing.stderr
        for args, said in [
            ((str(here / "absent"), "worker0:x"), "absent does not exist"),
            ((str(here / "id.txt"), "worker9:x"), "no VM named 'worker9'"),
        ]:
            done = cp(*args)
            assert done.returncode == 1 and said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr

        # chapter 4's own line: into a directory that does not exist yet, made as `DIR/` asks
        done = cp(str(here / "certs" / "ca.pem"), ":pki/", "--all")
        assert done.returncode == 0, done.stderr
        assert all(on_vm(state, vm, "cat pki/ca.pem") == "CA\n" for vm in NAMES)
        # several sources at once, as scp takes them
        (here / "a.pem").write_text("A\n")
        (here / "b.pem").write_text("B\n")
        done = cp(str(here / "a.pem"), str(here / "b.pem"), ":pki/deep/", "--role", "control")
        assert done.returncode == 0, done.stderr
        assert on_vm(state, "control1", "cat pki/deep/a.pem pki/deep/b.pem") == "A\nB\n"
        # why a copy failed, in kubenet's words, with the way to do it
        denied = cp(str(here / "a.pem"), "worker0:/etc/")
        assert denied.returncode == 1
        assert denied.stderr.strip() == (
            "kubenet: cp: worker0: permission denied on worker0 writing /etc/ (the login user may not write there); "
            "copy into its home directory, then `invoke exec --name worker0 -- sudo install -m 644 a.pem /etc/`"
        )
        nowhere = cp(str(here / "a.pem"), "worker0:nodir/a.pem")
        assert nowhere.stderr.strip() == "kubenet: cp: worker0: no such directory on worker0: nodir (end the destination with / to have it made)"

        # --force replaces a link here itself, never the file it points to
        (here / "outside.txt").write_text("the user's\n")
        (here / "linked").mkdir()
        (here / "linked" / "id.txt").symlink_to(here / "outside.txt")
        assert cp("control0:id.txt", str(here / "linked"), "--force").returncode == 0
        assert (here / "outside.txt").read_text() == "the user's\n"
        assert not (here / "linked" / "id.txt").is_symlink() and (here / "linked" / "id.txt").read_text() == "control0\n"
        # from several VMs, a DEST/<vm> that is a link is refused: the copy would land elsewhere
        (here / "fan").mkdir()
        (here / "elsewhere").mkdir()
        (here / "fan" / "worker0").symlink_to(here / "elsewhere")
        refused = cp(":id.txt", str(here / "fan"), "--all")
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert f"{here / 'fan' / 'worker0'} is a link; nothing was copied" in refused.stderr
        assert list((here / "elsewhere").iterdir()) == [] and not (here / "fan" / "control0").exists()
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)
