"""The core's thread plumbing: BLAS thread sections and the twin thread of a step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from bridge_server.core import _blas, _kmeans_steps, _prune
from bridge_server.core import _twin as _twin_module
from bridge_server.core._twin import SplitChooser, SplitHistory, Twin, TwinPool, split_history


def test_blas_threads_are_controlled_where_numpy_bundles_openblas():
    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    if "openblas" in str(config.get("name", "")).lower():
        assert _blas.AVAILABLE
        assert _blas.current_threads() >= 1
    else:
        # Another BLAS: nothing to set, but a section still runs (as a plain lock).
        with _blas.section(1):
            assert _blas.current_threads() in (None, 1)


def test_section_sets_and_restores_the_count():
    before = _blas.current_threads()
    with _blas.section(1):
        if _blas.AVAILABLE:
            assert _blas.current_threads() == 1
        with _blas.section(2):  # re-entrant
            if _blas.AVAILABLE:
                assert _blas.current_threads() == 2
        if _blas.AVAILABLE:
            assert _blas.current_threads() == 1
    assert _blas.current_threads() == before
    with pytest.raises(ZeroDivisionError), _blas.section(1):
        1 / 0  # noqa: B018
    assert _blas.current_threads() == before


def test_a_section_sets_numpy_blas_even_when_scipy_was_imported_first():
    # SciPy's wheels bundle their own OpenBLAS. Imported before the core, it
    # comes first in the process map; the section must still reach NumPy's.
    script = textwrap.dedent(
        """
        import os
        import scipy.linalg  # loads SciPy's OpenBLAS before the core looks
        import numpy as np
        from threadpoolctl import threadpool_info
        from bridge_server.core import _blas

        def counts():
            return {
                info["filepath"]: info["num_threads"]
                for info in threadpool_info()
                if info["internal_api"] == "openblas"
            }

        before = counts()
        numpy_libs = [path for path in before if "numpy" in path]
        print("libraries", len(before), "numpy", len(numpy_libs))
        wheel = os.path.isdir(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs"))
        assert numpy_libs or not wheel, before  # a wheel's own OpenBLAS must be seen
        with _blas.section(1):
            inside = counts()
        assert all(n == 1 for n in inside.values()), inside
        assert counts() == before, (counts(), before)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok" in done.stdout


def test_same_count_sections_run_side_by_side_and_another_count_takes_turns():
    held = _blas.held(1)
    with held:
        # A section at the same count (a concurrent fit in another worker) runs at once.
        same = threading.Event()

        def one() -> None:
            with _blas.section(1):
                if _blas.AVAILABLE:
                    assert _blas.current_threads() == 1
                same.set()

        thread = threading.Thread(target=one)
        thread.start()
        assert same.wait(5)
        thread.join(5)

        # A section at another count waits until held steps aside.
        order: list[str] = []
        entered = threading.Event()
        counts: list[int | None] = []

        def two() -> None:
            with _blas.section(2):
                counts.append(_blas.current_threads())
                order.append("two")
                entered.set()

        thread = threading.Thread(target=two)
        thread.start()
        time.sleep(0.05)
        assert not entered.is_set()  # waits while the section is held

        # Meanwhile a new same-count section lets the waiting one go first.
        def late() -> None:
            with _blas.section(1):
                order.append("late")

        late_thread = threading.Thread(target=late)
        late_thread.start()
        time.sleep(0.05)
        assert order == []
        order.append("held")
        held.breathe()  # steps aside for the waiting thread, then enters again
        assert entered.is_set()
        order.append("held again")
        if _blas.AVAILABLE:
            assert counts == [2] and _blas.current_threads() == 1
        thread.join(5)
        late_thread.join(5)
    # Then the held loop and the late section run side by side, in either order.
    assert order[:2] == ["held", "two"] and sorted(order[2:]) == ["held again", "late"]


def test_twin_runs_tasks_on_another_thread_and_reraises():
    seen: list[int] = []
    with Twin() as twin:
        for i in range(50):
            twin.start(lambda i=i: seen.append(threading.get_ident()))
            twin.join()
        assert len(seen) == 50 and threading.get_ident() not in seen

        def boom() -> None:
            raise MemoryError("in the twin")

        twin.start(boom)
        with pytest.raises(MemoryError, match="in the twin"):
            twin.join()
        twin.start(lambda: seen.append(0))  # still usable after an error
        with pytest.raises(RuntimeError, match="still running"):
            twin.start(lambda: None)
        twin.join()
        assert seen[-1] == 0
    assert not any(t.name == "skbridge-twin" for t in threading.enumerate())


def test_twin_pool_keeps_idle_twins_for_the_next_call():
    pool = TwinPool(max_idle=2, name="skbridge-test-pool")
    first, second, third = pool.take(), pool.take(), pool.take()
    assert len({id(first), id(second), id(third)}) == 3  # concurrent callers: one each
    for twin in (first, second, third):
        pool.give(twin)
    assert pool.idle == 2 and not third._thread.is_alive()  # the one over max_idle closed
    again = pool.take()
    assert again is second and pool.idle == 1  # reused, not started
    # A twin whose join was interrupted is still running: it is not kept,
    # and its thread ends with the task.
    release = threading.Event()
    again.start(release.wait)
    pool.give(again)
    assert pool.idle == 1
    release.set()
    again._thread.join(5)
    assert not again._thread.is_alive()
    # A forked child's pool starts empty, with a lock of its own (the
    # registered at-fork hook; a real fork is tested below).
    held = pool._lock
    held.acquire()
    pool._after_fork()
    assert pool.idle == 0 and pool._lock is not held and pool.take() is not first
    held.release()
    first.close()


def test_a_twin_given_up_on_ends_its_thread_after_its_task():
    # A join interrupted (Ctrl-C) leaves the twin busy: if its task has
    # ended it is reclaimed, idle; if not, its thread ends with the task
    # instead of waiting for a next one that never comes.
    release = threading.Event()
    twin = Twin(name="skbridge-test-twin")
    twin.start(release.wait)
    assert twin.busy and not twin.reclaim()
    release.set()
    twin._thread.join(5)
    assert not twin._thread.is_alive()

    ended = Twin(name="skbridge-test-twin")
    ended.start(lambda: None)
    time.sleep(0.05)  # the task has ended; nobody joined it
    assert ended.busy and ended.reclaim() and not ended.busy
    ended.start(lambda: None)  # usable again
    ended.join()
    ended.close()


def test_an_idle_helper_keeps_nothing_of_its_last_call(monkeypatch):
    import gc
    import weakref

    from bridge_server.core import CallContext, call_context

    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 2)
    X = np.random.RandomState(6).normal(size=(40_000, 50))
    ctx = CallContext()
    with call_context(ctx):
        _kmeans_steps.labels_inertia(X, None, X[:50].copy(), np.empty(40_000, np.int32))
    assert _twin_module.HELPERS.idle >= 1
    data, context = weakref.ref(X), weakref.ref(ctx)
    del X, ctx
    gc.collect()
    assert data() is None and context() is None


