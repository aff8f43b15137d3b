"""A second thread that runs one task at a time for a loop on the calling thread.

A minibatch step is a few hundred microseconds, so starting a thread per
step (about 100 us) or waking one through :class:`threading.Event` (a
condition variable: tens of microseconds each way) costs most of what
splitting the step saves. :class:`Twin` hands tasks over with two bare locks
used as binary semaphores, the cheapest wake-up CPython has (about 15 us for
a round trip on a 2-core VM), and the caller does its own share of the work
meanwhile. NumPy releases the GIL inside each operation on arrays of any
size that matters, so the two shares run in parallel.

:class:`TwinPool` keeps idle twins between calls: a labelling call's helper
threads (:func:`._kmeans_steps.labels_inertia`) are taken from
:data:`HELPERS` instead of started (about 80 us a thread here, more on a
loaded machine) and given back when the call ends.
"""

from __future__ import annotations

import _thread
import contextvars
import functools
import os
import threading
import weakref
from collections.abc import Callable, Sequence


class Twin:
    """A daemon thread that runs the task given to :meth:`start`; :meth:`join` waits for it.

    Use as a context manager (or call :meth:`close`): the thread ends on exit.
    One task at a time; an exception in the task is re-raised by :meth:`join`.
    """

    def __init__(self, name: str = "skbridge-twin") -> None:
        self._go = _thread.allocate_lock()
        self._done = _thread.allocate_lock()
        self._go.acquire()
        self._done.acquire()
        self._task: Callable[[], None] | None = None
        self._context = contextvars.Context()
        self._error: BaseException | None = None
        self._busy = False
        # Whether the last task has ended, and whether its caller gave up on
        # joining it (see reclaim): read and set together, under this lock.
        self._state = threading.Lock()
        self._finished = True
        self._abandoned = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
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
            # An idle twin keeps nothing of its last call: not the task (and
            # the arrays it refers to), not the call's context.
            task = None
            self._task = None
            self._context = contextvars.Context()
            with self._state:
                self._finished = True
                abandoned = self._abandoned
            if abandoned:  # nobody will join: end the thread
                self._error = None
                return
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
        with self._state:
            self._finished = False
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

    @property
    def busy(self) -> bool:
        """Whether a task was started and not joined (a join interrupted leaves it so)."""
        return self._busy

    def reclaim(self) -> bool:
        """After a join that did not complete: whether the twin is idle again.

        If its task has ended, the twin is joined (its task's exception, if
        any, dropped) and True is returned. Otherwise its thread is told to
        end once the task does (nobody will join it), and False is returned.
        """
        if not self._busy:
            return True
        with self._state:
            if not self._finished:
                self._abandoned = True
                return False
        # Released as the task ended (unless an interrupted join had taken it:
        # then the twin's state is unknown, and it is let go).
        if not self._done.acquire(timeout=1.0):
            return False
        self._busy = False
        self._error = None
        return True

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


