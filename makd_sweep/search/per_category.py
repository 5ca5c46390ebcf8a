"""One search per (student, loss, seed) category, trials handed out in turn: every method gets the same number of
trials and a searcher that learns from its own trials only (one Optuna TPE study each), instead of one study that
also decides which method the next trial goes to."""

from __future__ import annotations

import pickle
from collections.abc import Callable

from ray.tune.search import Searcher


class PerCategorySearcher(Searcher):
    """A Ray Tune Searcher over searchers: trial k goes to category k mod N, whose own searcher suggests the searched
    keys; the category's keys (student, loss, seed) are fixed in its trials' configs. Saved and restored whole with
    the experiment, so a resumed sweep goes on with the same studies and turn."""

    def __init__(self, categories: list[dict], make: Callable[[int, dict], Searcher], metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.categories = categories
        self.searchers = [make(i, category) for i, category in enumerate(categories)]
        self.owner: dict[str, int] = {}  # trial id -> its category's index
        self.turn = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        fixed = set().union(*self.categories)
        inner = {key: value for key, value in config.items() if key not in fixed}  # what each study samples
        return all([s.set_search_properties(metric, mode, inner, **spec) for s in self.searchers])

    def suggest(self, trial_id: str):
        index = self.turn % len(self.searchers)
        config = self.searchers[index].suggest(trial_id)
        if not isinstance(config, dict):  # None (wait) or Searcher.FINISHED
            return config
        self.turn += 1
        self.owner[trial_id] = index
        return {**config, **self.categories[index]}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        index = self.owner.pop(trial_id, None)
        if index is not None:
            self.searchers[index].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as out:
            pickle.dump(self.__dict__.copy(), out)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as saved:
            self.__dict__.update(pickle.load(saved))
