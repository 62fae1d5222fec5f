"""One thing done for many VMs at once: a thread each, results in order, Ctrl-C heard.

Most of what kubenet does per VM waits on something else (qemu-img, ssh, a
guest powering off), so the VMs' waits overlap. The caller's thread only waits
for the workers, in short joins, so a Ctrl-C reaches it at once: it then sets
`stop`, which the workers look at between their steps, gives them a moment to
end where they are, and lets the KeyboardInterrupt go on.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

JOIN_SECONDS = 0.1  # how often the waiting thread wakes: a Ctrl-C is heard within this
GRACE_SECONDS = 5.0  # how long workers have to end once asked to stop


def for_each(
    items: Iterable[Item],
    work: Callable[[Item], Result],
    limit: int | None = None,
    stop: threading.Event | None = None,
    grace: float = GRACE_SECONDS,
) -> list[Result]:
    """`work(item)` for every item, at most `limit` at a time; the results in the items' order.
    After a Ctrl-C the workers have `grace` seconds to end where they are.

    A worker's exception is raised here once every worker has finished (the first
    one, in item order), so no worker is left running behind the caller's back.
    """
    items = list(items)
    results: list = [None] * len(items)
    failures: list[BaseException | None] = [None] * len(items)
    slots = threading.Semaphore(limit or max(1, len(items)))

    def run(index: int, item: Item) -> None:
        with slots:
            try:
                results[index] = work(item)
            except BaseException as error:  # handed to the caller's thread
                failures[index] = error

    threads = [threading.Thread(target=run, args=(index, item), daemon=True) for index, item in enumerate(items)]
    try:
        for thread in threads:  # a Ctrl-C while they start stops those already started too
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(JOIN_SECONDS)
    except KeyboardInterrupt:
        if stop is not None:
            stop.set()
        deadline = time.monotonic() + grace
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(max(0.0, deadline - time.monotonic()))
        raise
    failure = next((error for error in failures if error is not None), None)
    if failure is not None:
        raise failure
    return results
