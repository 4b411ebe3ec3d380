"""Every list of one build, in memory: what the build writes and the evaluation reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rapport.recommend.categories import compatible_lists
from rapport.recommend.cooccurrence import bought_together_lists
from rapport.recommend.data import Snapshot
from rapport.recommend.lists import KindLists
from rapport.recommend.personal import personal_lists
from rapport.recommend.popular import new_arrival_lists, popular_lists, popularity
from rapport.recommend.strategies import BuildOptions

# (stage name, stages done, stages in all)
Progress = Callable[[str, int, int], None]

STAGES = ("popular", "new_arrivals", "bought_together", "compatible", "personal")


@dataclass
class Model:
    snapshot: Snapshot
    lists: dict[str, KindLists]
    personal_model: str
    seconds: dict[str, float] = field(default_factory=dict)
    compatible_categories: KindLists | None = None

    def get(self, kind: str, key: str) -> list[tuple[str, float]]:
        found = self.lists.get(kind)
        return [] if found is None else found.get(key, self.snapshot.catalog.ids)


def fit(snapshot: Snapshot, options: BuildOptions, progress: Progress | None = None) -> Model:
    """Every list from one snapshot; ``seconds`` says where the time went."""
    report = progress or (lambda stage, done, total: None)
    seconds: dict[str, float] = {}
    lists: dict[str, KindLists] = {}

    def timed(stage: str, started: float) -> None:
        seconds[stage] = round(time.perf_counter() - started, 3)
        report(stage, STAGES.index(stage) + 1, len(STAGES))

    t = time.perf_counter()
    pop = popularity(snapshot, options)
    lists["popular"] = popular_lists(snapshot, pop, options)
    timed("popular", t)
    t = time.perf_counter()
    lists["new_arrivals"] = new_arrival_lists(snapshot, pop, options)
    timed("new_arrivals", t)
    t = time.perf_counter()
    lists["bought_together"] = bought_together_lists(snapshot, options)
    timed("bought_together", t)
    t = time.perf_counter()
    lists["compatible"], related = compatible_lists(snapshot, lists["popular"], options)
    timed("compatible", t)
    t = time.perf_counter()
    lists["personal"], model_name = personal_lists(snapshot, options)
    timed("personal", t)
    return Model(snapshot, lists, model_name, seconds, related)
