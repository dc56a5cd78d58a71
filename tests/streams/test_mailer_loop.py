"""The mailer's loop on stand-ins: an error no retry passes stops it without cutting off
the transactions in flight, and leaves the record uncommitted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.errors import StreamsError
from streams.mailer import MailerLoop
from streams.mailer_metrics import MailerMetrics
from streams.send_failures import Source
from triggers import SendRequest

from .mailer_support import send_request


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes = b"u"


@dataclass
class OneBatch:
    """A consumer that hands out ``records`` once, then nothing; records commits."""

    records: list[Record]
    commits: list[dict[Any, int]] = field(default_factory=list)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Record]]:
        records, self.records = self.records, []
        if not records:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        return {("sends", 0): records}

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(offsets)


@dataclass
class Deliverer:
    """The first request fails with an error that is no outage; the second takes a while."""

    finished: list[str] = field(default_factory=list)

    async def deliver(self, request: SendRequest, source: Source) -> str:
        if source.offset == 0:
            raise RuntimeError("a bug")
        await asyncio.sleep(0.3 if source.offset == 1 else 0)
        self.finished.append(request.request_id)
        return "delivered"


async def test_an_error_no_retry_passes_stops_the_loop_and_lets_the_others_finish() -> None:
    requests = [send_request(n) for n in range(3)]
    consumer = OneBatch([Record("sends", 0, n, r.to_json()) for n, r in enumerate(requests)])
    deliverer = Deliverer()
    loop = MailerLoop(
        consumer,
        deliverer,
        MailerMetrics(),
        concurrency=4,
        stop=asyncio.Event(),
    )
    with pytest.raises(StreamsError, match="could not be settled"):
        await asyncio.wait_for(loop.run(), 10)
    # the slow one was not cancelled by the failing one
    assert sorted(deliverer.finished) == sorted(r.request_id for r in requests[1:])
    assert consumer.commits == []  # offset 0 is not settled: nothing past it is committed
