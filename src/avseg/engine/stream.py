"""Background threads with bounded queues: decode ahead of the model, write behind it.

:class:`Prefetch` runs an iterator (decoding) in a thread, at most ``size``
items ahead; :class:`Worker` runs a handler (encoding, writing) on items in a
thread, at most ``size`` behind. An error in either thread is raised, as the
same exception, in the thread that uses them, at its next item; ``close``
stops the thread whatever happened, so a failed run leaves no thread blocked
on a full queue (and the decoder's files are closed by its own thread).
PyAV, PNG compression and numpy release the GIL, so this overlaps with the
model's forward pass.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

_END = object()


class Prefetch:
    def __init__(self, items: Iterable[Any], size: int):
        self._queue: queue.Queue = queue.Queue(size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iter(items),), name="avseg-decode", daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            self._put((_END, error))
        finally:
            getattr(items, "close", lambda: None)()

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Worker:
    def __init__(self, handle: Callable[[Any], None], size: int):
        self._handle = handle
        self._queue: queue.Queue = queue.Queue(size)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="avseg-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _END:
            if self.error is None:  # after an error, drain so that no producer blocks
                try:
                    self._handle(item)
                except BaseException as error:  # noqa: BLE001 - raised in the producing thread
                    self.error = error

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(item)

    def close(self) -> None:
        """Wait for every item to be handled; raise the handler's error, if any."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if self.error is not None:
            raise self.error
