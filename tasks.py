"""kubenet's tasks, for `invoke` in this checkout: the same ones the installed `kubenet`
command runs (kubenet/tasks.py). `invoke --list` shows them."""

from kubenet.tasks import *  # noqa: F401,F403 (invoke collects the tasks it finds here)
