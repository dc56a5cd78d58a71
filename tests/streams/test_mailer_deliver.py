"""The delivery policy on the twins: in-memory ledger, transport and reporter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiokafka.errors import KafkaConnectionError

from streams.deliver import Abandoned, Deliverer, RetryPolicy
from streams.deliveries import Delivery, InMemoryDeliveryLedger
from streams.mailer_metrics import MailerMetrics
from streams.ratelimit import DomainRateLimiter
from streams.send_failures import DETAIL_LIMIT, InMemoryReporter, SendFailure, Source
from streams.smtp import (
    DeliveryUnknown,
    Envelope,
    InMemoryTransport,
    SmtpReply,
    SmtpUnavailable,
    SmtpUnsupported,
)

from .conftest import eventually
from .mailer_support import parse, send_request

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
SOURCE = Source("sends", 2, 41)
MAX_ATTEMPTS = 3


def answers(*replies: SmtpReply | Exception) -> Callable[[Envelope], SmtpReply | Exception | None]:
    """A script: these answers to the first transactions, then acceptance."""
    queue: Iterator[SmtpReply | Exception] = iter(replies)
    return lambda _envelope: next(queue, None)


class FlakyReporter(InMemoryReporter):
    """Fails its first ``failures`` reports as a broker that is down would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures_left = failures

    async def report(self, failure: SendFailure, bounce: dict[str, object] | None = None) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise KafkaConnectionError("broker down")
        await super().report(failure, bounce)


@dataclass
class Mailer:
    ledger: InMemoryDeliveryLedger = field(default_factory=lambda: InMemoryDeliveryLedger(lease=60))
    transport: InMemoryTransport = field(default_factory=InMemoryTransport)
    reporter: InMemoryReporter = field(default_factory=InMemoryReporter)
    metrics: MailerMetrics = field(default_factory=MailerMetrics)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.deliverer = Deliverer(
            ledger=self.ledger,
            transport=self.transport,
            reporter=self.reporter,
            limiter=DomainRateLimiter({}),
            metrics=self.metrics,
            policy=RetryPolicy(0.001, 0.005, MAX_ATTEMPTS),
            stop=self.stop,
            lease_poll=0.005,
            now=lambda: NOW,
        )

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def sent_ids(self) -> list[str]:
        return [str(parse(e.data)["X-Nudge-Request-Id"]) for e in self.transport.sent]


@pytest.fixture
def mailer() -> Mailer:
    return Mailer()


async def test_a_request_is_delivered_once(mailer: Mailer) -> None:
    request = send_request(1)
    assert await mailer.deliverer.deliver(request, SOURCE) == "delivered"
    assert await mailer.deliverer.deliver(request, SOURCE) == "duplicate"
    assert mailer.sent_ids() == [request.request_id]
    assert (mailer.transport.sent[0].sender, mailer.transport.sent[0].recipient) == (
        request.from_email,
        request.to,
    )
    assert await mailer.ledger.get(request.request_id) == Delivery("delivered", 250)
    assert mailer.metric("nudge_mailer_deliveries_total", outcome="delivered") == 1
    assert mailer.metric("nudge_mailer_duplicates_total") == 1
    assert mailer.metric("nudge_mailer_smtp_seconds_count") == 1
    assert mailer.reporter.failures == []


async def test_a_temporary_answer_is_retried(mailer: Mailer) -> None:
    busy = SmtpReply(421, "4.3.2 busy", "data")
    mailer.transport.script = answers(busy, SmtpReply(451, "4.7.1 greylisted", "rcpt"))
    assert await mailer.deliverer.deliver(send_request(1), SOURCE) == "delivered"
    assert len(mailer.transport.sent) == 1
    assert mailer.metric("nudge_mailer_retries_total", reason="deferred") == 2


async def test_temporary_answers_end_in_a_deferred_report(mailer: Mailer) -> None:
    request = send_request(1)
    mailer.transport.script = lambda _e: SmtpReply(452, "4.2.2 mailbox full", "rcpt")
    assert await mailer.deliverer.deliver(request, SOURCE) == "failed"
    (failure,) = mailer.reporter.failures
    assert (failure.reason, failure.code, failure.stage) == ("deferred", 452, "rcpt")
    assert failure.attempts == MAX_ATTEMPTS
    assert mailer.reporter.bounces == []
    assert (await mailer.ledger.get(request.request_id)) == Delivery(
        "failed", 452, "deferred", reported=True
    )