class TwinPool:
    """Idle :class:`Twin` threads kept between calls, for calls that need helpers briefly.

    :meth:`take` hands out an idle twin (or starts one); :meth:`give` takes
    back a joined one, keeping at most ``max_idle`` (the rest are closed).
    Concurrent calls each take their own. A forked child starts with none
    (the parent's threads do not exist there) and a lock of its own.

    Parameters
    ----------
    max_idle : int
        Most idle twins kept.
    name : str
        The twins' thread name.
    """

    def __init__(self, max_idle: int = 8, name: str = "skbridge-helper") -> None:
        self.max_idle = max_idle
        self.name = name
        self._after_fork()
        if hasattr(os, "register_at_fork"):
            # A child forked while another thread held the lock would inherit
            # it held for good: it starts with a new lock and no twins.
            pool = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork_of(pool))

    def _after_fork(self) -> None:
        """A fresh lock and no twins (at creation, and in a forked child)."""
        self._lock = threading.Lock()
        self._idle: list[Twin] = []

    def take(self) -> Twin:
        """An idle twin, started if none is kept."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Twin(name=self.name)

    def give(self, twin: Twin) -> None:
        """Take back ``twin`` from :meth:`take`.

        A twin whose join was interrupted is kept if its task has ended; if
        not, its thread ends with the task (see :meth:`Twin.reclaim`).
        """
        if not twin.reclaim():
            return
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(twin)
                return
        twin.close()

    @property
    def idle(self) -> int:
        """Twins kept idle now."""
        with self._lock:
            return len(self._idle)


def _after_fork_of(pool: weakref.ref[TwinPool]) -> None:
    """Reset ``pool`` (if it still exists) in a forked child."""
    alive = pool()
    if alive is not None:
        alive._after_fork()


#: The labelling calls' helper threads (see :func:`._kmeans_steps.labels_inertia`).
HELPERS = TwinPool()


def run_parts(parts: Sequence[Callable[[], None]]) -> None:
    """Run ``parts`` at once: the first on the calling thread, the others on :data:`HELPERS`.

    A part for which no helper thread can be had (a thread or process
    limit) runs on the calling thread too. Returns when all have ended;
    the first exception any part raised is re-raised here. Each part runs
    in a copy of the caller's context (see :class:`Twin`).
    """
    errors: list[BaseException] = []

    def guarded(part: Callable[[], None]) -> None:
        try:
            part()
        except BaseException as exc:  # re-raised on the calling thread
            errors.append(exc)

    started: list[Twin] = []
    here = list(parts[:1])
    try:
        for part in parts[1:]:
            try:
                twin = HELPERS.take()
            except RuntimeError:
                here.append(part)
                continue
            started.append(twin)
            twin.start(functools.partial(guarded, part))
        for part in here:
            guarded(part)
    finally:
        try:
            for twin in started:
                twin.join()
        finally:  # (a join interrupted: the pool takes back what has ended)
            for twin in started:
                HELPERS.give(twin)
    if errors:
        raise errors[0]


class SplitHistory:
    """What the trials of one kind of loop found, shared by its choosers in a process.

    A trial costs: on a 2-core virtual machine where sharing loses, the
    shared steps of a 200,000 x 50 fit that tried both ways at its start and
    once more later took about 5% of its time. So a trial's finding outlives
    the loop that made it: later loops start with it, and each trial that
    confirms the way kept doubles the steps until the next (up to
    :attr:`longest`), while one that changes it starts over from
    :attr:`shortest`.

    Attributes
    ----------
    choice : bool or None
        Whether sharing was faster in the last trial (None before any).
    interval : int
        Steps kept after the last trial.
    wait : int
        Steps left, counted by every loop of this kind, until the next trial.
    """

    shortest = 256
    longest = 16384

    def __init__(self) -> None:
        self.choice: bool | None = None
        self.interval = self.shortest
        self.wait = 0

    def found(self, choice: bool) -> None:
        """Record a trial's finding and start the wait for the next trial."""
        if self.choice is None or choice != self.choice:
            self.interval = self.shortest
        else:
            self.interval = min(2 * self.interval, self.longest)
        self.choice = choice
        self.wait = self.interval


#: The process's histories, by kind of loop (see :func:`split_history`).
_HISTORIES: dict[object, SplitHistory] = {}


def split_history(kind: object) -> SplitHistory:
    """The process-wide :class:`SplitHistory` of loops of ``kind`` (a hashable key)."""
    history = _HISTORIES.get(kind)
    if history is None:
        history = _HISTORIES.setdefault(kind, SplitHistory())
    return history


class SplitChooser:
    """Chooses, by timing, whether a loop's steps go faster shared with a twin thread.

    Whether sharing pays depends on the machine more than on the sizes: on a
    virtual machine an idle core takes tens of microseconds to wake, and how
    long varies with the host's load. Both ways give the same results, so
    loops try both. A trial runs steps in blocks of :attr:`block` steps with
    and without the twin, :attr:`rounds` blocks each, and the way with the
    lower median step time is kept until the next trial, which is shorter
    (half the rounds). When trials come is up to the ``history`` (a
    :class:`SplitHistory`): a loop whose history already holds a finding
    starts with it, without a trial.

    Use: ``shared = chooser.next()`` before a step, ``chooser.record(seconds)``
    after it.

    Parameters
    ----------
    enabled : bool
        False: :meth:`next` always answers False (the step is too small to share).
    history : SplitHistory or None
        The findings shared with other loops of this kind (None: this loop's own).
    """

    block = 4
    rounds = 4

    def __init__(self, enabled: bool, history: SplitHistory | None = None) -> None:
        self.enabled = enabled
        self.history = SplitHistory() if history is None else history
        self._times: dict[bool, list[float]] = {True: [], False: []}
        # Steps left in the current trial: a whole one if nothing is known yet.
        self._trial = 2 * self.block * self.rounds if self.history.choice is None else 0
        self._step = 0  # steps since the trial began
        self._current = True

    @property
    def choice(self) -> bool:
        """The way taken outside trials (sharing, until a trial has ended)."""
        return self.history.choice is not False

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
        history = self.history
        if self._trial:
            self._step += 1
            self._times[self._current].append(seconds)
            self._trial -= 1
            if not self._trial:
                on, off = (sorted(self._times[way]) for way in (True, False))
                if on and off:
                    history.found(on[len(on) // 2] < off[len(off) // 2])
                self._times = {True: [], False: []}
            return
        history.wait -= 1
        if history.wait <= 0:
            history.wait = history.interval  # (so that other loops do not start one too)
            self._trial = 2 * self.block * max(1, self.rounds // 2)
            self._step = 0
