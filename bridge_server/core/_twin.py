"""A second thread that runs one task at a time for a loop on the calling thread.

A minibatch step is a few hundred microseconds, so starting a thread per
step (about 100 us) or waking one through :class:`threading.Event` (a
condition variable: tens of microseconds each way) costs most of what
splitting the step saves. :class:`Twin` hands tasks over with two bare locks
used as binary semaphores, the cheapest wake-up CPython has (about 15 us for
a round trip on a 2-core VM), and the caller does its own share of the work
meanwhile. NumPy releases the GIL inside each operation on arrays of any
size that matters, so the two shares run in parallel.
"""

from __future__ import annotations

import _thread
import contextvars
import threading
from collections.abc import Callable


class Twin:
    """A daemon thread that runs the task given to :meth:`start`; :meth:`join` waits for it.

    Use as a context manager (or call :meth:`close`): the thread ends on exit.
    One task at a time; an exception in the task is re-raised by :meth:`join`.
    """

    def __init__(self) -> None:
        self._go = _thread.allocate_lock()
        self._done = _thread.allocate_lock()
        self._go.acquire()
        self._done.acquire()
        self._task: Callable[[], None] | None = None
        self._context = contextvars.Context()
        self._error: BaseException | None = None
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="skbridge-twin", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            task = self._task
            if task is None:
                self._done.release()
                return
            try:
                # The caller's context (its call's warnings sink, for one).
                self._context.run(task)
            except BaseException as exc:  # re-raised by join() on the caller's thread
                self._error = exc
            self._done.release()

    def start(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the twin thread, in a copy of the caller's context.

        The caller must :meth:`join` before the next.
        """
        if self._busy:
            raise RuntimeError("the twin thread is still running a task")
        self._busy = True
        self._task = task
        self._context = contextvars.copy_context()
        self._go.release()

    def join(self) -> None:
        """Wait for the task given to :meth:`start`; re-raise its exception, if any."""
        if not self._busy:
            return
        self._done.acquire()
        self._busy = False
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Wait for any task, then end the thread."""
        try:
            self.join()
        finally:
            if self._thread.is_alive():
                self._task = None
                self._go.release()
                self._done.acquire()
                self._thread.join()

    def __enter__(self) -> Twin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SplitChooser:
    """Chooses, by timing, whether a loop's steps go faster shared with a twin thread.

    Whether sharing pays depends on the machine more than on the sizes: on a
    virtual machine an idle core takes tens of microseconds to wake, and how
    long varies with the host's load. Both ways give the same results, so
    the loop tries both. Steps run in blocks of :attr:`block` steps with and
    without the twin, :attr:`rounds` blocks each, and the way with the lower
    median step time is kept for the next :attr:`keep` steps; then both are
    tried again (the host's load moves), in shorter trials.

    Use: ``shared = chooser.next()`` before a step, ``chooser.record(seconds)``
    after it.

    Parameters
    ----------
    enabled : bool
        False: :meth:`next` always answers False (the step is too small to share).
    """

    block = 4
    rounds = 4
    keep = 256

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._times: dict[bool, list[float]] = {True: [], False: []}
        self._trial = 2 * self.block * self.rounds  # steps left in the current trial
        self._step = 0  # steps since the trial began, or since the choice was made
        self._current = True
        #: The way kept after the last trial (sharing until one has ended).
        self.choice = True

    def next(self) -> bool:
        """Whether the next step should be shared with the twin thread."""
        if not self.enabled:
            return False
        if self._trial:
            # Alternate blocks: on, off, on, off, ...
            self._current = (self._step // self.block) % 2 == 0
        else:
            self._current = self.choice
        return self._current

    def record(self, seconds: float) -> None:
        """Time of the step just run (as :meth:`next` said)."""
        if not self.enabled:
            return
        self._step += 1
        if self._trial:
            self._times[self._current].append(seconds)
            self._trial -= 1
            if not self._trial:
                on, off = (sorted(self._times[way]) for way in (True, False))
                if on and off:
                    self.choice = on[len(on) // 2] < off[len(off) // 2]
                self._times = {True: [], False: []}
                self._step = 0
        elif self._step >= self.keep:
            self._trial = 2 * self.block * max(1, self.rounds // 2)
            self._step = 0