async def test_an_unknown_recipient_is_a_hard_bounce_and_a_bounce_event(mailer: Mailer) -> None:
    request = send_request(1)
    text = "5.1.1 <u1@example.com>: Recipient address rejected: " + "x" * 300
    mailer.transport.script = answers(SmtpReply(550, text, "rcpt"))
    assert await mailer.deliverer.deliver(request, SOURCE) == "failed"
    (failure,) = mailer.reporter.failures
    assert (failure.reason, failure.code, failure.stage, failure.request) == (
        "hard_bounce",
        550,
        "rcpt",
        request,
    )
    assert mailer.reporter.bounces == [
        {
            "event_id": f"bounce-{request.request_id}",
            "type": "bounce",
            "user_id": request.user_id,
            "ts": "2026-03-01T12:30:00Z",
            "properties": {
                "email": request.to,
                "kind": "hard",
                "code": 550,
                "detail": text[:DETAIL_LIMIT],
                "message_id": request.message_id,
            },
        }
    ]
    assert mailer.transport.sent == []
    assert mailer.metric("nudge_mailer_send_failures_total", reason="hard_bounce") == 1
    assert await mailer.deliverer.deliver(request, SOURCE) == "duplicate"
    assert len(mailer.reporter.failures) == 1


async def test_a_refused_message_is_rejected_without_a_bounce(mailer: Mailer) -> None:
    mailer.transport.script = answers(SmtpReply(554, "5.7.1 spam", "data"))
    assert await mailer.deliverer.deliver(send_request(1), SOURCE) == "failed"
    assert [f.reason for f in mailer.reporter.failures] == ["rejected"]
    assert mailer.reporter.bounces == []


async def test_an_outage_is_waited_out_however_long(mailer: Mailer) -> None:
    down = [SmtpUnavailable("ConnectionRefusedError") for _ in range(MAX_ATTEMPTS * 3)]
    mailer.transport.script = answers(*down)
    assert await mailer.deliverer.deliver(send_request(1), SOURCE) == "delivered"
    assert mailer.metric("nudge_mailer_retries_total", reason="unavailable") == len(down)
    assert mailer.reporter.failures == []


async def test_a_transaction_cut_off_after_data_is_never_resent(mailer: Mailer) -> None:
    request = send_request(1)
    mailer.transport.script = answers(DeliveryUnknown("connection lost during DATA"))
    assert await mailer.deliverer.deliver(request, SOURCE) == "failed"
    assert await mailer.deliverer.deliver(request, SOURCE) == "duplicate"
    assert len(mailer.transport.sent) == 1  # the one that may have arrived
    assert [f.reason for f in mailer.reporter.failures] == ["interrupted"]


async def test_a_claim_left_by_a_dead_mailer_is_reported_interrupted(mailer: Mailer) -> None:
    request = send_request(1)
    await mailer.ledger.claim(request.request_id, Delivery.sending())
    mailer.ledger.expire_lease(request.request_id)
    assert await mailer.deliverer.deliver(request, SOURCE) == "failed"
    assert mailer.transport.sent == []
    (failure,) = mailer.reporter.failures
    assert (failure.reason, failure.request, failure.source) == ("interrupted", request, SOURCE)
    assert "may or may not" in failure.detail
    assert await mailer.deliverer.deliver(request, SOURCE) == "duplicate"


async def test_a_claim_under_way_is_waited_for(mailer: Mailer) -> None:
    request = send_request(1)
    await mailer.ledger.claim(request.request_id, Delivery.sending())
    waiting = asyncio.create_task(mailer.deliverer.deliver(request, SOURCE))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    await mailer.ledger.finish(request.request_id, Delivery("delivered", 250))
    assert await waiting == "duplicate"
    assert mailer.transport.sent == []


async def test_the_same_request_twice_at_once_is_sent_once(mailer: Mailer) -> None:
    request = send_request(1)
    outcomes = await asyncio.gather(
        mailer.deliverer.deliver(request, SOURCE), mailer.deliverer.deliver(request, SOURCE)
    )
    assert sorted(outcomes) == ["delivered", "duplicate"]
    assert len(mailer.transport.sent) == 1


