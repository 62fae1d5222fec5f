"""Reading what a guest says about its readiness."""

import pytest


@pytest.mark.parametrize(
    "code, output, expected",
    [
        (0, "status: done\nboot_status_code: enabled-by-generator\nlast_update: Thu, 01 Jan 1970 00:01:05 +0000\ndetail:\nDataSourceNoCloud [seed=/dev/vdb][dsmode=net]\n",
         ("done", ["DataSourceNoCloud [seed=/dev/vdb][dsmode=net]"])),
        (0, "status: running\ntime: Thu, 01 Jan 1970 00:00:30 +0000\ndetail:\nRunning in stage: modules-config\n",
         ("running", ["time: Thu, 01 Jan 1970 00:00:30 +0000", "Running in stage: modules-config"])),
        (1, "status: error\nboot_status_code: enabled-by-generator\ndetail:\n('package-update-upgrade-install', ProcessExecutionError('apt-get update failed'))\n",
         ("error", ["('package-update-upgrade-install', ProcessExecutionError('apt-get update failed'))"])),
        (2, "status: done\nextended_status: degraded done\nboot_status_code: enabled-by-generator\ndetail:\nDataSourceNoCloud\nerrors: []\nrecoverable_errors:\nWARNING:\n\t- growpart failed\n",
         ("done", ["DataSourceNoCloud", "errors: []", "recoverable_errors:", "WARNING:", "- growpart failed"])),
        (0, "status: disabled\n", ("disabled", [])),
        (127, "sh: 1: cloud-init: not found\n", ("absent", [])),
    ],
    ids=["done-22.4", "running", "error", "degraded-23.4", "disabled", "no-cloud-init"],
)
def test_cloud_init_status_is_read_as_a_state_and_its_reasons(code, output, expected):
    from kubenet.run.readiness import parse_cloud_init_status

    assert parse_cloud_init_status(code, output) == expected


# ---- the marks a guest prints on its console (bootmarks.py) -------------------------------

BOOT1 = "5d1c0f7e-1b3a-4c55-9a2e-0d6f3c7b8a11"
BOOT2 = "9e8d7c6b-5a49-4382-8170-6f5e4d3c2b1a"


def test_the_marks_of_the_latest_boot_are_read_and_a_new_boot_starts_afresh():
    from kubenet.prepare.bootmarks import Marks, parse

    assert parse("[    3.1] Linux version 6.1\nlogin: ") == Marks()
    booting = parse(f"\r\nkubenet-mark {BOOT1} boot\r\n[ 4.0] eth0 up\n")
    assert booting == Marks(BOOT1) and not booting.sshd_up
    listening = parse(f"kubenet-mark {BOOT1} ssh\r\n", booting)
    assert listening == Marks(BOOT1, ssh=True) and listening.sshd_up
    assert parse(f"kubenet-mark {BOOT1} cloud-init done\r\n", listening) == Marks(BOOT1, True, "done")
    assert parse(f"kubenet-mark {BOOT1} cloud-init error\n", listening).cloud_init == "error"
    # a reboot inside the same qemu: the earlier boot's marks no longer count
    assert parse(f"kubenet-mark {BOOT2} boot\n", Marks(BOOT1, True, "done")) == Marks(BOOT2)
    # a guest that rebooted: its kernel's banner ends what the last boot's marks said, before any new mark
    assert parse("[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)\r\n", Marks(BOOT1, True, "done")) == Marks()
    assert parse(f"kubenet-mark {BOOT1} ssh\r\n[ 0.0] Linux version 6.1\r\nkubenet-mark {BOOT2} boot\r\n") == Marks(BOOT2)
    # a boot mark lost on the console: the later marks still tell the boot
    assert parse(f"kubenet-mark {BOOT2} ssh\n") == Marks(BOOT2, ssh=True)
    # what is not a mark of ours is not one
    assert parse(f"echo kubenet-mark {BOOT1[:4]} ssh\nkubenet-mark {BOOT1} sshd\n") == Marks()


def test_a_console_log_is_read_as_it_grows_and_afresh_when_a_new_qemu_writes_it(tmp_path):
    import os

    from kubenet.prepare.bootmarks import ConsoleMarks, Marks, rebooted_since

    log = tmp_path / "serial.log"
    reader = ConsoleMarks(log)
    assert reader.read() == Marks()  # no log yet
    log.write_bytes(f"kubenet-mark {BOOT1} boot\nkubenet-mark {BOOT1} s".encode())
    assert reader.read() == Marks(BOOT1)  # half a line: not yet a mark
    with open(log, "ab") as stream:
        stream.write(b"sh\r\n[ 9.9] \xff\xfe garbage\n")
    assert reader.read() == Marks(BOOT1, ssh=True)
    proved_at = reader.offset
    assert not rebooted_since(log, proved_at, BOOT1)
    with open(log, "ab") as stream:
        stream.write(f"reboot: Restarting system\nkubenet-mark {BOOT2} boot\n".encode())
    assert rebooted_since(log, proved_at, BOOT1)
    # proved before its marks came (a slow console): its own boot's late marks are no reboot, the kernel's banner is
    assert not rebooted_since(log, proved_at, "")
    with open(log, "ab") as stream:
        stream.write(b"[    0.000000] Linux version 6.1.0-28-cloud-amd64\n")
    assert rebooted_since(log, proved_at, "")
    log.write_bytes(f"kubenet-mark {BOOT2} boot\n".encode())  # a new qemu writes the log afresh
    assert reader.read() == Marks(BOOT2)
    link = tmp_path / "link.log"
    os.symlink(log, link)
    assert ConsoleMarks(link).read() == Marks()  # a log that is a link is not kubenet's: not read


