"""The `kubenet` command: kubenet's invoke tasks as a program of their own (invoke's
documented `Program`), installed with the package, so it runs from any directory:
`kubenet ls`, `kubenet up`, as `invoke ls` does in the checkout. The cluster file is
found as by `invoke`: --config, else $KUBENET_CONFIG, else ./cluster.yaml.

`--config` means the cluster file wherever it is written, before the task's name or
after it (invoke's own core `--config`, a file of invoke settings, means nothing here);
`kubenet --help` shows kubenet's own options, not invoke's for running shell commands."""

from __future__ import annotations

import os
import re

from invoke import Collection, Program
from invoke.parser import Argument

from .. import __version__
from . import tasks

# The core options that mean something for kubenet; invoke's others (sudo passwords, pty,
# echo, dry runs of shell commands) are still parsed, as invoke needs them, but not shown.
SHOWN = ("config", "help", "version", "list", "complete", "print-completion-script")
CONFIG_HELP = "the cluster file, before or after the task (default: $KUBENET_CONFIG or ./cluster.yaml)"


class KubenetProgram(Program):
    def core_args(self) -> list[Argument]:
        kept = [argument for argument in super().core_args() if argument.name != "config"]
        return [Argument(names=("config",), help=CONFIG_HELP), *kept]

    def update_config(self, merge: bool = True) -> None:
        # --config before the task is the cluster file: every task reads $KUBENET_CONFIG when
        # not given --config of its own. invoke must not read it as a file of its settings.
        cluster_file = self.args.config.value
        if cluster_file:
            os.environ["KUBENET_CONFIG"] = cluster_file
            self.args.config.set_value(None, cast=False)
        super().update_config(merge)

    def print_help(self) -> None:
        print(f"Usage: {self.binary} [--config PATH] TASK [--TASK-OPTIONS] [TASK2 ...]")
        print("")
        print("Options:")
        print("")
        rows = self.initial_context.help_tuples()
        self.print_columns([row for row in rows if set(re.findall(r"--([a-z-]+)", row[0])) & set(SHOWN)])
        if self.namespace is not None:
            self.list_tasks()


program = KubenetProgram(namespace=Collection.from_module(tasks), version=__version__, name="kubenet", binary="kubenet")


def main() -> None:
    try:
        program.run()
    except BrokenPipeError:
        # `kubenet --list | head`: the reader left; end quietly, as a program killed by SIGPIPE
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
