"""Batches prepared ahead by a background thread of the training process (``TrainConfig.prefetch``).

``num_workers > 0`` prepares batches in DataLoader processes, but the training-map
stream mixes the worker's id into its seed (:class:`mssfs.data.datasets.TrainingImages`),
so the batches change with the number of workers.  :func:`prefetched` instead runs the
same in-process iterator (``num_workers`` 0: the same batches in the same order,
pinned by the loader when training on CUDA) in one thread, up to ``depth`` batches ahead
of the step that consumes them: while the GPU runs a step, the next batches are cut
(most of that work is NumPy and torch kernels, which release the GIL).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")

_END = object()


def prefetched(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield ``items`` in order, produced by a background thread up to ``depth`` ahead.

    ``depth`` 0 iterates ``items`` directly.  An exception raised while producing is
    raised here, at the item it replaced.  Closing the generator (the loop breaking or
    failing) stops the thread after the item it is producing.
    """
    if depth <= 0:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # noqa: BLE001 -- handed to the consumer
            put((_END, exc))
            return
        put((_END, None))

    thread = threading.Thread(target=produce, name="mssfs-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = ready.get()
            if item is _END:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        thread.join()
