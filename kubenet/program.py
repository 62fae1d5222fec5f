"""The `kubenet` command: kubenet's invoke tasks as a program of their own (invoke's
documented `Program`), installed with the package, so it runs from any directory:
`kubenet ls`, `kubenet up`, as `invoke ls` does in the checkout. The cluster file is
found as by `invoke`: --config, else $KUBENET_CONFIG, else ./cluster.yaml."""

from __future__ import annotations

from invoke import Collection, Program

from . import __version__, tasks

program = Program(namespace=Collection.from_module(tasks), version=__version__, name="kubenet", binary="kubenet")


def main() -> None:
    try:
        program.run()
    except BrokenPipeError:
        # `kubenet --list | head`: the reader left; end quietly, as a program killed by SIGPIPE
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
