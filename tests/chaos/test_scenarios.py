"""At-least-once under faults: each scenario runs the workload while something breaks,
then the checker accounts for every expected send request (see ``checker``)."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest

from .conftest import Chaos, seed
from .faults import Broker, LatencyProxy, RedisServer, S3Server, Workers, moments

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


async def _at(start: float, moment: float) -> None:
    """Sleep until ``moment`` seconds after ``start`` (monotonic)."""
    await asyncio.sleep(max(0.0, start + moment - time.monotonic()))


async def test_worker_killed_ten_times(chaos: Chaos) -> None:
    workers = chaos.workers()
    await workers.start("w", ready=4)

    async def kill_and_restart(pool: Workers) -> None:
        start = time.monotonic()
        for moment in moments(random.Random(seed()), 10, 2, 75, gap=5):
            await _at(start, moment)
            pool.kill("w")
            await pool.start("w")
        await pool.wait_all_ready()

    await chaos.run("worker SIGKILL x10", kill_and_restart, window=80, workers=workers)


async def test_one_of_two_workers_killed_and_restarted(chaos: Chaos) -> None:
    workers = chaos.workers()
    await workers.start("stays", ready=4)
    await workers.start("killed", ready=1)

    async def kill_one(pool: Workers) -> None:
        rng = random.Random(seed())
        start = time.monotonic()
        for moment in moments(rng, 6, 3, 70, gap=8):
            await _at(start, moment)
            pool.kill("killed")
            await asyncio.sleep(rng.uniform(0.5, 3))
            await pool.start("killed")
        await pool.wait_all_ready()

    await chaos.run("2 workers, 1 SIGKILLed x6", kill_one, window=80, workers=workers)


async def test_redis_killed_and_restarted_and_away_for_30s(chaos: Chaos, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    workers = chaos.workers(redis_url=redis.url)
    try:
        await workers.start("w", ready=4)

        async def break_redis(pool: Workers) -> None:
            start = time.monotonic()
            await _at(start, 12)
            redis.kill()  # a crash, restarted at once from its append-only file
            redis.start()
            await _at(start, 35)
            redis.kill()
            await asyncio.sleep(30)
            redis.start()

        await chaos.run("Redis SIGKILL, then away 30 s", break_redis, window=80, workers=workers)
    finally:
        workers.stop_all()
        redis.stop()


async def test_paused_worker_comes_back_after_its_partitions_moved(chaos: Chaos) -> None:
    workers = chaos.workers()
    paused = await workers.start("paused", ready=4)
    await workers.start("other", ready=1)

    async def pause(pool: Workers) -> None:
        start = time.monotonic()
        for moment in (10, 45):
            await _at(start, moment)
            paused.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(15)  # longer than the session timeout (6 s): a rebalance
            paused.proc.send_signal(signal.SIGCONT)
        await pool.wait_all_ready()

    await chaos.run("worker SIGSTOP 15 s x2", pause, window=80, workers=workers)


async def test_slow_redis(chaos: Chaos, redis_url: str) -> None:
    slow: list[bool] = [False]
    rng = random.Random(seed())
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = LatencyProxy(port, lambda: rng.uniform(0.2, 0.8) if slow[0] else None)
    await proxy.start()
    workers = chaos.workers(redis_url=proxy.url)
    try:
        await workers.start("w", ready=4)

        async def slow_down(pool: Workers) -> None:
            start = time.monotonic()
            for begin in (10, 45):
                await _at(start, begin)
                slow[0] = True
                await asyncio.sleep(10)
                proxy.cut()  # commands in flight fail: their batch is retried
                await asyncio.sleep(10)
                slow[0] = False

        await chaos.run("Redis 200-800 ms slow x2, cut", slow_down, window=80, workers=workers)
    finally:
        workers.stop_all()
        await proxy.stop()


async def test_broker_paused(chaos: Chaos, tmp_path: Path) -> None:
    broker = Broker(tmp_path / "tansu.log")
    await asyncio.to_thread(broker.start)  # it checks readiness with a loop of its own
    chaos.on_broker(broker.bootstrap)
    workers = chaos.workers()
    try:
        worker = await workers.start("w", ready=4)

        async def pause_broker(pool: Workers) -> None:
            start = time.monotonic()
            for moment in (10, 45):
                await _at(start, moment)
                before = sum(worker.metrics("nudge_kafka_errors_total").values())
                broker.pause()
                # longer than the session timeout (6 s) and than the request timeout of
                # the workload's producer (5 s): it sends again what was not acknowledged
                await asyncio.sleep(5)
                stopped = worker.metrics("nudge_partition_clock_seconds")
                await asyncio.sleep(25)
                # the partitions' clocks wait where the broker stopped answering: the
                # events it holds back come before the timers due after their time
                moved = worker.metrics("nudge_partition_clock_seconds")
                assert stopped and all(moved[p] - at < 1 for p, at in stopped.items())
                broker.resume()
                await asyncio.sleep(2)
                after = sum(worker.metrics("nudge_kafka_errors_total").values())
                # the worker's own client timeouts (faust: 90 s for requests, 1200 s for
                # the producer) are longer than the pause: it waits, nothing fails
                print(f"nudge_kafka_errors_total {before:g} before the pause, {after:g} after")
            await pool.wait_all_ready()

        await chaos.run(
            "broker SIGSTOP 30 s x2",
            pause_broker,
            window=80,
            workers=workers,
            publish_timeout_ms=5_000,
            expect_from_topic=True,
        )
        assert worker.proc.poll() is None, worker.tail()
    finally:
        workers.stop_all()
        broker.stop()


@pytest.mark.xfail(
    reason="tansu's S3 storage comes back from a SIGKILL with end offsets that do not match the "
    "records it holds, so consumers stall or skip (README, Reliability)",
    strict=False,  # whether a kill lands while a record is half stored is a matter of timing
)
async def test_broker_killed_and_restarted(chaos: Chaos, tmp_path: Path) -> None:
    store = S3Server(tmp_path / "s3.log")
    broker = Broker(tmp_path / "tansu.log", storage=store)
    try:
        store.start()
        await asyncio.to_thread(broker.start)
        chaos.on_broker(broker.bootstrap)
        workers = chaos.workers()
        await workers.start("w", ready=4)

        async def restart_broker(pool: Workers) -> None:
            start = time.monotonic()
            for moment, down in ((15, 2), (45, 10)):
                await _at(start, moment)
                broker.kill()  # a crash: what it had not stored is gone, unacknowledged
                await asyncio.sleep(down)
                await asyncio.to_thread(broker.start)  # same port, same storage
            await pool.wait_all_ready()

        await chaos.run(
            "broker SIGKILL, restarted x2",
            restart_broker,
            window=80,
            workers=workers,
            publish_timeout_ms=5_000,
            expect_from_topic=True,
        )
        assert all(w.proc.poll() is None for w in workers.running.values()), workers.tails()
    finally:
        chaos.stop_workers()  # before their broker: they stop cleanly while it answers
        broker.stop()
        store.stop()