def test_labelling_uses_fewer_helpers_when_no_more_threads_can_be_had(monkeypatch):
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 3)
    monkeypatch.setattr(_kmeans_steps, "BLOCK_BYTES", 1)  # many small blocks
    monkeypatch.setattr(_prune, "BLOCK_ROWS", 1000)
    X = np.round(np.random.RandomState(7).normal(size=(20_000, 2)) * 4, 1)
    centers = X[:20].copy()
    expected = np.empty(20_000, np.int32)
    inertia = _kmeans_steps.labels_inertia(X, None, centers, expected)
    real_take = _twin_module.HELPERS.take
    takes: list[int] = []

    def take() -> Twin:
        takes.append(1)
        if len(takes) > 1:
            raise RuntimeError("can't start new thread")
        return real_take()

    monkeypatch.setattr(_twin_module.HELPERS, "take", take)
    idle = _twin_module.HELPERS.idle
    got = np.empty(20_000, np.int32)
    assert _kmeans_steps.labels_inertia(X, None, centers, got) == inertia
    np.testing.assert_array_equal(got, expected)
    assert len(takes) == 2 and _twin_module.HELPERS.idle == idle  # the one taken came back


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_child_forked_while_the_pool_was_locked_gets_a_pool_of_its_own():
    helper = _twin_module.HELPERS.take()
    _twin_module.HELPERS.give(helper)  # an idle twin the child cannot use
    with _twin_module.HELPERS._lock:  # as if another thread were taking one
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the pool works there
            code = 1
            try:
                signal.alarm(10)  # never hang the test run
                twin = _twin_module.HELPERS.take()
                done: list[int] = []
                twin.start(lambda: done.append(1))
                twin.join()
                code = 0 if done == [1] and twin is not helper else 2
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_child_forked_while_another_thread_holds_a_section_is_not_blocked_by_it():
    # The holder does not exist in the child: left counted, it would keep a
    # section at another count waiting forever there.
    before = _blas.current_threads()
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with _blas.section(1):
            entered.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if sections work there
            code = 1
            try:
                signal.alarm(10)  # never hang the test run
                restored = _blas.current_threads() == before  # the holder's count undone
                with _blas.section(2):
                    with _blas.section(1):
                        pass
                code = 0 if restored else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        leave.set()
        holder.join()
    assert os.waitstatus_to_exitcode(status) == 0


def test_labelling_calls_reuse_the_pooled_helpers(monkeypatch):
    monkeypatch.setattr(_kmeans_steps, "_n_threads", lambda: 2)
    X = np.random.RandomState(5).normal(size=(40_000, 50))
    labels = np.empty(40_000, np.int32)
    _kmeans_steps.labels_inertia(X, None, X[:50], labels)  # two threads: one helper
    threads = {t.ident for t in threading.enumerate() if t.name == "skbridge-helper"}
    assert threads and _twin_module.HELPERS.idle >= 1
    seen: list[int] = []
    real_run = _kmeans_steps._BlockLabeller.run

    def run(self, start, stop):
        seen.append(threading.get_ident())
        return real_run(self, start, stop)

    monkeypatch.setattr(_kmeans_steps._BlockLabeller, "run", run)
    again = np.empty(40_000, np.int32)
    _kmeans_steps.labels_inertia(X, None, X[:50], again)
    np.testing.assert_array_equal(labels, again)
    helpers = set(seen) - {threading.get_ident()}
    assert helpers and helpers <= threads  # a pooled thread, not a new one


