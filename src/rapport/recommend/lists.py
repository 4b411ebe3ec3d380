"""Ranked lists as arrays: what each builder returns, the build writes and the evaluation
reads in memory without going through the store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from rapport.recommend.data import FloatArray, IntArray
from rapport.recommend.similarity import Neighbours


@dataclass
class KindLists:
    """Every list of one kind: row r is product ``item[r]`` at ``position[r]`` of the list
    named ``keys[key[r]]``, with ``score[r]``. Rows are sorted by (list, position)."""

    kind: str
    keys: list[str]
    key: IntArray
    item: IntArray
    position: IntArray
    score: FloatArray
    _spans: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        order = np.lexsort((self.position, self.key))
        self.key, self.item = self.key[order], self.item[order]
        self.position, self.score = self.position[order], self.score[order]
        if len(self.key):
            starts = np.flatnonzero(np.r_[True, self.key[1:] != self.key[:-1]])
            stops = np.r_[starts[1:], len(self.key)]
            self._spans = {
                self.keys[int(self.key[a])]: (int(a), int(b))
                for a, b in zip(starts, stops, strict=True)
            }

    def __len__(self) -> int:
        return len(self.item)

    @property
    def list_count(self) -> int:
        return len(self._spans)

    def get(self, key: str, product_ids: list[str]) -> list[tuple[str, float]]:
        """One list as (product id, score), best first; empty when there is none."""
        span = self._spans.get(key)
        if span is None:
            return []
        a, b = span
        return [
            (product_ids[int(i)], float(s))
            for i, s in zip(self.item[a:b], self.score[a:b], strict=True)
        ]

    def items_of(self, key: str) -> IntArray:
        """One list's product indices, best first."""
        a, b = self._spans.get(key, (0, 0))
        return self.item[a:b]

    def rows(self, product_ids: list[str]) -> Iterator[tuple[str, str, int, str, float]]:
        """(kind, list_key, position, product_id, score) for the store."""
        keys, kind = self.keys, self.kind
        for k, i, p, s in zip(
            self.key.tolist(),
            self.item.tolist(),
            self.position.tolist(),
            self.score.tolist(),
            strict=True,
        ):
            yield kind, keys[k], p, product_ids[i], s


def item_lists(kind: str, neighbours: Neighbours, product_ids: list[str]) -> KindLists:
    """Neighbour lists keyed by the source product's id."""
    return KindLists(
        kind=kind,
        keys=product_ids,
        key=neighbours.source,
        item=neighbours.other,
        position=neighbours.position,
        score=neighbours.score,
    )


def ranked(
    kind: str,
    keys: list[str],
    key: IntArray,
    item: IntArray,
    score: FloatArray,
    priority: list[FloatArray],
    length: int,
) -> KindLists:
    """Lists made by sorting each key's items by ``priority`` (most important first, each
    descending; ties by product id) and keeping the first ``length``."""
    if len(key) == 0:
        z = np.zeros(0, dtype=np.int64)
        return KindLists(kind, keys, z, z.copy(), z.copy(), np.zeros(0))
    order = np.lexsort((item, *[-p for p in reversed(priority)], key))
    key, item, score = key[order], item[order], score[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    lengths = np.diff(np.r_[starts, len(key)])
    position = np.arange(len(key)) - np.repeat(starts, lengths)
    keep = position < length
    return KindLists(kind, keys, key[keep], item[keep], position[keep], score[keep])
