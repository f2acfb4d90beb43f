"""The shapes a backtest's columns come in, shared by the loaders: :mod:`routing.rules.columns` (the ORM, any
database) and :mod:`routing.rules.sql` (PostgreSQL's array aggregates). Kept apart so neither loader imports the
other's module for them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from routing.rules.features import raw_score_keys
from routing.rules.language import Categorical, Column, Mixed

HISTORY = ("author.prior_violations", "author.prior_reviews")
ACCOUNT_FIELDS = ("author.strikes", "author.labels", "author.account_age_days")


class ItemColumns:
    """Stored items of a period as columns, loaded in id order, only the fields a backtest needs."""

    def __init__(self, ids: np.ndarray, received_day: np.ndarray, columns: dict[str, Column]):
        self.ids = ids
        self.received_day = received_day
        self.columns = columns

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Wanted:
    """What the rule sets read of an item."""

    scores: dict[str, str]  # rule name -> the key stored in ClassifierScore.scores
    metadata: list[str]
    text: bool
    media: bool
    history: bool
    scored: bool
    media_match: bool = False
    account: bool = False

    @classmethod
    def of(cls, names: Iterable[str]) -> Wanted:
        names = set(names)
        raw = raw_score_keys()
        return cls(
            scores={name: raw[name] for name in sorted(names) if name in raw},
            metadata=sorted(n.removeprefix("metadata.") for n in names if n.startswith("metadata.")),
            text="text" in names,
            media="media_count" in names,
            history=bool(names & set(HISTORY)),
            scored="scored" in names,
            media_match=any(n.startswith("media.") for n in names),
            account=bool(names & set(ACCOUNT_FIELDS)),
        )


@dataclass
class Loaded:
    """What a loader read, one entry per item in id order."""

    ids: np.ndarray
    day: np.ndarray  # the received date (UTC) as a proleptic ordinal, for daily caps
    report_count: np.ndarray
    strings: dict[str, Categorical]  # ITEM_STRINGS
    text: Categorical | None = None
    media: np.ndarray | None = None
    history: tuple[np.ndarray, np.ndarray] | None = None  # prior violations, prior reviews
    metadata: dict[str, Mixed] | None = None


# Score rows as loaded, in the order they merge (backends from least to most preferred, each in the order
# written): (item ids, one value array per stored key, NaN where a row lacks the key).
ScoreRows = list[tuple[np.ndarray, np.ndarray]]
