"""The algorithmic steps of mini-batch k-means, one private function per step.

Every function here reproduces scikit-learn 1.5.2's arithmetic exactly where
the result can steer the algorithm (labels, centers, random draws): see
``/work/shared/CORE-NOTES.md``. In short:

* distances go through a BLAS product on blocks of :data:`ROW_CHUNK` rows, as
  scikit-learn's Cython does, because single-precision GEMM rounds differently
  for different block heights;
* centers are accumulated sample by sample in minibatch order in the data's
  dtype (``np.add.at`` is an unbuffered, in-order loop), starting from
  ``center * weight_sum`` and finished with a reciprocal multiply;
* per-sample squared distances are summed over features in blocks of four and
  the weighted total sequentially (``np.cumsum``), in the data's dtype;
* random draws call the same ``RandomState`` methods in the same order.

Nothing here allocates ``n_samples x n_clusters``: callers give row blocks.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._context import check_cancelled, emit_verbose, warn
from ._validation import is_close

#: Rows per distance block: scikit-learn's ``CHUNK_SIZE`` (block heights change GEMM rounding).
ROW_CHUNK = 256

#: Approximate bytes for one block of the distance matrix in chunked passes.
BLOCK_BYTES = 1 << 20


@functools.cache
def _blas_controller() -> object | None:
    """threadpoolctl's controller if threadpoolctl is installed (optional), else None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas(enabled: bool = True) -> Iterator[None]:
    """Keep BLAS on one thread for the many small per-step products.

    Waking BLAS threads for a 1024-row product costs more than it saves (and
    scikit-learn does the same in its minibatch loop). Thread counts never
    change results. A no-op without threadpoolctl, which is not a dependency.
    """
    controller = _blas_controller() if enabled else None
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):  # type: ignore[attr-defined]
        yield


