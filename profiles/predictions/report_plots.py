"""The training report's PNG plots: a reliability diagram and a cumulative gains chart
per probability target, the model beside its naive baselines.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no backend switch), so
importing or calling this module changes no global matplotlib state.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

from profiles.predictions.report_metrics import calibration_bins, gains_curve

__all__ = ["calibration_png", "gains_png"]

Floats = NDArray[np.float64]

_SIZE = (5.2, 4.6)
_DPI = 110
# the model stands out; baselines are quieter, in a fixed order of colours
_STYLES: list[dict[str, Any]] = [
    {"color": "#1f5fa8", "linewidth": 2.2, "marker": "o", "markersize": 4.5, "zorder": 3},
    {"color": "#d9822b", "linewidth": 1.4, "marker": "s", "markersize": 3.5},
    {"color": "#5a9e4b", "linewidth": 1.4, "marker": "^", "markersize": 3.5},
    {"color": "#8e5aa8", "linewidth": 1.4, "marker": "v", "markersize": 3.5},
]
_REFERENCE: dict[str, Any] = {"color": "#888888", "linewidth": 1.0, "linestyle": "--"}


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)  # attaches itself: no global backend is consulted
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _empty(axes: Axes, message: str) -> None:
    """Say in the plot why it has no lines (axes coordinates: any data limits)."""
    axes.text(
        0.5, 0.5, message, ha="center", va="center", color="#8a1c1c", transform=axes.transAxes
    )


def calibration_png(title: str, y_true: NDArray[np.generic], scorers: dict[str, Floats]) -> bytes:
    """Reliability diagram: mean predicted against observed rate per decile of each
    scorer's predictions (first scorer = the model), against the diagonal."""
    figure = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    top = 0.0
    for i, (name, predicted) in enumerate(scorers.items()):
        style = _STYLES[i % len(_STYLES)]
        bins = calibration_bins(y_true, predicted)
        x = [b.mean_predicted for b in bins]
        y = [b.observed for b in bins]
        top = max([top, *x, *y])
        axes.plot(x, y, label=name, **style)
    limit = min(1.0, max(0.05, top * 1.08))
    axes.plot([0, limit], [0, limit], label="perfectly calibrated", **_REFERENCE)
    axes.set(xlim=(0, limit), ylim=(0, limit), title=title)
    axes.set_xlabel("mean predicted probability (decile of predictions)")
    axes.set_ylabel("observed rate")
    axes.grid(alpha=0.3)
    if len(np.asarray(y_true)) == 0:
        _empty(axes, "no held-out rows")
    axes.legend(loc="upper left", fontsize="small")
    return _png(figure)


def gains_png(title: str, y_true: NDArray[np.generic], scorers: dict[str, Floats]) -> bytes:
    """Cumulative gains: share of positives captured against share of users targeted,
    highest predictions first, with random targeting and a perfect ranking as references."""
    figure = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    y = np.asarray(y_true, dtype=np.float64).ravel()
    for i, (name, predicted) in enumerate(scorers.items()):
        style = _STYLES[i % len(_STYLES)]
        share_rows, share_hits = gains_curve(y, predicted)
        axes.plot(share_rows, share_hits, label=name, **{**style, "marker": None})
    if y.size and y.any():
        rate = float(y.mean())
        axes.plot([0, rate, 1], [0, 1, 1], label="perfect ranking", color="#bbbbbb", linewidth=1)
    else:
        _empty(axes, "no positives among the held-out rows")
    axes.plot([0, 1], [0, 1], label="random", **_REFERENCE)
    axes.axvline(0.1, color="#cccccc", linewidth=0.8)
    axes.text(0.105, 0.03, "top 10%", color="#999999", fontsize="small")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), title=title)
    axes.set_xlabel("share of users targeted (highest predictions first)")
    axes.set_ylabel("share of positives captured")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    return _png(figure)
