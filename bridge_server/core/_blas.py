"""How many threads NumPy's BLAS may use, per section of core work.

NumPy's wheels bundle OpenBLAS, whose thread count is one process-wide
setting. It matters to the core twice over:

* speed: waking BLAS threads for a minibatch step's small products costs
  more than it saves, and the core's own threads already use the cores;
* exactness: OpenBLAS splits a product's rows between its threads, and the
  rows at the edge of a split go through its edge kernels, which round
  differently once there are 8 or more features. A block of rows whose height
  is not a multiple of the split must therefore run on one thread, as
  scikit-learn runs all its products (one BLAS thread inside each OpenMP
  thread), or a label can differ from scikit-learn's.

So the core's products run inside :class:`section` (one thread), which holds a
process-wide lock for its duration: a concurrent fit in another server worker
waits for the section to end rather than changing the count under it.

The OpenBLAS entry points are looked up next to NumPy (its wheels'
``numpy.libs``) and in the libraries the process has loaded (Linux). A
section sets every OpenBLAS it found: SciPy's wheels bundle a second one,
and NumPy's is the one that matters. With any other BLAS, or none found,
:func:`section` only takes the lock and :data:`AVAILABLE` is False.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
import time
from collections.abc import Callable

import numpy as np

#: Setter and getter names, in the order tried (NumPy 2's wheels prefix and suffix them).
_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GETTERS = (
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)


def _candidate_libraries() -> list[str]:
    """Real paths of the OpenBLAS libraries that may be loaded, NumPy's own first.

    NumPy's wheels bundle theirs next to the package (``numpy.libs``,
    ``numpy/.dylibs``); SciPy's wheels bundle another (``scipy.libs``), and
    the process map lists whichever was loaded first first. A distribution's
    NumPy may link a system OpenBLAS instead, which only the map shows.
    """
    paths: list[str] = []

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in paths:
            paths.append(real)

    numpy_dir = os.path.dirname(np.__file__)
    for pattern in ("../numpy.libs/*openblas*", ".dylibs/*openblas*", "../numpy.libs/*.dll"):
        for path in sorted(glob.glob(os.path.join(numpy_dir, pattern))):
            add(path)
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rsplit(maxsplit=1)[-1] if "/" in line else ""
                if "openblas" in os.path.basename(path).lower():
                    add(path)
    except OSError:
        pass
    return paths


def _find() -> list[tuple[Callable[[int], object], Callable[[], int]]]:
    """The (set, get) thread-count functions of every OpenBLAS found, NumPy's first."""
    found = []
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
        getter = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
        if setter is None or getter is None:
            continue
        setter.argtypes = [ctypes.c_int]
        setter.restype = None
        getter.argtypes = []
        getter.restype = ctypes.c_int
        found.append((setter, getter))
    return found


#: Thread-count controls of the OpenBLAS libraries in this process, NumPy's first.
#: A section sets them all: setting only the first one found left NumPy's
#: products on all its threads whenever SciPy had been imported before the core.
_LIBS = _find()

#: Whether the BLAS thread count can be controlled here.
AVAILABLE = bool(_LIBS)

_lock = threading.RLock()
#: Threads blocked waiting for ``_lock`` (so a held section knows to step aside).
_waiting = 0
_waiting_lock = threading.Lock()
#: Sections this thread is inside (a held section steps aside only at depth 1).
_depth = threading.local()

#: Longest a held section waits for a waiting thread to take its turn, in seconds.
HAND_OVER_TIMEOUT = 0.05


def _acquire() -> None:
    """Take the section lock, counted as waiting while blocked."""
    global _waiting
    if not _lock.acquire(blocking=False):
        with _waiting_lock:
            _waiting += 1
        try:
            _lock.acquire()
        finally:
            with _waiting_lock:
                _waiting -= 1
    _depth.n = getattr(_depth, "n", 0) + 1


def _release() -> None:
    _depth.n -= 1
    _lock.release()


def current_threads() -> int | None:
    """BLAS threads right now, or None where they cannot be controlled."""
    return int(_LIBS[0][1]()) if _LIBS else None


class section:  # noqa: N801 - used like a function: ``with section(2): ...``
    """Run BLAS on ``threads`` threads inside the block, exclusively (re-entrant).

    The previous count is restored on exit. Sections in other threads wait;
    NumPy products outside any section run on whatever count is current, so
    the core puts every product whose rounding matters inside one.
    """

    __slots__ = ("threads", "_previous")

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._previous: tuple[int, ...] = ()

    def __enter__(self) -> section:
        _acquire()
        self._previous = tuple(int(get()) for _, get in _LIBS)
        for (set_threads, _), before in zip(_LIBS, self._previous):
            if before != self.threads:
                set_threads(self.threads)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for (set_threads, _), before in zip(_LIBS, self._previous):
                if before != self.threads:
                    set_threads(before)
        finally:
            _release()


class held(section):  # noqa: N801
    """A :class:`section` kept across a loop of short products.

    Entering a section per product costs about 10 us (a lock and two thread
    count changes); a fit's loop instead holds one and calls :meth:`breathe`
    once per step. Python's locks are not fair (a thread that releases and
    at once re-acquires usually wins), so :meth:`breathe` steps aside
    explicitly when another thread is waiting for a section: it releases,
    waits until that thread has taken the lock, then queues behind it.
    """

    __slots__ = ()

    def breathe(self) -> None:
        """Let any thread waiting for a section have its turn (cheap when none is)."""
        if not _waiting or getattr(_depth, "n", 0) != 1:
            return
        self.__exit__(None, None, None)
        deadline = time.monotonic() + HAND_OVER_TIMEOUT
        while _waiting and time.monotonic() < deadline:
            time.sleep(0.0001)
        self.__enter__()
