"""Personal recommendations: item neighbours learned from what customers buy over time.

Serving scores a customer's candidates as Σ over their recent items s of w(s) · sim(s, c)
(serve.py), so the build only has to learn ``sim``. Two ways, chosen by
``personal_model``:

* ``knn`` (always there): cosine with shrinkage over the customers × products matrix
  (similarity.py), i.e. item-based collaborative filtering.
* ``als`` (when the optional ``implicit`` package is installed: ``pip install
  rapport[recommend]``): implicit-feedback matrix factorisation (Hu, Koren and Volinsky,
  2008) by alternating least squares; ``sim`` is then the cosine of the item factors,
  which also relates products no single customer bought both of.

``auto`` takes ALS when ``implicit`` imports and item-kNN otherwise. Per-customer factors
are not stored: scoring from the customer's recent items at request time is always as
fresh as their last order, and needs no table of a million rows rewritten each night.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from rapport.recommend.cooccurrence import only_available
from rapport.recommend.data import Snapshot
from rapport.recommend.lists import KindLists, item_lists
from rapport.recommend.similarity import (
    Neighbours,
    binary_matrix,
    cosine_top_k,
    factor_top_k,
    one_blas_thread,
)
from rapport.recommend.strategies import PERSONAL, BuildOptions

log = logging.getLogger("rapport.recommend")

MODELS = ("auto", "knn", "als")


class ModelUnavailable(RuntimeError):
    """ALS was asked for and the ``implicit`` package is not installed."""


def _implicit() -> Any | None:
    try:
        return importlib.import_module("implicit.als")
    except ImportError:
        return None


def choose_model(requested: str) -> str:
    if requested not in MODELS:
        raise ValueError(f"personal model must be one of {', '.join(MODELS)}, not {requested!r}")
    if requested == "knn":
        return "knn"
    available = _implicit() is not None
    if requested == "als" and not available:
        raise ModelUnavailable(
            "the als model needs the optional 'implicit' package: pip install 'rapport[recommend]'"
        )
    return "als" if available else "knn"


def _als_neighbours(customers_items: sp.csr_matrix, options: BuildOptions) -> Neighbours:
    als = _implicit()
    assert als is not None
    with one_blas_thread():
        model = als.AlternatingLeastSquares(
            factors=options.als_factors,
            iterations=options.als_iterations,
            regularization=options.als_regularization,
            random_state=42,
            calculate_training_loss=False,
        )
        model.fit(customers_items, show_progress=False)
    factors = model.item_factors
    if hasattr(factors, "to_numpy"):  # a GPU build hands back its own array type
        factors = factors.to_numpy()
    active = np.flatnonzero(np.asarray(customers_items.sum(axis=0)).ravel() > 0)
    return factor_top_k(np.asarray(factors), active.astype(np.int64), options.neighbours * 2)


def personal_lists(snapshot: Snapshot, options: BuildOptions) -> tuple[KindLists, str]:
    """The neighbour lists and the model that made them."""
    model = choose_model(options.personal_model)
    p = snapshot.purchases
    customers_items = binary_matrix(p.customer, p.item, snapshot.catalog.size)
    if model == "als" and customers_items.nnz:
        found = _als_neighbours(customers_items, options)
    else:
        found = cosine_top_k(customers_items, options.neighbours * 2, options.shrink)
    found = only_available(found, snapshot, options.neighbours)
    log.info("personal neighbours by %s: %d pairs", model, len(found))
    return item_lists(PERSONAL, found, snapshot.catalog.ids), model