def test_logins_back_off_seconds_apart():
    from kubenet.run.readiness import BOOTING_TRIES, MARKED_TRIES, RETRY_TRIES, UNMARKED_TRIES, backoff

    assert [backoff(tries, UNMARKED_TRIES) for tries in range(5)] == [10, 20, 30, 30, 30]
    assert [backoff(tries, BOOTING_TRIES) for tries in range(3)] == [30, 60, 60]
    assert [backoff(tries, RETRY_TRIES) for tries in range(6)] == [2, 4, 8, 16, 30, 30]
    assert [backoff(tries, MARKED_TRIES) for tries in range(4)] == [60, 120, 240, 300]


def test_no_login_goes_before_the_marks_where_the_console_shows_a_kernel_or_another_vm_printed_marks(tmp_path):
    """A login sent before the guest's network is up waits out TCP's back-off and comes late."""
    import threading
    import time

    from kubenet.model.cluster import ReadyWhen
    from kubenet.model.config import load_cluster
    from kubenet.model.paths import vm_paths
    from kubenet.run.readiness import BOOTING_TRIES, MARKED_TRIES, UNMARKED_TRIES, VMWait

    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(b"")
    config = tmp_path / "cluster.yaml"
    config.write_text("name: kr\nnetwork: {mode: user}\nimage: {kind: kernel, kernel: vmlinuz, initrd: initrd.img}\nroles:\n  - {name: node, count: 2}\n")
    cluster = load_cluster(config)
    node0, node1 = cluster.vms
    logs = [vm_paths(cluster, vm).serial_log for vm in (node0, node1)]
    for log in logs:
        log.parent.mkdir(parents=True)
        log.write_bytes(b"SeaBIOS\n")
    started, shared = time.monotonic(), threading.Event()
    first, second = (VMWait(cluster, vm, ReadyWhen.SSH, started, started + 600, threading.Event(), shared) for vm in (node0, node1))
    assert not first.due(first.console.read()) and first.next_try == started + UNMARKED_TRIES[0]  # a console that says nothing yet
    with open(logs[0], "ab") as stream:
        stream.write(b"[    0.000000] Linux version 6.1.0-28-cloud-amd64\n")
    assert not first.due(first.console.read()) and first.next_try == started + BOOTING_TRIES[0]  # a kernel boots: its marks will come
    with open(logs[1], "ab") as stream:
        stream.write(f"kubenet-mark {BOOT2} boot\n".encode())
    assert not second.due(second.console.read()) and shared.is_set()
    assert not first.due(first.console.read()) and first.next_try >= time.monotonic() + MARKED_TRIES[0] - 5  # node1's marks say node0's come
    with open(logs[0], "ab") as stream:
        stream.write(f"kubenet-mark {BOOT1} boot\nkubenet-mark {BOOT1} ssh\n".encode())
    assert first.due(first.console.read())  # sshd listens: the one login, at once


@pytest.mark.parametrize(
    "proved, rebooted, answered, own, expected",
    [
        (True, False, True, True, "yes"),
        (False, False, True, True, "no"),  # booting, or started with --no-wait
        (True, True, True, True, "rebooted"),
        (True, False, False, True, "unknown"),  # its qemu did not answer in time: never "no"
        (False, False, False, False, "unknown"),  # a qemu kubenet did not start (`invoke vm`)
    ],
)
def test_ready_says_what_is_known(proved, rebooted, answered, own, expected):
    from kubenet.lifecycle.status import ready_value

    assert ready_value(proved, rebooted, answered, own) == expected


def test_a_proof_marker_is_read_back_and_garbage_is_none(tmp_path):
    from kubenet.run.vmstate import Proof, read_proof

    marker = tmp_path / "ready"
    marker.write_text(f"4242\n{BOOT1}\n1234\ndone\n")
    assert read_proof(marker) == Proof(4242, BOOT1, 1234, "done")
    marker.write_text("4242\n")  # written by an older kubenet: a pid alone
    assert read_proof(marker) == Proof(4242)
    for garbage in ("", "x\n", "0\n", "99999999999\n"):
        marker.write_text(garbage)
        assert read_proof(marker) is None
    marker.write_bytes(b"\xff\xfe")
    assert read_proof(marker) is None
