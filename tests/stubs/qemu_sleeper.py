#!/usr/bin/env python3
"""The end of tests/stubs/qemu-sleep: greets on the QMP socket (argv[1]) as a started qemu does,
plugs into the VDE switch named by a `-nic vde,sock=...` argument as qemu does, then sleeps
until killed. Its arguments stay visible in its command line, as qemu's do."""

import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_qmp import plug_into_vde  # noqa: E402


def main():
    qmp = sys.argv[1]
    plug = plug_into_vde()  # noqa: F841 (kept for the life of the process)
    if qmp:
        if os.path.exists(qmp):
            os.unlink(qmp)
        server = socket.socket(socket.AF_UNIX)
        server.bind(qmp)
        server.listen(8)

        def greet():
            # the greeting and the capabilities handshake, as a started qemu answers them (all
            # `up` asks before it counts a qemu as started); any other command ends the connection
            while True:
                client, _ = server.accept()
                client.sendall(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n')
                try:
                    command = json.loads(client.recv(4096) or b"{}")
                except ValueError:
                    command = {}
                if command.get("execute") == "qmp_capabilities":
                    client.sendall((json.dumps({"return": {}, "id": command.get("id")}) + "\r\n").encode())
                    client.recv(4096)  # the next command, or the client leaving
                client.close()

        threading.Thread(target=greet, daemon=True).start()
    time.sleep(3600)


if __name__ == "__main__":
    main()