async def test_a_failure_recorded_but_not_reported_is_reported(mailer: Mailer) -> None:
    request = send_request(1)
    failed = Delivery("failed", 550, "hard_bounce", detail="5.1.1 user unknown")
    await mailer.ledger.finish(request.request_id, failed)  # then the mailer died
    assert await mailer.deliverer.deliver(request, SOURCE) == "failed"
    assert [(f.reason, f.code, f.detail) for f in mailer.reporter.failures] == [
        ("hard_bounce", 550, "5.1.1 user unknown")
    ]
    assert [b["properties"]["detail"] for b in mailer.reporter.bounces] == ["5.1.1 user unknown"]
    settled = await mailer.ledger.get(request.request_id)
    assert settled is not None and settled.settled and settled.detail is None


async def test_a_broker_outage_delays_the_report_and_loses_nothing() -> None:
    mailer = Mailer(reporter=FlakyReporter(failures=2))
    mailer.transport.script = answers(SmtpReply(550, "5.1.1 unknown", "rcpt"))
    assert await mailer.deliverer.deliver(send_request(1), SOURCE) == "failed"
    assert len(mailer.reporter.failures) == 1
    assert mailer.metric("nudge_mailer_retries_total", reason="store") == 2


async def test_stopping_during_an_outage_abandons_and_gives_the_claim_back(
    mailer: Mailer,
) -> None:
    request = send_request(1)
    mailer.transport.script = lambda _e: SmtpUnavailable("ConnectionRefusedError")
    task = asyncio.create_task(mailer.deliverer.deliver(request, SOURCE))
    await eventually(lambda: mailer.metric("nudge_mailer_retries_total", reason="unavailable"))
    mailer.stop.set()
    with pytest.raises(Abandoned):
        await task
    assert await mailer.ledger.get(request.request_id) is None
    assert mailer.reporter.failures == []


async def test_a_request_that_makes_no_message_is_reported(mailer: Mailer) -> None:
    request = send_request(1, headers={"List-Unsubscribe": "<https://x.example>\r\nBcc: a@b.c"})
    assert await mailer.deliverer.deliver(request, SOURCE) == "failed"
    assert mailer.transport.sent == []
    assert [f.reason for f in mailer.reporter.failures] == ["invalid_request"]


async def test_a_server_without_smtputf8_cannot_take_a_non_ascii_address(mailer: Mailer) -> None:
    mailer.transport.script = answers(SmtpUnsupported("no SMTPUTF8"))
    assert await mailer.deliverer.deliver(send_request(1, to="jürgen@example.com"), SOURCE) == (
        "failed"
    )
    assert [f.reason for f in mailer.reporter.failures] == ["unsupported"]


async def test_a_record_that_is_no_request_is_reported_with_its_source(mailer: Mailer) -> None:
    await mailer.deliverer.report_invalid(b"u9", "to: Field required", SOURCE)
    (failure,) = mailer.reporter.failures
    assert failure.as_dict()["request_id"] is None
    assert failure.as_dict()["source"] == {"topic": "sends", "partition": 2, "offset": 41}
    assert failure.message_key == b"u9"


def test_a_send_failure_names_the_domain_and_carries_the_request() -> None:
    request = send_request(3)
    record = SendFailure("hard_bounce", "5.1.1 unknown", NOW, SOURCE, request, 550, "rcpt", 1)
    document = record.as_dict()
    assert document == {
        "request_id": request.request_id,
        "message_id": request.message_id,
        "user_id": request.user_id,
        "rule_id": request.rule_id,
        "domain": "example.com",
        "reason": "hard_bounce",
        "code": 550,
        "stage": "rcpt",
        "detail": "5.1.1 unknown",
        "attempts": 1,
        "at": "2026-03-01T12:30:00Z",
        "source": {"topic": "sends", "partition": 2, "offset": 41},
        "request": request.model_dump(mode="json"),
    }
    assert record.message_key == request.user_id.encode()


@pytest.mark.parametrize("retry", [1, 2, 5, 40])
def test_backoff_doubles_up_to_its_cap_and_jitter_takes_up_to_half(retry: int) -> None:
    policy = RetryPolicy(first_delay=0.5, max_delay=8.0)
    base = min(8.0, 0.5 * 2 ** (retry - 1))
    assert policy.delay(retry, 0.0) == pytest.approx(base / 2)
    assert base / 2 <= policy.delay(retry, 0.999) <= base
