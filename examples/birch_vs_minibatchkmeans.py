"""The MiniBatchKMeans half of scikit-learn's "Compare BIRCH and MiniBatchKMeans", through skbridge.

25,000 points in 2-D drawn around a 10 x 10 grid of centers, clustered into 100
clusters by a MiniBatchKMeans that lives in a bridge server process; the time
of the fit is printed as the scikit-learn example prints it, and the panel is
saved as a PNG (with matplotlib installed: ``pip install 'skbridge[plot]'``).

Run: ``python examples/birch_vs_minibatchkmeans.py [--out mbk.png]``
"""

from __future__ import annotations

import argparse
import asyncio
from os import cpu_count
from time import time

import numpy as np

from client_py import MiniBatchKMeans, create_python_bridge


def make_grid_blobs(n_samples: int = 25_000, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Points around a 10 x 10 grid of centers in [-22, 22]^2, unit spread.

    The same points as the scikit-learn example's ``make_blobs(n_samples=25000,
    centers=grid, random_state=42)``: equal shares per center, normal draws
    center by center, then one shuffle, all from one ``RandomState``.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    centers : ndarray of shape (100, 2)
    """
    xx = np.linspace(-22, 22, 10)
    yy = np.linspace(-22, 22, 10)
    xx, yy = np.meshgrid(xx, yy)
    centers = np.hstack((np.ravel(xx)[:, np.newaxis], np.ravel(yy)[:, np.newaxis]))
    rng = np.random.RandomState(seed)
    per_center = np.full(len(centers), n_samples // len(centers))
    per_center[: n_samples % len(centers)] += 1
    X = np.concatenate(
        [rng.normal(loc=c, scale=1.0, size=(n, 2)) for c, n in zip(centers, per_center)]
    )
    order = np.arange(n_samples)
    rng.shuffle(order)
    return X[order], centers


async def main(out: str) -> None:
    """Fit through an embedded bridge, print the time, save the panel."""
    X, centers = make_grid_blobs()
    n_clusters = len(centers)
    async with await create_python_bridge() as py:
        mbk = MiniBatchKMeans(
            init="k-means++",
            n_clusters=n_clusters,
            batch_size=256 * (cpu_count() or 1),
            n_init=10,
            max_no_improvement=10,
            verbose=0,
            random_state=0,
        )
        await mbk.init(py)
        t_mini_batch = time()
        await mbk.fit(X=X)
        t_mini_batch = time() - t_mini_batch
        print(f"Time taken to run MiniBatchKMeans {t_mini_batch:0.2f} seconds")
        labels = await mbk.labels_
        cluster_centers = await mbk.cluster_centers_
        await mbk.dispose()
    print(f"{len(np.unique(labels))} distinct labels")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.colors as colors
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed; no figure (pip install 'skbridge[plot]')")
        return
    colors_ = list(colors.cnames)[:n_clusters]
    fig, ax = plt.subplots(figsize=(5, 5))
    for this_centroid, k, col in zip(cluster_centers, range(n_clusters), colors_):
        mask = labels == k
        ax.scatter(X[mask, 0], X[mask, 1], marker=".", c="w", edgecolor=col, alpha=0.5)
        ax.scatter(this_centroid[0], this_centroid[1], marker="+", c="k", s=25)
    ax.set_xlim([-25, 25])
    ax.set_ylim([-25, 25])
    ax.set_title("MiniBatchKMeans")
    ax.set_autoscaley_on(False)
    fig.savefig(out, dpi=100)
    print(f"figure saved to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="birch_vs_minibatchkmeans.png", help="PNG path")
    asyncio.run(main(parser.parse_args().out))
