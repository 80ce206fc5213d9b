"""Read ahead: an iterator run in a worker thread a few items ahead of its consumer.

Theory of operation
-------------------
Decompressing a replay file (zlib for gzip, ``zstandard`` for zstd) is CPU work that releases
the GIL while it inflates, so on a machine with a spare core it can run beside the replay.
``Prefetcher(items)`` starts one daemon thread that takes ``items`` (a generator of
decompressed blocks) and puts each item on a bounded queue (``AHEAD`` items: memory stays
bounded); iterating the ``Prefetcher`` takes them off in the same order. Nothing is async: the
consumer waits on the queue exactly as it would wait on reading the file, on its own thread.

The items' end and their error travel through the queue too, after every item produced before
them, so the consumer sees the same items and then the same exception (the same object, raised
where the consumer's ``next`` is) as if it had iterated ``items`` itself.

Closing (``close``, idempotent; the owner calls it in a ``finally`` before it closes the file the
items read) stops the thread and joins it: it sets the stop flag, then empties the queue, which
frees a thread blocked on a full queue; the thread checks the flag before every put, so after
that emptying it puts at most one more item (never blocking: the queue has room) and ends,
closing ``items`` on its own thread (a generator is closed where it runs). The join waits for at
most one step of ``items`` (a read and one block's decompression). So no thread outlives the
file, and none is left blocked.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Final, Generic, TypeVar

__all__ = ["AHEAD", "THREAD_NAME", "Prefetcher"]

T = TypeVar("T")

AHEAD: Final = 2  # items queued ahead of the consumer (one more is in the thread's hands)
THREAD_NAME: Final = "bitmex-replay-prefetch"


class _End:
    """The items ended: normally (``error`` None) or by raising ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """``items`` produced by a worker thread up to ``AHEAD`` items ahead (module docstring)."""

    def __init__(self, items: Generator[T, None, None]) -> None:
        self._items = items
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=AHEAD)
        self._stop = threading.Event()
        self._done = False  # the consumer took the end
        self._thread = threading.Thread(target=self._work, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if type(item) is _End:
            self._done = True
            self._thread.join()  # it has nothing left to do but return
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the thread and wait for it (see the module docstring)."""
        self._done = True
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():  # (a finalizer run by the worker)
            self._thread.join()

    def _work(self) -> None:
        items, put, stop = self._items, self._queue.put, self._stop
        try:
            for item in items:
                if stop.is_set():
                    return
                put(item)
        except BaseException as error:  # handed to the consumer, raised there
            if not stop.is_set():
                put(_End(error))
        else:
            if not stop.is_set():
                put(_End(None))
        finally:
            items.close()
