"""The one QMP client: QEMU's own (`qemu.qmp`), spoken synchronously and always within a
time bound, as the rest of kubenet is synchronous.

A `Monitor` is one connection to one VM's qemu; each thread opens its own (each has
its own event loop). `ask` is one command on a connection of its own.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from . import errors

# qemu.qmp logs a lost connection as a warning; what it means is kubenet's to say.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
logging.getLogger("qemu.qmp").propagate = False


class QMPError(errors.LaunchError):
    """qemu could not be reached over QMP, or refused a command (`desc` is qemu's reason)."""

    def __init__(self, message: str, desc: str = ""):
        super().__init__(message)
        self.desc = desc


class Monitor:
    """One QMP connection to a VM's qemu."""

    def __init__(self, socket: Path, name: str = "qemu", timeout: float = 2.0):
        from qemu.qmp import QMPClient

        self.name = name
        self._loop = asyncio.new_event_loop()
        self._client = QMPClient(name)
        try:
            self._run(self._client.connect(str(socket)), timeout, "connect")
        except BaseException:
            self._loop.close()
            raise

    def _run(self, coroutine, timeout: float, doing: str):
        from qemu.qmp import ExecuteError, QMPError as ClientError

        try:
            return self._loop.run_until_complete(asyncio.wait_for(coroutine, max(timeout, 0.01)))
        except ExecuteError as refused:
            desc = getattr(refused.error, "desc", "") or str(refused)
            raise QMPError(f"{self.name}: qemu refused {doing}: {desc}", desc) from None
        except asyncio.TimeoutError:
            raise QMPError(f"{self.name}: qemu did not answer {doing} over QMP within {timeout:g} s") from None
        except EOFError:
            raise QMPError(f"{self.name}: qemu closed its QMP connection during {doing}", "closed") from None
        except (OSError, ClientError) as error:
            raise QMPError(f"{self.name}: cannot {doing} over QMP: {error}") from None

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 5.0) -> Any:
        """Run one command; what it returns. A refusal raises QMPError with qemu's reason."""
        return self._run(self._client.execute(command, arguments), timeout, command)

    def quit(self, timeout: float = 5.0) -> None:
        """`quit`: qemu may close the connection before or instead of answering, which is success."""
        try:
            self.execute("quit", timeout=timeout)
        except QMPError as error:
            if error.desc != "closed" and "closed" not in str(error):
                raise

    def event(self, names: tuple[str, ...], timeout: float) -> dict | None:
        """The next event named in `names` (others are skipped), or None after `timeout` seconds."""

        async def wait() -> dict:
            while True:
                event = await self._client.events.get()
                if event["event"] in names:
                    return dict(event)

        try:
            return self._run(wait(), timeout, "waiting for " + "/".join(names))
        except QMPError as error:
            if "did not answer" in str(error):
                return None
            raise

    def close(self) -> None:
        try:
            self._loop.run_until_complete(asyncio.wait_for(self._client.disconnect(), 2.0))
        except Exception:  # a connection that is already gone needs no goodbye
            pass
        finally:
            self._loop.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ask(socket: Path, command: str, arguments: dict | None = None, timeout: float = 2.0, name: str = "qemu") -> Any:
    """One command on a connection of its own, all within `timeout` seconds."""
    with Monitor(socket, name, timeout) as monitor:
        return monitor.execute(command, arguments, timeout)


def run_state(socket: Path, timeout: float = 0.5) -> str | None:
    """What `query-status` says the VM is doing (running, paused, internal-error, ...);
    None when its qemu does not answer."""
    try:
        return ask(socket, "query-status", timeout=timeout).get("status")
    except (QMPError, AttributeError):
        return None


def greets(path: Path, timeout: float = 0.2) -> bool:
    """Whether a qemu answers on its QMP socket: it does once it has set the machine up. Its
    greeting is read off the socket alone (no client, no event loop): `up` asks this of every
    VM it starts, many times a second, and pays neither the client's import nor its set-up."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(path))
            return connection.recv(64).startswith(b'{"QMP"')
    except OSError:
        return False
