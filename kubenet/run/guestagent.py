"""The guest agent (qemu-ga inside the guest, on a virtio port whose host end is the VM's
`qga.sock`): whether one runs, and setting a guest's clock to the host's through it.

A guest paused for a snapshot, or returned to one, keeps the time it stopped at: etcd
leases and kubelet heartbeats would see time stand still, or go back. The agent's
`guest-set-time` sets it from inside the guest without a login, and its own request
carries the host's time, read the moment it is sent (libvirt's `virsh domtime --sync`
does the same). The agent speaks JSON lines without a greeting; `guest-sync-delimited`
first passes over whatever an earlier client left unread on the port.
"""

from __future__ import annotations

import json
import random
import socket
import time
from pathlib import Path

from ..plumbing import errors

SYNC_MARK = b"\xff"  # what the agent writes before its answer to guest-sync-delimited


class GuestAgentError(errors.LaunchError):
    """The guest agent did not answer, or refused."""


def agent_listening(qmp: Path, timeout: float = 2.0) -> bool:
    """Whether an agent runs in the guest: QMP's query-chardev says whether the guest has
    the agent's virtio port open (frontend-open), without waiting on the guest at all."""
    from ..plumbing.qmp import QMPError, ask

    try:
        devices = ask(qmp, "query-chardev", timeout=timeout)
    except QMPError:
        return False
    return any(device.get("label") == "guest-agent" and device.get("frontend-open") for device in devices or [])


def set_clock(path: Path, name: str, timeout: float = 10.0) -> float:
    """Set the guest's clock to the host's, within `timeout` seconds, then read it back:
    how far it is from the host's (guest minus host, in seconds)."""
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(path))
            token = random.randrange(1, 2**31)
            answer = _ask(connection, {"execute": "guest-sync-delimited", "arguments": {"id": token}}, deadline, after_mark=True)
            if answer.get("return") != token:
                raise GuestAgentError(f"{name}: its guest agent answered out of turn")
            answer = _ask(connection, {"execute": "guest-set-time", "arguments": {"time": time.time_ns()}}, deadline)
            error = answer.get("error")
            # After setting the time the agent also writes it to the RTC (hwclock -w); a guest
            # without an RTC tool reports that failure, but its clock is already set.
            if error and "hwclock" not in str(error.get("desc", "")):
                raise GuestAgentError(f"{name}: its guest agent did not set the clock: {error.get('desc', error)}")
            before = time.time()
            told = _ask(connection, {"execute": "guest-get-time"}, deadline).get("return")
            after = time.time()
    except socket.timeout:
        raise GuestAgentError(f"{name}: its guest agent did not answer within {timeout:g} s") from None
    except OSError as error:
        raise GuestAgentError(f"{name}: cannot reach its guest agent at {path}: {error.strerror or error}") from None
    if not isinstance(told, int):
        raise GuestAgentError(f"{name}: its guest agent did not tell the time back")
    return told / 1e9 - (before + after) / 2


def _ask(connection: socket.socket, request: dict, deadline: float, after_mark: bool = False) -> dict:
    connection.sendall(json.dumps(request).encode() + b"\n")
    received = b""
    while True:
        if after_mark and SYNC_MARK in received:
            received = received[received.rindex(SYNC_MARK) + 1 :]
            after_mark = False
        line, newline, rest = received.partition(b"\n")
        if newline and not after_mark:
            try:
                return json.loads(line)
            except ValueError:
                received = rest  # a stale half line from before the mark
                continue
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = connection.recv(4096)
        if not chunk:
            raise OSError(0, "the agent's port closed")
        received += chunk
