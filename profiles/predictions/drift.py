"""Has the live population moved away from the one a model was trained on?

The population stability index (PSI) compares the share of live values in each bin of a
training :class:`~profiles.predictions.model.Distribution` with the share the training
rows had there: ``sum((actual - expected) * ln(actual / expected))`` over the bins. Read
it as: below 0.1 the population is stable, 0.1 to 0.2 is worth watching, above 0.2 it has
moved enough that the model's scores should not be trusted without retraining.

:class:`DriftMonitor` keeps the most recent scored rows in a fixed-size ring and computes
the PSI of every feature and every numeric score against the model's training
distributions. Pure: no clock, no I/O; the caller decides how often to compute.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from profiles.predictions.features import FeatureRow
from profiles.predictions.model import TARGETS, Distribution, Model, Scores

__all__ = [
    "DRIFTED",
    "EPSILON",
    "WATCH",
    "DriftMonitor",
    "DriftStatus",
    "bin_shares",
    "distribution",
    "drift_status",
    "psi",
]

#: PSI from which a quantity is worth watching
WATCH = 0.1
#: PSI from which a quantity has drifted (retrain)
DRIFTED = 0.2
#: the share an empty bin counts as, on either side. Without it one empty bin makes the
#: index infinite (``ln 0``); 1e-4 (one row in ten thousand) keeps a bin the training data
#: never filled from dominating unless live rows really land there.
EPSILON = 1e-4

DriftStatus = Literal["ok", "watch", "drifted"]

_Array = npt.NDArray[np.float64]


def drift_status(value: float) -> DriftStatus:
    """``drifted`` above :data:`DRIFTED`, ``watch`` from :data:`WATCH`, else ``ok``."""
    if value > DRIFTED:
        return "drifted"
    return "watch" if value >= WATCH else "ok"


def _bins(edges: Sequence[float], values: _Array) -> npt.NDArray[np.intp]:
    """The bin of each value: bin ``i`` holds ``edges[i] <= x < edges[i + 1]``."""
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    return np.searchsorted(inner, values, side="right")


def bin_shares(edges: Sequence[float], values: Sequence[float] | _Array) -> list[float]:
    """The share of ``values`` in each bin of ``edges`` (left-closed bins, outer edges
    infinite); training and monitoring must both bin this way."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("bin_shares needs at least one value")
    counts = np.bincount(_bins(edges, array), minlength=len(edges) - 1)
    return [float(c) / array.size for c in counts]


def distribution(values: Sequence[float] | _Array, *, bins: int = 10) -> Distribution:
    """The training distribution of ``values``: edges at its quantiles, outer edges
    infinite, for :func:`bin_shares`' left-closed bins.

    Repeated quantiles (a count that is mostly zero has 0 for most of them) merge into one
    edge, and a value holding at least a ``1 / bins`` share gets a bin of its own: the
    next edge is the next larger value seen. Otherwise a feature that is zero for 95% of
    users would have a single bin ``[0, inf)`` and its drift towards non-zero would not
    show.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("distribution needs at least one value")
    quantiles = np.quantile(array, np.linspace(0, 1, bins + 1)[1:-1])
    distinct, counts = np.unique(array, return_counts=True)
    inner = {float(q) for q in quantiles}
    for at in np.flatnonzero(counts * bins >= array.size):
        inner |= {float(v) for v in distinct[at : at + 2]}
    edges = (-math.inf, *sorted(inner), math.inf)
    return Distribution(edges=edges, proportions=tuple(bin_shares(edges, array)))


def psi(expected: Distribution, actual_values: Sequence[float] | _Array) -> float:
    """The population stability index of ``actual_values`` against ``expected``, binned
    with ``expected``'s edges; a share of zero on either side counts as :data:`EPSILON`.

    Identical distributions give 0; it grows without bound as they part.
    """
    actual = np.maximum(np.asarray(bin_shares(expected.edges, actual_values)), EPSILON)
    trained = np.maximum(np.asarray(expected.proportions, dtype=np.float64), EPSILON)
    return float(np.sum((actual - trained) * np.log(actual / trained)))


class DriftMonitor:
    """The last ``window`` scored rows of one model, and their PSI per quantity.

    Watches every feature and every numeric score the model has a training distribution
    for (all of them for a model that keeps the protocol): PSI over 38 columns of 10,000
    rows is a few milliseconds, so there is no need to pick the model's strongest
    features. A user scored twice occupies two rows. Memory is one float64 array of
    ``window`` x columns, allocated once (10,000 x 38: 3 MB).

    :meth:`observe` is O(rows) and cheap; :meth:`psi` bins the whole window, so call it
    on a schedule (every few seconds, or when scraped), not per batch. Safe to share
    between the thread that observes and one that computes.
    """

    def __init__(self, model: Model, *, window: int = 10_000, min_rows: int = 500) -> None:
        if window < 1 or min_rows < 1:
            raise ValueError("window and min_rows must be positive")
        self.version = model.version
        self.window = window
        #: below this many rows :meth:`psi` reports nothing: with ``n`` rows in ``k`` bins
        #: an undrifted sample's PSI is about ``(k - 1) / n`` by chance alone (0.02 for
        #: ten bins and 500 rows), so fewer rows would raise false alarms
        self.min_rows = min_rows
        found = model.distributions()
        features = [(i, f) for i, f in enumerate(model.features) if f in found]
        targets = [t for t in TARGETS if t in found]
        self._feature_index = [i for i, _ in features]
        self._targets = targets
        self._names = [*(f for _, f in features), *targets]
        self._expected = [found[name] for name in self._names]
        self._target_slice = slice(len(self._feature_index), len(self._names))
        self._ring: _Array = np.zeros((window, len(self._names)), dtype=np.float64)
        self._next = 0
        self._filled = 0
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        """The quantities watched: features in model order, then numeric scores."""
        return tuple(self._names)

    def __len__(self) -> int:
        """Rows in the window now (at most ``window``)."""
        return self._filled

    def observe(self, rows: Sequence[FeatureRow], scores: Sequence[Scores]) -> None:
        """Add one batch: each user's feature row (model feature order) and scores."""
        if len(rows) != len(scores):
            raise ValueError(f"{len(rows)} rows but {len(scores)} scores")
        if not rows:
            return
        block = np.empty((len(rows), len(self._names)), dtype=np.float64)
        block[:, : len(self._feature_index)] = np.asarray(rows, dtype=np.float64)[
            :, self._feature_index
        ]
        block[:, self._target_slice] = [[getattr(s, t) for t in self._targets] for s in scores]
        with self._lock:
            self._write(block[-self.window :])

    def _write(self, block: _Array) -> None:
        """Copy ``block`` (at most ``window`` rows) into the ring, wrapping at its end."""
        start, count = self._next, len(block)
        first = min(count, self.window - start)
        self._ring[start : start + first] = block[:first]
        self._ring[: count - first] = block[first:]
        self._next = (start + count) % self.window
        self._filled = min(self.window, self._filled + count)

    def psi(self) -> dict[str, float]:
        """The PSI of each watched quantity over the window, by name; empty while the
        window holds fewer than ``min_rows`` rows."""
        with self._lock:
            if self._filled < self.min_rows:
                return {}
            window = self._ring[: self._filled].copy()
        return {
            name: psi(expected, window[:, column])
            for column, (name, expected) in enumerate(zip(self._names, self._expected, strict=True))
        }
