"""Property: ``nudge simulate`` and the live worker send the same requests for a stream.

Hypothesis draws random event streams over a few users; each is produced to a live
worker (real broker, real Redis) with the wall clock as event time, and the very same
lines are replayed by the simulator. Both must publish the same set of
(user, rule, request id). The waits are longer than a stream lasts, so every timer falls
due after the last event in both; what is compared is rule logic, dedup, cancellation,
keys, sequences, segments, subscriptions left and rejoined, and the frequency cap, not
clock races. Unsubscribe links are not compared (each side signs at its own moment, the
worker with its key, the simulator with the development key): every marketing send's
link must verify to its own user.

The races are tested apart: follow-ups (a purchase, a second cart add) published when
the wall clock reaches their event time, just before a cart deadline and across the
whole-second boundary before the deadline's second, must agree too. At or after a
deadline within its second they do not yet (an expected failure, see that test).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles import UnsubscribeSigner
from triggers import load_rules, simulate
from triggers.firing import MOMENT_MS

from .conftest import UNSUBSCRIBE_KEY, Kafka, RedisView, WorkerEnv, WorkerProcess

RULES = """\
version: 1
guards:
  frequency_cap: {max: 4, window: 1h}
segments:
  big_cart: "profile.cart.item_count >= 3"
subscriptions: [newsletter, reminders]
rules:
  - id: welcome
    kind: on_event
    events: [signup]
    template: welcome
  - id: cart
    kind: absence
    start: [add_to_cart, remove_from_cart]
    cancel: [purchase]
    key: cart_id
    wait: 4s
    condition: "profile.cart.item_count > 0"
    priority: 5
    subscription: reminders
    template: cart_abandonment
  - id: browse
    kind: absence
    start: [product_view]
    cancel: [add_to_cart, purchase]
    key: product_id
    wait: 4s
    subscription: reminders
    template: browse_abandonment
  - id: quiet_user
    kind: inactivity
    wait: 5s
    template: winback
  - id: big_cart
    kind: segment_entry
    segment: big_cart
    template: welcome
  - id: series
    kind: sequence
    start: [signup]
    exit: [purchase]
    subscription: newsletter
    steps:
      - template: welcome
      - delay: 4s
        template: welcome_tips
  - id: receipt
    kind: on_event
    events: [purchase]
    category: transactional
    template: welcome
"""

PRODUCTS = ["p1", "p2", "p3"]
CARTS = ["c1", "c2"]


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[int, str, dict[str, Any]]]:
    """(user index, event type, properties) in order; some events repeated (dedup)."""
    users = draw(st.integers(1, 3))
    out: list[tuple[int, str, dict[str, Any]]] = []
    for user in range(users):
        consent = draw(st.booleans())
        out.append(
            (user, "signup", {"email": f"u{user}@example.com", "consent": {"email": consent}})
        )
    kinds = st.sampled_from(
        [
            "product_view",
            "add_to_cart",
            "remove_from_cart",
            "purchase",
            "page_view",
            "email_open",
            "leave",
            "rejoin",
            "repeat",
        ]
    )
    for _ in range(draw(st.integers(2, 10))):
        user, kind = draw(st.integers(0, users - 1)), draw(kinds)
        product, cart = draw(st.sampled_from(PRODUCTS)), draw(st.sampled_from(CARTS))
        if kind == "repeat":
            out.append((-1, "repeat", {}))
        elif kind in ("add_to_cart", "remove_from_cart"):
            out.append((user, kind, {"product_id": product, "cart_id": cart, "price": 2.0}))
        elif kind == "product_view":
            out.append((user, kind, {"product_id": product}))
        elif kind == "purchase":
            out.append(
                (
                    user,
                    kind,
                    {
                        "order_id": uuid.uuid4().hex[:6],
                        "total": 4.0,
                        "items": [{"product_id": product, "price": 2.0}],
                    },
                )
            )
        elif kind == "page_view":
            out.append((user, kind, {"url": "/"}))
        elif kind == "leave":
            out.append((user, "unsubscribe", {"category": "reminders"}))
        elif kind == "rejoin":
            consent = {"channel": "email", "granted": True, "category": "reminders"}
            out.append((user, "consent", consent))
        else:
            out.append((user, kind, {"message_id": "m"}))
    return out


def materialise(stream: list[tuple[int, str, dict[str, Any]]], tag: str) -> list[bytes]:
    """JSON lines with unique ids and wall-clock times; ``repeat`` resends the last line."""
    lines: list[bytes] = []
    for user, kind, props in stream:
        if kind == "repeat":
            if lines:
                lines.append(lines[-1])
            continue
        lines.append(
            orjson.dumps(
                {
                    "event_id": uuid.uuid4().hex,
                    "type": kind,
                    "user_id": f"{tag}-u{user}",
                    "ts": datetime.now(UTC).isoformat(),
                    "properties": props,
                }
            )
        )
        time.sleep(0.01)
    return lines


async def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for line in lines:
            await producer.send_and_wait(topic, line, key=orjson.loads(line)["user_id"].encode())
    finally:
        await producer.stop()


async def applied(view: RedisView, expected: dict[str, int]) -> bool:
    for user, count in expected.items():
        profile = (await view.profile(user)).profile
        if profile is None or sum(profile.counts.values()) < count:
            return False
    return True


async def live_sends(env: WorkerEnv, view: RedisView, tag: str, lines: list[bytes]) -> set[Any]:
    events: dict[str, set[str]] = {}
    for line in lines:
        event = orjson.loads(line)
        events.setdefault(event["user_id"], set()).add(event["event_id"])
    await view.wait_until(lambda: applied(view, {u: len(ids) for u, ids in events.items()}))
    users = set(events)
    deadline = time.monotonic() + 60
    while True:  # every timer of these users has fired (and been completed)
        pending = [t for u in users for t in await view.pending(u)]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert not pending, pending
    kafka = Kafka(env.bootstrap)
    records = await kafka.read_all(env.send_topic)
    sends = [orjson.loads(r.value) for r in records]
    ours = [s for s in sends if s["user_id"].startswith(f"{tag}-")]
    worker_signer = UnsubscribeSigner([UNSUBSCRIBE_KEY.encode()])
    now = datetime.now(UTC)
    assert all(link_verifies(worker_signer, s["user_id"], s["headers"], now) for s in ours)
    return {(s["user_id"], s["rule_id"], s["request_id"]) for s in ours}


async def sent_live(env: WorkerEnv, redis_url: str, tag: str, lines: list[bytes]) -> set[Any]:
    """:func:`live_sends` with a Redis client of its own."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        return await live_sends(env, RedisView(client, env.keys), tag, lines)
    finally:
        await client.aclose()


