"""A model trained once per session on a planted-truth history (prediction tests)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from profiles import ScoringConfig
from profiles.predictions.history import parse_events
from profiles.predictions.synthetic import SyntheticHistory
from profiles.predictions.train import TrainResult, train

SCORING = ScoringConfig()


@dataclass(frozen=True)
class Planted:
    history: SyntheticHistory
    result: TrainResult


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    history = SyntheticHistory(users=1500, days=300, seed=3)
    result = train(
        parse_events(history.events()),
        as_of=history.end,
        scoring=SCORING,
        out=tmp_path_factory.mktemp("planted") / "model",
        k_range=(3, 6),
    )
    return Planted(history, result)
