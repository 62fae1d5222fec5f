"""The everyday path told truthfully: a broken accelerator named with its fix, qemu's words
as lines, and the other things a learner meets between `make up` and chapter 4. Real
invoke, tmux, make and stub qemus (tests/stubs)."""

from __future__ import annotations

import pytest

from conftest import STUBS, run_invoke
from test_tmux import write_cluster


# ---- a broken accelerator ----------------------------------------------------------------


KVM_ASSERTION = "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:2893: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed."


@pytest.mark.parametrize(
    "words, accel, named",
    [
        ("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n" + KVM_ASSERTION, "kvm", True),
        ("qemu-system-x86_64: failed to initialize kvm: Permission denied", "kvm", True),
        ("qemu-system-aarch64: Error: HV_UNSUPPORTED", "hvf", True),
        ("qemu-system-aarch64: hv_vm_create failed: HV_ERROR", "hvf", True),
        ("qemu-system-x86_64: -drive file=disk.img: Could not open 'disk.img': Permission denied", "kvm", False),
        ("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69", "tcg", False),  # already software
    ],
)
def test_an_accelerator_failure_is_recognised_in_what_qemu_said(words, accel, named):
    from kubenet.launch import accelerator_failure

    hint = accelerator_failure(words, accel)
    assert (hint is not None) == named
    if named:
        assert hint == (
            f"the accelerator ({accel}) cannot run guests on this host: set `accel: tcg` in cluster.yaml, "
            "or run `invoke up --accel tcg` (slower: software emulation)"
        )


def test_a_qemu_killed_by_its_accelerator_is_shown_line_by_line_with_the_fix(short_dir, tmux_server):
    config = write_cluster(short_dir, "  - {name: node, count: 1, memory: 128M}\n")
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_QEMU": str(STUBS / "qemu-kvm-broken"), "KUBENET_ACCEL": "kvm"}
    done = run_invoke("up", "--config", str(config), env=env)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    said = lines.index("kubenet: node0: qemu exited as it started; it said:")
    assert lines[said + 1 : said + 3] == ["  qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69", f"  {KVM_ASSERTION}"]
    assert lines[-1] == (
        "kubenet: error: 1 VMs did not start: node0 (hint: the accelerator (kvm) cannot run guests on this host: "
        "set `accel: tcg` in cluster.yaml, or run `invoke up --accel tcg` (slower: software emulation))"
    )
