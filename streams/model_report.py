"""``nudge model report --live``: how far a running worker's scored users have drifted
from its model's training data, read from the worker's ``/metrics``."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

import click
from prometheus_client.parser import text_string_to_metric_families

from profiles.predictions.drift import DRIFTED, WATCH, DriftStatus, drift_status
from streams.errors import StreamsError
from streams.metrics import DRIFT_PSI, DRIFT_ROWS, PREDICTIONS
from streams.settings import Settings

__all__ = [
    "DriftRow",
    "LiveDrift",
    "ReportError",
    "fetch_metrics",
    "live_drift",
    "metrics_url",
    "render_drift",
    "report",
]


class ReportError(StreamsError):
    """The worker cannot be reached, or exports no prediction metrics."""


@dataclass(frozen=True)
class DriftRow:
    model: str
    #: a feature name, or a numeric score's name
    feature: str
    psi: float

    @property
    def status(self) -> DriftStatus:
        return drift_status(self.psi)


@dataclass(frozen=True)
class LiveDrift:
    """What a worker's metrics say about its model's drift."""

    #: strongest drift first
    rows: list[DriftRow]
    #: users scored, by model version (since the worker started)
    scored: dict[str, float] = field(default_factory=dict)
    #: recent scored users the PSI is computed over, by model version
    window: dict[str, float] = field(default_factory=dict)


def metrics_url(settings: Settings) -> str:
    """The worker's ``/metrics`` address from the settings (a wildcard host is asked on
    this machine)."""
    host = "localhost" if settings.web_host in ("0.0.0.0", "::", "") else settings.web_host
    return f"http://{host}:{settings.web_port}/metrics"


def fetch_metrics(url: str, *, timeout: float = 5.0) -> str:
    """The metrics page at ``url``, as text."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bytes(response.read()).decode("utf-8")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ReportError(f"cannot read the worker's metrics at {url}: {exc}") from exc


def live_drift(text: str) -> LiveDrift:
    """The drift figures in a metrics page."""
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ReportError(f"not a Prometheus metrics page: {exc}") from exc
    rows: list[DriftRow] = []
    drift = LiveDrift(rows=rows)
    for family in families:
        for sample in family.samples:
            model = sample.labels.get("model", "")
            if sample.name == DRIFT_PSI:
                rows.append(DriftRow(model, sample.labels.get("feature", ""), sample.value))
            elif sample.name == f"{PREDICTIONS}_total":
                drift.scored[model] = sample.value
            elif sample.name == DRIFT_ROWS:
                drift.window[model] = sample.value
    rows.sort(key=lambda r: (-r.psi, r.model, r.feature))
    return drift


def render_drift(drift: LiveDrift) -> str:
    """The table ``nudge model report --live`` prints, flagged and strongest first."""
    lines = [
        f"model {model}: {drift.scored.get(model, 0):.0f} users scored, PSI over the last "
        f"{drift.window.get(model, 0):.0f}"
        for model in sorted({r.model for r in drift.rows})
    ]
    name = max([len("feature / score"), *(len(r.feature) for r in drift.rows)])
    version = max([len("model"), *(len(r.model) for r in drift.rows)])
    lines.append(f"{'model':<{version}}  {'feature / score':<{name}}  {'PSI':>7}  status")
    for r in drift.rows:
        flag = "" if r.status == "ok" else r.status
        line = f"{r.model:<{version}}  {r.feature:<{name}}  {r.psi:>7.3f}  {flag}"
        lines.append(line.rstrip())
    drifted = sum(1 for r in drift.rows if r.status == "drifted")
    watch = sum(1 for r in drift.rows if r.status == "watch")
    lines.append(
        f"{drifted} drifted (PSI > {DRIFTED}), {watch} to watch ({WATCH}-{DRIFTED})"
        + ("; retrain with `nudge model train`" if drifted else "")
    )
    return "\n".join(lines)


def _no_drift_message(drift: LiveDrift, url: str) -> str:
    if not drift.scored:
        return f"{url} exports no prediction metrics: is a model loaded in that worker?"
    counts = ", ".join(
        f"model {m}: {n:.0f} scored, {drift.window.get(m, 0):.0f} in the window"
        for m, n in sorted(drift.scored.items())
    )
    return f"{url} has no drift figures yet ({counts}): too few users scored so far"


@click.command("report")
@click.option("--live", is_flag=True, help="Read the drift of a running worker's model.")
@click.option(
    "--url",
    help="The worker's metrics address (default: from NUDGE_WEB_HOST / NUDGE_WEB_PORT, "
    "http://localhost:6066/metrics).",
)
def report(live: bool, url: str | None) -> None:
    """Show, per feature and score, how far live users have drifted from the training
    data (population stability index): above 0.2 is drifted (retrain), 0.1 to 0.2 is
    worth watching. Exit 2 when the worker cannot be read or has no drift figures."""
    if not live:
        raise click.UsageError("only the live report exists: pass --live")
    url = url or metrics_url(Settings())
    try:
        drift = live_drift(fetch_metrics(url))
    except ReportError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
    if not drift.rows:
        click.echo(f"error: {_no_drift_message(drift, url)}", err=True)
        raise SystemExit(2)
    click.echo(render_drift(drift))
