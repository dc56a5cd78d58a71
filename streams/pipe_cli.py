"""The two ends of the pipe on the command line: ``nudge collector`` and ``nudge mailer``."""

from __future__ import annotations

import asyncio
import sys

import click

from streams.errors import StreamsError
from streams.logs import configure_logging
from streams.settings import Settings

__all__ = ["collector", "mailer"]


@click.command()
@click.option("--host", help="Address to listen on (default: NUDGE_COLLECTOR_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: NUDGE_COLLECTOR_PORT, 8080).")
def collector(host: str | None, port: int | None) -> None:
    """Run the HTTP collector: nudge events and Segment calls in, the open pixel, click
    links and one-click unsubscribe; everything onto the events topic.

    Refuses to start without NUDGE_COLLECTOR_WRITE_KEYS and NUDGE_UNSUBSCRIBE_KEY.
    """
    from streams.collector import refusal, serve

    given = {"collector_host": host, "collector_port": port}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    problem = refusal(settings)
    if problem is not None:
        for line in problem.splitlines():
            click.echo(f"error: {line}", err=True)
        sys.exit(2)
    configure_logging(settings, default_format="json")
    try:
        asyncio.run(serve(settings))
    except StreamsError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
def mailer() -> None:
    """Deliver the send requests over SMTP (NUDGE_SMTP_URL), each request id at most once.

    Reads NUDGE_SEND_TOPIC in the consumer group <NUDGE_APP_ID>-mailer; what it cannot
    deliver goes to NUDGE_SEND_FAILURES_TOPIC, a hard bounce also as a bounce event. Serves
    /health/live, /health/ready and /metrics on NUDGE_MAILER_WEB_PORT. SIGTERM or Ctrl-C
    lets the transactions in flight finish; a second one stops at once.
    """
    from streams.mailer import run_mailer
    from streams.smtp import SmtpUrlError, parse_smtp_url

    settings = Settings()
    try:
        url = parse_smtp_url(settings.smtp_url.get_secret_value())
    except SmtpUrlError as exc:
        click.echo(f"error: NUDGE_SMTP_URL: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings, default_format="json")
    try:
        asyncio.run(run_mailer(settings, url))
    except StreamsError as exc:
        raise click.ClickException(str(exc)) from exc