def link_verifies(
    signer: UnsubscribeSigner, user_id: str, headers: dict[str, str], now: datetime
) -> bool:
    """Whether a send's one-click link (marketing mail only) verifies to ``user_id``."""
    link = headers.get("List-Unsubscribe")
    if link is None:
        return True
    token = link.removeprefix("<https://example.com/u/").removesuffix(">")
    return signer.verify(token, now).user_id == user_id


def test_simulate_and_live_worker_agree(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    redis_url: str,
) -> None:
    env = worker_env(rules=RULES)
    start_worker(env)
    rules = load_rules(env.config_dir)

    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(stream=streams())
    def agree(stream: list[tuple[int, str, dict[str, Any]]]) -> None:
        tag = uuid.uuid4().hex[:8]
        lines = materialise(stream, tag)
        asyncio.run(produce(env.bootstrap, env.events_topic, lines))
        simulated = asyncio.run(simulate(rules, lines, until=datetime(2100, 1, 1, tzinfo=UTC)))
        expected = {(s.user_id, s.rule_id, s.request_id) for s in simulated.sends}
        for send in simulated.sends:  # each verifies as of its own virtual moment
            assert link_verifies(rules.unsubscribe, send.user_id, send.headers, send.created_at)

        assert asyncio.run(sent_live(env, redis_url, tag, lines)) == expected

    agree()


BOUNDARY_RULES = """\
version: 1
rules:
  - id: cart
    kind: absence
    start: [add_to_cart]
    cancel: [purchase]
    wait: 2s
    condition: "profile.cart.item_count > 0"
    template: cart_abandonment
  - id: receipt
    kind: on_event
    events: [purchase]
    category: transactional
    template: welcome
"""
#: the cart rule's wait (ms)
CART_WAIT_MS = 2000
#: where a deadline falls within its second (ms): at the very start, just after, midway
#: and past it; at most 600 so a live event before the deadline reaches the worker well
#: before the sweep that fires that second (just after it ends)
DEADLINE_PHASES = [0, 1, 250, 500, 600]


def before_deadline(deadline_ms: int) -> list[int]:
    """Times for an event racing a deadline from before it: 1 ms and 500 ms early, the
    last millisecond of the second before the deadline's, the first of its own."""
    second = deadline_ms - deadline_ms % MOMENT_MS
    early = (deadline_ms - 1, deadline_ms - 500, second - 1, second)
    return sorted({t for t in early if t < deadline_ms})