def rows_per_block(n_clusters: int, itemsize: int) -> int:
    """Rows per block so that a (rows, n_clusters) block is about :data:`BLOCK_BYTES`.

    Always a multiple of :data:`ROW_CHUNK`, so block boundaries fall on
    scikit-learn's chunk boundaries.
    """
    rows = BLOCK_BYTES // max(1, n_clusters * itemsize)
    return max(ROW_CHUNK, (rows // ROW_CHUNK) * ROW_CHUNK)


def row_sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of each row, shape (n_rows,), with scikit-learn's einsum."""
    return np.einsum("ij,ij->i", X, X)


# --------------------------------------------------------------------------- #
# Distances and labels
# --------------------------------------------------------------------------- #


def _sq_distances_init(A: np.ndarray, B: np.ndarray, B_sq_norms: np.ndarray) -> np.ndarray:
    """Squared distances (len(A), len(B)) as k-means++ computes them, clipped at 0.

    float64: ``-2 A B^T + |a|^2 + |b|^2`` with the given ``|b|^2``. float32:
    computed in float64 on blocks of the rows (scikit-learn's upcast, whose
    block size is reproduced), then rounded to float32.
    """
    if A.dtype != np.float32 and B.dtype != np.float32:
        out = -2 * (A @ B.T)
        out += row_sq_norms(A)[:, np.newaxis]
        out += B_sq_norms.reshape(1, -1)
    else:
        out = np.empty((A.shape[0], B.shape[0]), dtype=np.float32)
        n_features = A.shape[1]
        maxmem = max(
            ((A.shape[0] + B.shape[0]) * n_features + A.shape[0] * B.shape[0]) / 10, 10 * 2**17
        )
        tmp = 2 * n_features
        step = max(int((-tmp + np.sqrt(tmp**2 + 4 * maxmem)) / 2), 1)
        for a0 in range(0, A.shape[0], step):
            a64 = A[a0 : a0 + step].astype(np.float64)
            a_norms = row_sq_norms(a64)[:, np.newaxis]
            for b0 in range(0, B.shape[0], step):
                b64 = B[b0 : b0 + step].astype(np.float64)
                d = -2 * (a64 @ b64.T)
                d += a_norms
                d += row_sq_norms(b64)[np.newaxis, :]
                out[a0 : a0 + step, b0 : b0 + step] = d.astype(np.float32, copy=False)
    np.maximum(out, 0, out=out)
    return out


def _block_scores(
    X: np.ndarray, centers_m2_t: np.ndarray, center_norms: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """``|c|^2 - 2 x.c`` for a block of rows, computed in :data:`ROW_CHUNK`-row GEMMs.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        Rows starting on a chunk boundary.
    centers_m2_t : ndarray of shape (n_features, n_clusters)
        ``(-2 * centers).T``; scaling by -2 is exact, so this equals scaling the
        product, and saves a pass over the block.
    center_norms : ndarray of shape (n_clusters,)
    out : ndarray of shape (n_rows, n_clusters)

    Returns
    -------
    out
    """
    n_rows = X.shape[0]
    full = n_rows // ROW_CHUNK if n_rows > ROW_CHUNK else 0
    if full:
        head = full * ROW_CHUNK
        np.matmul(
            X[:head].reshape(full, ROW_CHUNK, X.shape[1]),
            centers_m2_t,
            out=out[:head].reshape(full, ROW_CHUNK, out.shape[1]),
        )
        if head < n_rows:
            np.matmul(X[head:], centers_m2_t, out=out[head:])
    else:
        np.matmul(X, centers_m2_t, out=out)
    out += center_norms
    return out


def _assign_labels(
    X: np.ndarray,
    centers_m2_t: np.ndarray,
    center_norms: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
) -> np.ndarray:
    """Index of the nearest center for each row (first one on ties), into ``labels``.

    ``scores`` is scratch of shape (n_rows, n_clusters).
    """
    _block_scores(X, centers_m2_t, center_norms, scores)
    np.argmin(scores, axis=1, out=labels)
    return labels


def _sample_sq_distances(
    X: np.ndarray, centers: np.ndarray, labels: np.ndarray, diff: np.ndarray
) -> np.ndarray:
    """Squared distance of each row to its assigned center, shape (n_rows,).

    Summed as scikit-learn's ``_euclidean_dense_dense``: features in blocks of
    four (``((d0 + d1) + d2) + d3``), blocks in order, then the remainder one
    by one. ``diff`` is scratch of X's shape.
    """
    np.take(centers, labels, axis=0, out=diff, mode="clip")
    np.subtract(X, diff, out=diff)
    np.multiply(diff, diff, out=diff)
    n_rows, n_features = diff.shape
    n_blocks = n_features // 4
    if n_blocks:
        quads = diff[:, : 4 * n_blocks].reshape(n_rows, n_blocks, 4)
        blocks = quads[:, :, 0] + quads[:, :, 1]
        blocks += quads[:, :, 2]
        blocks += quads[:, :, 3]
        result = blocks[:, 0].copy()
        for j in range(1, n_blocks):
            result += blocks[:, j]
        rem_start = 4 * n_blocks
    else:
        result = diff[:, 0].copy()
        rem_start = 1
    for j in range(rem_start, n_features):
        result += diff[:, j]
    return result


def _sequential_sum(values: np.ndarray, start: np.generic, scratch: np.ndarray) -> np.generic:
    """``start + v0 + v1 + ...`` left to right in ``values``' dtype.

    ``scratch`` must hold ``len(values) + 1`` items of that dtype.
    """
    n = values.shape[0]
    buf = scratch[: n + 1]
    buf[0] = start
    buf[1:] = values
    np.cumsum(buf, out=buf)
    return buf[n]


def labels_inertia(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    centers: np.ndarray,
    labels_out: np.ndarray | None = None,
    *,
    with_inertia: bool = True,
    on_block: Callable[[int, int], None] | None = None,
) -> float:
    """Labels and inertia of ``X`` against ``centers``, in blocks of rows.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Cast block by block to ``centers``' dtype if it differs.
    sample_weight : ndarray of shape (n_samples,) or None
        ``None`` means unit weights.
    centers : ndarray of shape (n_clusters, n_features)
    labels_out : ndarray of shape (n_samples,) or None
        Integer array to fill with labels, block by block.
    with_inertia : bool
        Whether to compute the inertia (sum of weighted squared distances).
    on_block : callable(done, total) or None
        Called after each block (progress, cancellation).

    Returns
    -------
    float
        The inertia (summed sequentially in the data's dtype), or 0.0.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    dtype = centers.dtype
    block = min(rows_per_block(n_clusters, dtype.itemsize), n_samples)
    centers_m2_t = (-2 * centers).T
    center_norms = row_sq_norms(centers)
    if not with_inertia and labels_out is not None and n_samples > 2 * block:
        _parallel_labels(X, centers_m2_t, center_norms, labels_out, block, on_block)
        return 0.0
    scores = np.empty((block, n_clusters), dtype=dtype)
    labels = np.empty(block, dtype=np.intp)
    diff = np.empty((block, n_features), dtype=dtype)
    scratch = np.empty(block + 1, dtype=dtype)
    total = dtype.type(0)
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        rows = stop - start
        xb = X[start:stop]
        if xb.dtype != dtype:
            xb = xb.astype(dtype)
        lab = _assign_labels(xb, centers_m2_t, center_norms, labels[:rows], scores[:rows])
        if labels_out is not None:
            labels_out[start:stop] = lab
        if with_inertia:
            sq = _sample_sq_distances(xb, centers, lab, diff[:rows])
            if sample_weight is not None:
                sq *= sample_weight[start:stop]
            total = _sequential_sum(sq, total, scratch)
        if on_block is not None:
            on_block(stop, n_samples)
    return float(total)


def _parallel_labels(
    X: np.ndarray,
    centers_m2_t: np.ndarray,
    center_norms: np.ndarray,
    labels_out: np.ndarray,
    block: int,
    on_block: Callable[[int, int], None] | None,
) -> None:
    """Labels of many blocks on a few threads (NumPy releases the GIL in each operation).

    Blocks are independent and start on chunk boundaries, so the labels are
    the same as one thread's. BLAS is kept on one thread meanwhile.
    """
    n_samples = X.shape[0]
    n_clusters = center_norms.shape[0]
    dtype = center_norms.dtype
    n_threads = max(1, min(4, os.cpu_count() or 1))
    local = threading.local()

    def work(start: int) -> int:
        if not hasattr(local, "scores"):
            local.scores = np.empty((block, n_clusters), dtype=dtype)
            local.labels = np.empty(block, dtype=np.intp)
        stop = min(start + block, n_samples)
        xb = X[start:stop]
        if xb.dtype != dtype:
            xb = xb.astype(dtype)
        rows = stop - start
        lab = _assign_labels(
            xb, centers_m2_t, center_norms, local.labels[:rows], local.scores[:rows]
        )
        labels_out[start:stop] = lab
        return stop

    with single_threaded_blas(), ThreadPoolExecutor(n_threads) as pool:
        pending = []
        starts = iter(range(0, n_samples, block))
        try:
            # A bounded window of blocks in flight, collected in order.
            for start in starts:
                pending.append(pool.submit(work, start))
                if len(pending) > 2 * n_threads:
                    done = pending.pop(0).result()
                    if on_block is not None:
                        on_block(done, n_samples)
            for future in pending:
                done = future.result()
                if on_block is not None:
                    on_block(done, n_samples)
        finally:
            for future in pending:
                future.cancel()


def euclidean_distances_block(X: np.ndarray, centers: np.ndarray, out: np.ndarray) -> None:
    """Euclidean distances of rows of ``X`` to ``centers`` into ``out`` (n_rows, n_clusters).

    As scikit-learn's ``euclidean_distances``: ``-2 x.c + |x|^2 + |c|^2``
    clipped at 0, square-rooted; float32 input is computed in float64.
    """
    if X.dtype == np.float32 or centers.dtype == np.float32:
        x = X.astype(np.float64)
        c = centers.astype(np.float64)
    else:
        x, c = X, centers
    d = -2 * (x @ c.T)
    d += row_sq_norms(x)[:, np.newaxis]
    d += row_sq_norms(c)[np.newaxis, :]
    # Rounded to the output dtype before clipping and the root, as scikit-learn does.
    out[...] = d
    np.maximum(out, 0, out=out)
    np.sqrt(out, out=out)


# --------------------------------------------------------------------------- #
# Initialisation
# --------------------------------------------------------------------------- #


def _stable_cumsum(values: np.ndarray) -> np.ndarray:
    """Cumulative sum in float64, warning (as scikit-learn) if it drifted from the sum."""
    out = np.cumsum(values, axis=None, dtype=np.float64)
    expected = np.sum(values, axis=None, dtype=np.float64)
    if not is_close(float(out[-1]), float(expected)):
        warn(
            "cumsum was found to be unstable: its last element does not correspond to sum",
            RuntimeWarning,
        )
    return out


def kmeans_plusplus(
    X: np.ndarray,
    n_clusters: int,
    x_sq_norms: np.ndarray,
    sample_weight: np.ndarray,
    random_state: np.random.RandomState,
) -> np.ndarray:
    """Greedy k-means++ seeding: ``2 + int(log k)`` candidates per new center.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Candidate points (the init subset).
    n_clusters : int
    x_sq_norms : ndarray of shape (n_samples,)
        Squared norms of the rows of X.
    sample_weight : ndarray of shape (n_samples,)
    random_state : RandomState
        Consumed as scikit-learn does: ``choice`` for the first center, then
        ``uniform(size=n_local_trials)`` per further center.

    Returns
    -------
    ndarray of shape (n_clusters, n_features)
        Rows of X, in X's dtype.
    """
    n_samples, n_features = X.shape
    centers = np.empty((n_clusters, n_features), dtype=X.dtype)
    n_local_trials = 2 + int(np.log(n_clusters))

    center_id = random_state.choice(n_samples, p=sample_weight / sample_weight.sum())
    centers[0] = X[center_id]
    closest_dist_sq = _sq_distances_init(centers[0, np.newaxis], X, x_sq_norms)
    current_pot = closest_dist_sq @ sample_weight

    for c in range(1, n_clusters):
        rand_vals = random_state.uniform(size=n_local_trials) * current_pot
        candidate_ids = np.searchsorted(_stable_cumsum(sample_weight * closest_dist_sq), rand_vals)
        # Rounding can put a draw past the last cumulative value.
        np.clip(candidate_ids, None, closest_dist_sq.size - 1, out=candidate_ids)
        dist_to_candidates = _sq_distances_init(X[candidate_ids], X, x_sq_norms)
        np.minimum(closest_dist_sq, dist_to_candidates, out=dist_to_candidates)
        candidates_pot = dist_to_candidates @ sample_weight.reshape(-1, 1)
        best = np.argmin(candidates_pot)
        current_pot = candidates_pot[best]
        closest_dist_sq = dist_to_candidates[best]
        centers[c] = X[candidate_ids[best]]
    return centers


def random_init(
    X: np.ndarray,
    n_clusters: int,
    sample_weight: np.ndarray,
    random_state: np.random.RandomState,
) -> np.ndarray:
    """``n_clusters`` distinct rows of X drawn with probability proportional to weight."""
    seeds = random_state.choice(
        X.shape[0], size=n_clusters, replace=False, p=sample_weight / sample_weight.sum()
    )
    return X[seeds]


# --------------------------------------------------------------------------- #
# The minibatch step
# --------------------------------------------------------------------------- #


class StepWorkspace:
    """Buffers reused by every minibatch step (no per-step allocation of big arrays).

    Parameters
    ----------
    batch_size : int
        Most rows a step sees.
    n_clusters, n_features : int
    dtype : numpy dtype
        float32 or float64, the data's dtype.
    """

    def __init__(self, batch_size: int, n_clusters: int, n_features: int, dtype: np.dtype) -> None:
        self.capacity = batch_size
        self.X = np.empty((batch_size, n_features), dtype=dtype)
        self.weights = np.empty(batch_size, dtype=dtype)
        self.scores = np.empty((batch_size, n_clusters), dtype=dtype)
        self.labels = np.empty(batch_size, dtype=np.intp)
        self.diff = np.empty((batch_size, n_features), dtype=dtype)
        self.scratch = np.empty(batch_size + 1, dtype=dtype)
        self.flat_index = np.empty((batch_size, n_features), dtype=np.intp)
        # Row c holds the flat positions of center c's features in a (k, f) array.
        self.flat_table = np.arange(n_clusters * n_features, dtype=np.intp).reshape(
            n_clusters, n_features
        )
        self.acc = np.empty((n_clusters, n_features), dtype=dtype)


def _accumulate_centers(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    labels: np.ndarray,
    centers: np.ndarray,
    centers_new: np.ndarray,
    weight_sums: np.ndarray,
    ws: StepWorkspace,
) -> None:
    """Move each center to the weighted mean of its past and new points.

    For a center that received weight ``w > 0`` in this batch:
    ``new = (old * W + sum_i x_i s_i) * (1 / (W + w))`` with the sum taken
    sample by sample in batch order and ``W`` updated in place. Other centers
    are copied unchanged. ``centers_new`` may be ``centers``.
    """
    n_clusters, n_features = centers.shape
    dtype = centers.dtype
    n_rows = X.shape[0]
    if sample_weight is None:
        # Counts are exact integers in either float type, so this equals
        # adding ones one by one.
        batch_weight = np.bincount(labels, minlength=n_clusters).astype(dtype)
        contrib = X
    else:
        batch_weight = np.zeros(n_clusters, dtype=dtype)
        np.add.at(batch_weight, labels, sample_weight)
        contrib = np.multiply(X, sample_weight[:, np.newaxis], out=ws.diff[:n_rows])
    acc = np.multiply(centers, weight_sums[:, np.newaxis], out=ws.acc)
    flat = np.take(ws.flat_table, labels, axis=0, out=ws.flat_index[:n_rows], mode="clip")
    np.add.at(acc.reshape(-1), flat.reshape(-1), contrib.reshape(-1))

    received = batch_weight > 0
    if received.all():
        weight_sums += batch_weight
        alpha = 1 / weight_sums
        np.multiply(acc, alpha[:, np.newaxis], out=centers_new)
    else:
        weight_sums[received] += batch_weight[received]
        alpha = 1 / weight_sums[received]
        if centers_new is not centers:
            centers_new[...] = centers
        centers_new[received] = acc[received] * alpha[:, np.newaxis]


def _reassign_small_centers(
    X: np.ndarray,
    centers_new: np.ndarray,
    weight_sums: np.ndarray,
    reassignment_ratio: float,
    random_state: np.random.RandomState,
    verbose: bool,
) -> None:
    """Move centers with little accumulated weight onto random rows of the batch.

    Centers whose weight is below ``reassignment_ratio * max weight`` (at most
    half the batch size of them, the lightest) jump to rows drawn uniformly
    without replacement; their weight is reset to the smallest weight kept.
    """
    n_rows = X.shape[0]
    to_reassign = weight_sums < reassignment_ratio * weight_sums.max()
    if to_reassign.sum() > 0.5 * n_rows:
        keep = np.argsort(weight_sums)[int(0.5 * n_rows) :]
        to_reassign[keep] = False
    n_reassigns = to_reassign.sum()
    if n_reassigns:
        new_rows = random_state.choice(n_rows, replace=False, size=n_reassigns)
        if verbose:
            emit_verbose(f"[MiniBatchKMeans] Reassigning {n_reassigns} cluster centers.")
        centers_new[to_reassign] = X[new_rows]
    # Not reset to zero: that would trigger an immediate reassignment again.
    weight_sums[to_reassign] = np.min(weight_sums[~to_reassign])


def mini_batch_step(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    centers: np.ndarray,
    centers_new: np.ndarray,
    weight_sums: np.ndarray,
    random_state: np.random.RandomState,
    ws: StepWorkspace,
    *,
    random_reassign: bool,
    reassignment_ratio: float,
    verbose: bool,
) -> float:
    """One minibatch update: label, accumulate, maybe reassign.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        The minibatch (``n_rows <= ws.capacity``).
    sample_weight : ndarray of shape (n_rows,) or None
    centers : ndarray of shape (n_clusters, n_features)
        Centers before the step.
    centers_new : ndarray of shape (n_clusters, n_features)
        Receives the centers after the step (may be ``centers``).
    weight_sums : ndarray of shape (n_clusters,)
        Accumulated weight per center, updated in place.
    random_state : RandomState
        Drawn from only when centers are reassigned.
    ws : StepWorkspace
    random_reassign, reassignment_ratio, verbose
        As scikit-learn's ``_mini_batch_step``.

    Returns
    -------
    float
        The batch inertia against ``centers`` (before the update).
    """
    n_rows = X.shape[0]
    labels = _assign_labels(
        X, (-2 * centers).T, row_sq_norms(centers), ws.labels[:n_rows], ws.scores[:n_rows]
    )
    sq = _sample_sq_distances(X, centers, labels, ws.diff[:n_rows])
    if sample_weight is not None:
        sq *= sample_weight
    inertia = _sequential_sum(sq, centers.dtype.type(0), ws.scratch)
    _accumulate_centers(X, sample_weight, labels, centers, centers_new, weight_sums, ws)
    if random_reassign and reassignment_ratio > 0:
        _reassign_small_centers(
            X, centers_new, weight_sums, reassignment_ratio, random_state, verbose
        )
    return float(inertia)


def large_batch_step(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    centers: np.ndarray,
    weight_sums: np.ndarray,
    random_state: np.random.RandomState,
    *,
    random_reassign: bool,
    reassignment_ratio: float,
    verbose: bool,
) -> None:
    """:func:`mini_batch_step` in place for a batch of any size (``partial_fit``).

    Labels the batch block by block and accumulates centers block by block;
    accumulation is sequential per center, so carrying the running sums from
    one block to the next gives the same result as one pass.
    """
    n_rows, n_features = X.shape
    n_clusters = centers.shape[0]
    dtype = centers.dtype
    block = min(rows_per_block(n_clusters, dtype.itemsize), n_rows)
    ws = StepWorkspace(block, n_clusters, n_features, dtype)
    centers_m2_t = (-2 * centers).T
    center_norms = row_sq_norms(centers)
    labels = np.empty(n_rows, dtype=np.intp)
    acc = np.multiply(centers, weight_sums[:, np.newaxis])
    batch_weight = np.zeros(n_clusters, dtype=dtype)
    for start in range(0, n_rows, block):
        stop = min(start + block, n_rows)
        xb = X[start:stop]
        lab = _assign_labels(
            xb, centers_m2_t, center_norms, labels[start:stop], ws.scores[: stop - start]
        )
        swb = None if sample_weight is None else sample_weight[start:stop]
        if swb is None:
            batch_weight += np.bincount(lab, minlength=n_clusters).astype(dtype)
            contrib = xb
        else:
            np.add.at(batch_weight, lab, swb)
            contrib = np.multiply(xb, swb[:, np.newaxis], out=ws.diff[: stop - start])
        flat = np.take(ws.flat_table, lab, axis=0, out=ws.flat_index[: stop - start], mode="clip")
        np.add.at(acc.reshape(-1), flat.reshape(-1), contrib.reshape(-1))
        check_cancelled()
    received = batch_weight > 0
    weight_sums[received] += batch_weight[received]
    alpha = 1 / weight_sums[received]
    centers[received] = acc[received] * alpha[:, np.newaxis]
    if random_reassign and reassignment_ratio > 0:
        _reassign_small_centers(X, centers, weight_sums, reassignment_ratio, random_state, verbose)


def tolerance(X: np.ndarray, tol: float, *, block_rows: int = 1 << 16) -> float:
    """Absolute tolerance ``mean(var(X, axis=0)) * tol`` (0 when ``tol == 0``).

    Small arrays use ``np.var`` itself. Large ones (memory maps) use two
    blocked passes that sum rows in order, as NumPy's axis-0 reduction does
    for more than one feature, without a full-size temporary.
    """
    if tol == 0:
        return 0
    if X.nbytes <= 64 * block_rows * 8 or X.shape[1] == 1:
        return float(np.mean(np.var(X, axis=0)) * tol)
    n = X.shape[0]
    total = np.zeros((1, X.shape[1]), dtype=X.dtype)
    for start in range(0, n, block_rows):
        total = np.sum(
            np.concatenate([total, X[start : start + block_rows]]), axis=0, keepdims=True
        )
    mean = total / n
    sq_total = np.zeros_like(total)
    for start in range(0, n, block_rows):
        centred = X[start : start + block_rows] - mean
        np.multiply(centred, centred, out=centred)
        sq_total = np.sum(np.concatenate([sq_total, centred]), axis=0, keepdims=True)
    return float(np.mean(sq_total[0] / n) * tol)
