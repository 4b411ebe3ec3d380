"""Item-to-item similarity from a baskets × items matrix, top-k per item, in blocks.

The co-occurrence matrix C = Xᵀ X of 100,000 items would not fit in memory whole, and
only the k best neighbours of each item are kept anyway; so C is computed a block of item
rows at a time (each block is exact: it sees every basket), scored and cut to k.

The score is cosine similarity of the items' binary basket vectors (the Ochiai
coefficient), shrunk towards zero when few baskets support it:

    sim(i, j) = c_ij / sqrt(n_i · n_j) · c_ij / (c_ij + λ)

where c_ij counts baskets with both, n_i baskets with i. Cosine, unlike lift, does not
reward rarity (two products bought once, together, have lift N but cosine 1), and unlike
raw counts it does not make every list the bestsellers; the shrinkage factor (significance
weighting) puts a pair seen in 100 baskets ahead of a pair seen once.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from rapport.recommend.data import FloatArray, IntArray

Float32Array = npt.NDArray[np.float32]

BLOCK_ROWS = 4096
BLOCK_PAIRS = 20_000_000


@dataclass
class Neighbours:
    """Ranked pairs: for each source item, its best others (position 0 is the best)."""

    source: IntArray
    other: IntArray
    score: FloatArray
    position: IntArray

    def __len__(self) -> int:
        return len(self.source)

    @staticmethod
    def empty() -> Neighbours:
        z = np.zeros(0, dtype=np.int64)
        return Neighbours(z, z.copy(), np.zeros(0), z.copy())


def binary_matrix(rows: IntArray, cols: IntArray, n_cols: int) -> sp.csr_matrix:
    """A 0/1 matrix with a row per distinct value of ``rows`` (in sorted order)."""
    if len(rows) == 0:
        return sp.csr_matrix((0, n_cols), dtype=np.float32)
    _, row_index = np.unique(rows, return_inverse=True)
    data = np.ones(len(rows), dtype=np.float32)
    m = sp.csr_matrix(
        (data, (row_index, cols)), shape=(int(row_index.max()) + 1, n_cols), dtype=np.float32
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def top_k_per_row(
    rows: IntArray, cols: IntArray, scores: FloatArray, k: int
) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
    """Keep the k highest scores of each row (ties: the lower column first)."""
    if len(rows) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy(), np.zeros(0), z.copy()
    order = np.lexsort((cols, -scores, rows))
    rows, cols, scores = rows[order], cols[order], scores[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    lengths = np.diff(np.r_[starts, len(rows)])
    position = np.arange(len(rows)) - np.repeat(starts, lengths)
    keep = position < k
    return rows[keep], cols[keep], scores[keep], position[keep]


def cosine_top_k(baskets: sp.csr_matrix, k: int, shrink: float) -> Neighbours:
    """The k most similar items of every item that shares a basket with another."""
    if baskets.nnz == 0 or k <= 0:
        return Neighbours.empty()
    counts = np.asarray(baskets.sum(axis=0)).ravel().astype(np.float64)
    by_item = baskets.T.tocsr()
    parts: list[tuple[IntArray, IntArray, FloatArray, IntArray]] = []
    for start, stop in _blocks(baskets, by_item):
        if by_item.indptr[stop] == by_item.indptr[start]:
            continue  # none of these items was bought
        block = (by_item[start:stop] @ baskets).tocoo()
        src = block.row.astype(np.int64) + start
        dst = block.col.astype(np.int64)
        both = block.data.astype(np.float64)
        off_diagonal = src != dst
        src, dst, both = src[off_diagonal], dst[off_diagonal], both[off_diagonal]
        score = both / np.sqrt(counts[src] * counts[dst]) * (both / (both + shrink))
        parts.append(top_k_per_row(src, dst, score, k))
    if not parts:
        return Neighbours.empty()
    src_a, dst_a, score_a, pos_a = (np.concatenate(col) for col in zip(*parts, strict=True))
    return Neighbours(src_a, dst_a, score_a, pos_a)


def _blocks(baskets: sp.csr_matrix, by_item: sp.csr_matrix) -> list[tuple[int, int]]:
    """Row ranges of at most ``BLOCK_ROWS`` items whose products have at most about
    ``BLOCK_PAIRS`` entries before summing (an item's share is the total size of the
    baskets it is in), so a block of bestsellers stays as small in memory as any other."""
    sizes = np.asarray(baskets.sum(axis=1)).ravel()
    work = np.cumsum(by_item @ sizes)
    out: list[tuple[int, int]] = []
    start, n = 0, by_item.shape[0]
    while start < n:
        done = work[start - 1] if start else 0.0
        stop = int(np.searchsorted(work, done + BLOCK_PAIRS, side="right"))
        stop = min(max(stop, start + 1), start + BLOCK_ROWS, n)
        out.append((start, stop))
        start = stop
    return out


def factor_top_k(factors: npt.NDArray[np.floating[Any]], active: IntArray, k: int) -> Neighbours:
    """Cosine neighbours in a latent factor space (ALS item factors), among ``active``
    items (those with any interaction: the others' factors are noise around zero).

    Every pair is scored (a dense product, a batch of rows at a time, in float32) and
    each row keeps its ``k`` best. The selection is what costs: a full ``argpartition``
    of 100,000 scores per row takes several times the product itself, so when the
    ``implicit`` package is there (ALS needs it anyway) its compiled batched top-k
    selects instead, one BLAS thread each; NumPy's blocked ``argpartition`` otherwise.
    Both keep the same pairs (ties at the k-th place aside, which neither orders);
    positions are then ranked by score, ties by the lower index, as everywhere else.
    """
    if len(active) < 2 or k <= 0:
        return Neighbours.empty()
    f = factors[active].astype(np.float32)
    norms = np.linalg.norm(f, axis=1)
    norms[norms == 0] = 1.0
    f = np.ascontiguousarray(f / norms[:, None])
    keep = min(k, len(active) - 1)
    topk = _compiled_top_k()
    if topk is None:
        best, sims = _numpy_top_k(f, keep + 1)
    else:
        with one_blas_thread():
            best, sims = topk(f, f, keep + 1)
    rows = np.repeat(np.arange(len(active), dtype=np.int64), keep + 1)
    cols = np.asarray(best, dtype=np.int64).ravel()
    scores = np.asarray(sims, dtype=np.float64).ravel()
    others = rows != cols  # each row's own item scores 1: not its own neighbour
    src, dst, score, position = top_k_per_row(
        active[rows[others]], active[cols[others]], scores[others], keep
    )
    return Neighbours(src, dst, score, position)


def _compiled_top_k() -> Callable[..., tuple[Any, Any]] | None:
    """``implicit``'s batched top-k (rows of ``query @ items.T``), or None without it."""
    try:
        module = importlib.import_module("implicit.cpu.topk")
    except ImportError:
        return None
    found = getattr(module, "topk", None)
    return found if callable(found) else None


def _numpy_top_k(f: Float32Array, keep: int) -> tuple[IntArray, Float32Array]:
    """Each row's ``keep`` best columns of ``f @ f.T`` (unordered), in blocks of rows
    holding about 64 MB of float32 scores."""
    n = len(f)
    best = np.empty((n, keep), dtype=np.int64)
    sims_out = np.empty((n, keep), dtype=np.float32)
    step = max(1, 2**24 // n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        sims = f[start:stop] @ f.T
        chosen = np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
        best[start:stop] = chosen
        sims_out[start:stop] = np.take_along_axis(sims, chosen, axis=1)
    return best, sims_out


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread for code that runs its own threads (ALS's fit, the compiled
    top-k): BLAS threads inside them only contend, and ``implicit`` warns about it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, "blas")