def at_or_after_deadline(deadline_ms: int) -> list[int]:
    """Times for an event racing a deadline from at or after it, within its second."""
    return [deadline_ms, deadline_ms + 1, deadline_ms + 399]


#: per user: (deadline phase, which of the racing times, follow-up type)
Plan = list[tuple[int, int, str]]


@st.composite
def races(draw: st.DrawFn) -> Plan:
    """Per user, a cart add and a follow-up racing its timer: a purchase cancelling it or
    a second add moving it."""
    kinds = st.sampled_from(["purchase", "add_to_cart"])
    return [
        (draw(st.sampled_from(DEADLINE_PHASES)), draw(st.integers(0, 3)), draw(kinds))
        for _ in range(draw(st.integers(1, 3)))
    ]


def race_events(
    plan: Plan, tag: str, start_ms: int, racing: Callable[[int], list[int]]
) -> list[tuple[int, bytes]]:
    """(epoch ms, line) of each user's signup, cart add and follow-up, in time order: the
    cart's deadline falls at its phase within a second starting 1 to 2 s after
    ``start_ms``, the follow-up at the picked one of the ``racing`` times."""
    base = start_ms - start_ms % MOMENT_MS + 2 * MOMENT_MS
    timed = []
    for user, (phase, pick, follow_up) in enumerate(plan):
        added = base + phase
        times = racing(added + CART_WAIT_MS)
        cart = {"product_id": "p1", "cart_id": "c1", "price": 2.0}
        second = {**cart, "product_id": "p2"}
        if follow_up == "purchase":
            second = {"order_id": f"o{user}", "total": 2.0, "items": [cart]}
        signup = {"email": f"u{user}@example.com", "consent": {"email": True}}
        for at, kind, props in [
            (base - 500, "signup", signup),
            (added, "add_to_cart", cart),
            (times[pick % len(times)], follow_up, second),
        ]:
            event = {
                "event_id": uuid.uuid4().hex,
                "type": kind,
                "user_id": f"{tag}-u{user}",
                "ts": datetime.fromtimestamp(at / 1000, tz=UTC).isoformat(),
                "properties": props,
            }
            timed.append((at, orjson.dumps(event)))
    return sorted(timed, key=lambda item: item[0])


async def produce_on_time(bootstrap: str, topic: str, timed: list[tuple[int, bytes]]) -> None:
    """Publish each line once the wall clock reaches its event time, so a caught-up worker
    meets the race as it happens."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for at, line in timed:
            await asyncio.sleep(max(at / 1000 - time.time(), 0))
            await producer.send_and_wait(topic, line, key=orjson.loads(line)["user_id"].encode())
    finally:
        await producer.stop()


def race_outcomes(
    env: WorkerEnv, redis_url: str, plan: Plan, racing: Callable[[int], list[int]]
) -> tuple[set[Any], set[Any]]:
    """Publish ``plan``'s events on time to the running worker; (live sends, simulated)."""
    tag = uuid.uuid4().hex[:8]
    timed = race_events(plan, tag, int(time.time() * 1000), racing)
    lines = [line for _, line in timed]
    asyncio.run(produce_on_time(env.bootstrap, env.events_topic, timed))
    rules = load_rules(env.config_dir)
    simulated = asyncio.run(simulate(rules, lines, until=datetime(2100, 1, 1, tzinfo=UTC)))
    expected = {(s.user_id, s.rule_id, s.request_id) for s in simulated.sends}

    return asyncio.run(sent_live(env, redis_url, tag, lines)), expected


def test_simulate_and_live_worker_agree_on_deadline_races(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    redis_url: str,
) -> None:
    """Follow-ups land just before cart deadlines and across whole-second boundaries,
    published when the wall clock reaches their time; the simulator, replaying the very
    lines, and the live worker send the same requests."""
    env = worker_env(rules=BOUNDARY_RULES)
    start_worker(env)

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(plan=races())
    def agree(plan: Plan) -> None:
        live, expected = race_outcomes(env, redis_url, plan, before_deadline)
        assert live == expected

    agree()


def test_simulate_and_live_worker_agree_on_events_at_and_after_deadlines(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    redis_url: str,
) -> None:
    """A purchase exactly at its cart's deadline, one 1 ms after, a second add 399 ms
    after (all within the deadline's second): both apply the event first, since a
    moment's timers fire once the moment (the second) has ended. (The simulator once
    fired them first and sent reminders the worker did not.)"""
    env = worker_env(rules=BOUNDARY_RULES)
    start_worker(env)
    plan = [(0, 0, "purchase"), (250, 1, "purchase"), (250, 2, "add_to_cart")]
    live, expected = race_outcomes(env, redis_url, plan, at_or_after_deadline)
    assert live == expected
