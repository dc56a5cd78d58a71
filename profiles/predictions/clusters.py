"""Behavioural clusters: K-Means on standardised ``log1p`` behaviour features, the number
of clusters chosen by silhouette, each cluster named plainly from its centroid.

Names read the centroid in original units: whether the cluster's users bought, how
often (one-time, occasional, regular, frequent), how much an order is worth against the median
buyer's (low / high spenders), whether they lapsed (no order for twice the horizon),
and, only when two clusters would otherwise share a name, how often they visit and
whether they read mail; a name still shared gets a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from profiles.predictions.features import FEATURES
from profiles.predictions.fit import TrainingError, signed_log1p

__all__ = ["CLUSTER_FEATURES", "FittedClusters", "cluster_columns", "fit_clusters"]

Floats = NDArray[np.float64]

#: what the clusters are made of
CLUSTER_FEATURES: tuple[str, ...] = (
    "recency_days",
    "orders_lifetime",
    "average_order_value",
    "active_days_90d",
    "views_90d",
    "opens_90d",
    "clicks_90d",
)
#: rows the silhouette of each k is measured on (it is quadratic in rows)
SILHOUETTE_SAMPLE = 3000


@dataclass(frozen=True)
class FittedClusters:
    model: Any
    names: list[str]
    sizes: list[int]
    silhouettes: dict[int, float]
    #: feature -> centroid per cluster, original units
    centroids: dict[str, list[float]]


def cluster_columns(x: NDArray[Any]) -> Floats:
    """The transformed cluster features of full feature rows."""
    columns = [FEATURES.index(f) for f in CLUSTER_FEATURES]
    return signed_log1p(np.asarray(x, dtype=np.float64)[:, columns])


def _kmeans(k: int, seed: int) -> Any:
    return make_pipeline(StandardScaler(), KMeans(n_clusters=k, n_init=4, random_state=seed))


def fit_clusters(
    x: NDArray[Any],
    *,
    k_range: tuple[int, int] = (3, 8),
    horizon_days: int = 30,
    seed: int = 0,
) -> FittedClusters:
    """Cluster feature rows ``x``, trying every k in ``k_range`` (inclusive)."""
    data = cluster_columns(x)
    low, high = k_range
    if len(data) <= high:
        raise TrainingError(f"{len(data)} users are too few to try up to {high} clusters")
    rng = np.random.default_rng(seed)
    sample = data[rng.choice(len(data), min(len(data), SILHOUETTE_SAMPLE), replace=False)]
    silhouettes: dict[int, float] = {}
    for k in range(low, high + 1):
        labels = _kmeans(k, seed).fit_predict(sample)
        silhouettes[k] = float(silhouette_score(sample, labels)) if len(set(labels)) > 1 else -1
    best = max(silhouettes, key=lambda k: (silhouettes[k], -k))
    model = _kmeans(best, seed).fit(data)
    labels = model.predict(data)
    scaler, kmeans = model[0], model[-1]
    centres = np.expm1(scaler.inverse_transform(kmeans.cluster_centers_))
    centroids = {f: [float(v) for v in centres[:, i]] for i, f in enumerate(CLUSTER_FEATURES)}
    aov = np.asarray(x, dtype=np.float64)[:, FEATURES.index("average_order_value")]
    median_order = float(np.median(aov[aov > 0])) if (aov > 0).any() else 0.0
    return FittedClusters(
        model=model,
        names=_unique(
            [_descriptors(c, median_order, horizon_days) for c in _rows(centroids, best)]
        ),
        sizes=[int(n) for n in np.bincount(labels, minlength=best)],
        silhouettes=silhouettes,
        centroids=centroids,
    )


def _rows(centroids: dict[str, list[float]], k: int) -> list[dict[str, float]]:
    return [{f: values[i] for f, values in centroids.items()} for i in range(k)]


def _descriptors(c: dict[str, float], median_order: float, horizon_days: int) -> list[str]:
    """The base name, then extra words that tell apart clusters sharing it."""
    visits = "visiting often" if c["active_days_90d"] >= 6 else "visiting rarely"
    mail = "reading mail" if c["opens_90d"] >= 1 else "ignoring mail"
    if c["orders_lifetime"] < 0.5:
        who = "browsers" if c["active_days_90d"] >= 1 else "dormant sign-ups"
        return [f"{who} who never bought", mail, visits]
    orders = c["orders_lifetime"]
    often = (
        "one-time"
        if orders < 1.5
        else "occasional"
        if orders < 3
        else "regular"
        if orders < 6
        else "frequent"
    )
    value = c["average_order_value"]
    spend = (
        "high spenders"
        if value >= 1.3 * median_order
        else "low spenders"
        if value <= 0.7 * median_order
        else "buyers"
    )
    lapsed = "lapsed " if c["recency_days"] > 2 * horizon_days else ""
    return [f"{lapsed}{often} {spend}", visits, mail]


def _unique(descriptors: list[list[str]]) -> list[str]:
    names = [d[0] for d in descriptors]
    for extra in range(1, max(len(d) for d in descriptors)):
        shared = {n for n in names if names.count(n) > 1}
        names = [
            ", ".join(d[: extra + 1]) if n in shared else n
            for n, d in zip(names, descriptors, strict=True)
        ]
    shared = {n for n in names if names.count(n) > 1}
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in shared:
            seen[name] = seen.get(name, 0) + 1
            names[i] = f"{name} ({seen[name]})"
    return names
