"""kubenet's tasks, for `invoke` in this checkout: the same ones the installed `kubenet`
command runs (kubenet/cli/tasks.py). `invoke --list` shows them."""

from kubenet.cli.tasks import *  # noqa: F401,F403 (invoke collects the tasks it finds here)
