#!/usr/bin/env python3
"""Stands in for qemu-system-*: writes its pid file and answers QMP on the -qmp socket.

system_powerdown makes it exit, unless its VM is named in $STUB_IGNORE_POWERDOWN
(comma-separated) — a guest that ignores the power button; likewise `quit` and
$STUB_IGNORE_QUIT, for a qemu that has to be killed. `query-status` says "running",
or what $STUB_STATUS gives for its VM (`node0=internal-error,...`).
"""

import json
import os
import socket
import sys
import threading


def option(name):
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args else None


def plug_into_vde():
    """Plug into the cluster's VDE switch as qemu's `-nic vde,sock=...` does, through libvdeplug,
    so the switch lists this process among its ports. Held until the process ends."""
    import ctypes
    import ctypes.util

    socks = [part.split("=", 1)[1] for arg in sys.argv[1:] if arg.startswith("vde,") for part in arg.split(",") if part.startswith("sock=")]
    name = ctypes.util.find_library("vdeplug")
    if not socks or not name:
        return None
    library = ctypes.CDLL(name)
    library.vde_open_real.restype = ctypes.c_void_p
    library.vde_open_real.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
    return library.vde_open_real(socks[0].encode(), b"stub qemu", 1, None)


def main():
    plug = plug_into_vde()  # noqa: F841 (kept for the life of the process)
    pidfile = option("-pidfile")
    qmp = option("-qmp").removeprefix("unix:").split(",")[0]
    vm = os.path.basename(os.path.dirname(pidfile))
    ignore_powerdown = vm in os.environ.get("STUB_IGNORE_POWERDOWN", "").split(",")
    ignore_quit = vm in os.environ.get("STUB_IGNORE_QUIT", "").split(",")
    statuses = dict(item.split("=", 1) for item in os.environ.get("STUB_STATUS", "").split(",") if "=" in item)
    if os.path.exists(qmp):
        os.unlink(qmp)
    server = socket.socket(socket.AF_UNIX)
    server.bind(qmp)
    server.listen(4)
    with open(pidfile, "w") as stream:
        stream.write(f"{os.getpid()}\n")
    print(f"stub qemu {vm} running", flush=True)

    def messages(connection):
        """QMP is a stream of JSON objects, not of lines."""
        decoder, buffer = json.JSONDecoder(), ""
        while chunk := connection.recv(4096):
            buffer += chunk.decode()
            while buffer.strip():
                try:
                    message, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                yield message

    def serve(connection):
        send = lambda message: connection.sendall((json.dumps(message) + "\r\n").encode())
        send({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}})
        for command in messages(connection):
            reply = {"return": {}}
            if command.get("execute") == "query-status":
                status = statuses.get(vm, "running")
                reply = {"return": {"status": status, "running": status == "running", "singlestep": False}}
            if "id" in command:
                reply["id"] = command["id"]
            send(reply)
            name = command.get("execute")
            if name == "system_powerdown":
                print("stub qemu: power button pressed", flush=True)
                if not ignore_powerdown:
                    threading.Timer(0.2, lambda: os._exit(0)).start()
            elif name == "quit" and not ignore_quit:
                print("stub qemu: quit", flush=True)
                threading.Timer(0.1, lambda: os._exit(0)).start()

    while True:
        connection, _ = server.accept()
        threading.Thread(target=serve, args=(connection,), daemon=True).start()


if __name__ == "__main__":
    main()
