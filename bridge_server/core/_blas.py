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

So the core's products run inside :class:`section` (one thread). Sections at
the same count share the setting and run side by side (concurrent fits in
server workers run in parallel); a section at another count waits until no
section is active, so no thread ever changes the count under another.

The OpenBLAS entry points are looked up next to NumPy (its wheels'
``numpy.libs``) and in the libraries the process has loaded (Linux). A
section sets every OpenBLAS it found: SciPy's wheels bundle a second one,
and NumPy's is the one that matters. With any other BLAS, or none found,
:func:`section` only keeps the bookkeeping and :data:`AVAILABLE` is False.
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

#: Guards the state below; waiters sleep on it.
_cond = threading.Condition(threading.Lock())
#: The count every active section runs at (None while no section is active).
_count: int | None = None
#: Threads inside at least one section.
_holders = 0
#: The libraries' counts before the first active section set its own.
_saved: tuple[int, ...] = ()
#: Threads blocked until they can set another count (so a held section
#: knows to step aside, and same-count entrants let them go first).
_waiting = 0
#: Per thread: the counts of the sections it is inside, outermost first.
_local = threading.local()

#: Longest a held section waits for a waiting thread to take its turn, in seconds.
HAND_OVER_TIMEOUT = 0.05


def _after_fork_in_child() -> None:
    """Only the forking thread lives on in a child: its sections are all that are held.

    Another thread inside a section (or holding the lock) at the fork would
    otherwise leave the child waiting for it forever. With none held, the
    libraries' counts from before the parent's sections are restored.
    """
    global _cond, _count, _holders, _waiting
    _cond = threading.Condition(threading.Lock())
    _waiting = 0
    stack = _stack()
    if stack:
        _holders, _count = 1, stack[-1]
        _set_all(stack[-1])
        return
    if _holders:
        for (set_threads, get), before in zip(_LIBS, _saved, strict=False):
            if int(get()) != before:
                set_threads(before)
    _holders, _count = 0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _stack() -> list[int]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _set_all(threads: int) -> None:
    for set_threads, get in _LIBS:
        if int(get()) != threads:
            set_threads(threads)


def _wait_to_set(ready: Callable[[], bool]) -> None:
    """Wait, counted in ``_waiting``, until ``ready()``; the caller holds ``_cond``."""
    global _waiting
    _waiting += 1
    try:
        _cond.wait_for(ready)
    finally:
        _waiting -= 1
        _cond.notify_all()


def _enter(threads: int) -> None:
    """Enter a section at ``threads``: beside others at that count, or once none is active."""
    global _count, _holders, _saved
    stack = _stack()
    with _cond:
        if stack:
            # Nested: the same count is free; another needs this thread alone inside.
            if threads != _count:
                if _holders > 1:
                    _wait_to_set(lambda: _holders == 1)
                _set_all(threads)
                _count = threads
            stack.append(threads)
            return
        if _waiting:
            # Threads wait to set another count: they go first, or a stream of
            # same-count sections could keep them out forever. (Not "until no
            # holder": a newcomer woken with them could then still cut in.)
            _cond.wait_for(lambda: not _waiting)
        if _holders and _count != threads:
            _wait_to_set(lambda: not _holders or _count == threads)
        if not _holders:
            _saved = tuple(int(get()) for _, get in _LIBS)
            _set_all(threads)
            _count = threads
        _holders += 1
        stack.append(threads)


def _exit() -> None:
    """Leave the innermost section of this thread."""
    global _count, _holders
    stack = _stack()
    with _cond:
        threads = stack.pop()
        if stack:
            if stack[-1] != threads:  # back to the enclosing section's count
                _set_all(stack[-1])
                _count = stack[-1]
            return
        _holders -= 1
        try:
            if not _holders:
                for (set_threads, get), before in zip(_LIBS, _saved):
                    if int(get()) != before:
                        set_threads(before)
        finally:
            if not _holders:
                _count = None
            _cond.notify_all()


def current_threads() -> int | None:
    """BLAS threads right now, or None where they cannot be controlled."""
    return int(_LIBS[0][1]()) if _LIBS else None


class section:  # noqa: N801 - used like a function: ``with section(2): ...``
    """Run BLAS on ``threads`` threads inside the block (re-entrant).

    Sections at the same count run side by side in any number of threads
    (every core section asks for one thread, so concurrent fits in server
    workers run in parallel); a section at another count waits until none
    is active. The counts before the first section are restored when the
    last one ends. NumPy products outside any section run on whatever count
    is current, so the core puts every product whose rounding matters inside
    one. A nested section at another count waits until its thread is the
    only one inside.
    """

    __slots__ = ("threads",)

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> section:
        _enter(self.threads)
        return self

    def __exit__(self, *exc: object) -> None:
        _exit()


class held(section):  # noqa: N801
    """A :class:`section` kept across a loop of short products.

    Entering a section per product costs several microseconds; a fit's loop
    instead holds one and calls :meth:`breathe` once per step. Sections at
    the same count never wait for it; one at another count does, so
    :meth:`breathe` steps aside when such a thread is waiting: it leaves,
    waits until that thread has had its turn (at most
    :data:`HAND_OVER_TIMEOUT`), then enters again.
    """

    __slots__ = ()

    def breathe(self) -> None:
        """Let a thread waiting to set another count have its turn (cheap when none is)."""
        if not _waiting or len(_stack()) != 1:
            return
        self.__exit__(None, None, None)
        deadline = time.monotonic() + HAND_OVER_TIMEOUT
        while _waiting and time.monotonic() < deadline:
            time.sleep(0.0001)
        self.__enter__()
