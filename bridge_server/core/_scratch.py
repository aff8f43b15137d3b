"""Scratch buffers kept between calls.

On the KVM guests this project is measured on, first touching a fresh page
costs microseconds: labelling a 2,560 x 50 block with fresh buffers took
about twice as long as with reused ones. Labelling calls therefore take their
per-thread buffers from this pool and give them back, keyed by everything
that decides the buffers' shapes, so a second ``predict`` of the same shape
touches no new page.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

#: Most bytes kept in the pool (the oldest entries go first beyond it).
MAX_BYTES = 32 << 20


class ScratchPool:
    """Idle scratch objects by key, at most ``max_bytes`` in all.

    Parameters
    ----------
    max_bytes : int
    """

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # key -> [(item, nbytes)], least recently given first.
        self._idle: OrderedDict[Hashable, list[tuple[Any, int]]] = OrderedDict()
        self._bytes = 0

    def take(self, key: Hashable) -> Any | None:
        """An idle item given back under ``key``, or None."""
        with self._lock:
            items = self._idle.get(key)
            if not items:
                return None
            item, nbytes = items.pop()
            if not items:
                del self._idle[key]
            self._bytes -= nbytes
            return item

    def give(self, key: Hashable, item: Any, nbytes: int) -> None:
        """Keep ``item`` (``nbytes`` of buffers) for a later :meth:`take` of ``key``."""
        if nbytes > self.max_bytes:
            return
        with self._lock:
            self._idle.setdefault(key, []).append((item, nbytes))
            self._idle.move_to_end(key)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                oldest = next(iter(self._idle))
                items = self._idle[oldest]
                _, dropped = items.pop(0)
                self._bytes -= dropped
                if not items:
                    del self._idle[oldest]

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes


#: The process's pool.
POOL = ScratchPool()