def _drive(chooser: SplitChooser, steps: int, cost: dict[bool, float]) -> list[bool]:
    """Run ``steps`` steps whose time is ``cost[shared]``; the ways taken, in order."""
    taken = []
    for _ in range(steps):
        shared = chooser.next()
        taken.append(shared)
        chooser.record(cost[shared])
    return taken


@pytest.mark.parametrize("faster", [True, False])
def test_split_chooser_keeps_the_faster_way_and_tries_again_later(faster):
    chooser = SplitChooser(enabled=True)
    history = chooser.history
    trial = 2 * chooser.block * chooser.rounds
    cost = {faster: 1.0, not faster: 2.0}
    taken = _drive(chooser, trial, cost)
    # The trial alternates blocks of each way, as many steps of each.
    assert taken[: 2 * chooser.block] == [True] * chooser.block + [False] * chooser.block
    assert taken.count(True) == taken.count(False) == trial // 2
    assert chooser.choice is faster and history.choice is faster
    assert _drive(chooser, history.shortest, cost) == [faster] * history.shortest
    # Then a shorter trial, which follows a change of the machine's mood.
    retrial = 2 * chooser.block * max(1, chooser.rounds // 2)
    taken = _drive(chooser, retrial, {faster: 3.0, not faster: 2.0})
    assert taken.count(True) == taken.count(False)
    assert chooser.choice is not faster
    assert set(_drive(chooser, 10, cost)) == {not faster}


def test_split_choosers_of_a_kind_share_their_findings_and_trial_less_when_confirmed():
    history = SplitHistory()
    first = SplitChooser(enabled=True, history=history)
    cost = {True: 2.0, False: 1.0}  # sharing loses
    trial = 2 * first.block * first.rounds
    retrial = 2 * first.block * max(1, first.rounds // 2)
    assert _drive(first, trial, cost).count(True) == trial // 2
    assert history.choice is False and history.interval == history.shortest
    # A later loop of the same kind starts with the finding: no trial.
    second = SplitChooser(enabled=True, history=history)
    assert _drive(second, history.shortest, cost) == [False] * history.shortest
    # The next trial confirms it: twice as many steps until the one after.
    assert _drive(second, retrial, cost).count(True) == retrial // 2
    assert history.interval == 2 * history.shortest
    third = SplitChooser(enabled=True, history=history)
    assert _drive(third, 2 * history.shortest, cost) == [False] * (2 * history.shortest)
    assert _drive(third, retrial, cost).count(True) == retrial // 2
    assert history.interval == 4 * history.shortest
    # Confirmed again and again, up to the longest wait.
    for _ in range(20):
        _drive(third, history.interval + retrial, cost)
    assert history.interval == history.longest
    # A trial that changes the way starts over from the shortest wait.
    _drive(third, history.interval, cost)
    assert _drive(third, retrial, {True: 1.0, False: 2.0}).count(True) == retrial // 2
    assert history.choice is True and history.interval == history.shortest
    # Loops of another kind know nothing of it.
    assert split_history("some kind") is split_history("some kind")
    assert split_history("some kind") is not split_history("another kind")


def test_split_chooser_disabled_never_shares():
    chooser = SplitChooser(enabled=False)
    assert _drive(chooser, 100, {True: 2.0, False: 1.0}) == [False] * 100


def test_parts_run_on_helpers_or_here_and_errors_come_back(monkeypatch):
    ran: list[tuple[int, str]] = []

    def part(i: int) -> None:
        ran.append((i, threading.current_thread().name))

    _twin_module.run_parts([lambda i=i: part(i) for i in range(3)])
    here = threading.current_thread().name
    assert sorted(i for i, _ in ran) == [0, 1, 2]
    assert dict(ran)[0] == here and dict(ran)[1] != here

    def no_thread() -> _twin_module.Twin:
        raise RuntimeError("can't start new thread")

    ran.clear()
    monkeypatch.setattr(_twin_module.HELPERS, "take", no_thread)
    _twin_module.run_parts([lambda i=i: part(i) for i in range(3)])
    assert sorted(ran) == [(0, here), (1, here), (2, here)]
    monkeypatch.undo()

    idle = _twin_module.HELPERS.idle

    def fail() -> None:
        raise KeyError("from a helper")

    with pytest.raises(KeyError, match="from a helper"):
        _twin_module.run_parts([lambda: None, fail])
    assert _twin_module.HELPERS.idle >= min(idle, 1)  # the helper went back to the pool
