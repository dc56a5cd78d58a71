"""Measurement only, never for production: Faust's fetch loop without ``wait_first``.

Faust's consumer hands every fetched message to the conductor through mode's
``wait_first(callback(message), suspend_flow.wait())``: two tasks and an
``asyncio.wait`` per message. Put this directory first on ``PYTHONPATH`` and every
Python process started with it (the bare agent, ``nudge worker``) awaits the callback
directly while the flow is not suspended, as ``wait_first`` still does when it is::

    PYTHONPATH=bench/plain_await .venv/bin/python bench/run.py --mode throughput
    PYTHONPATH=bench/plain_await BENCH_PLAIN_AWAIT=worker .venv/bin/python bench/run.py ...

``BENCH_PLAIN_AWAIT=worker`` patches only processes that have ``NUDGE_APP_ID`` in their
environment (the bench's worker), so the bare agent stays stock Faust.

Not safe to ship: when a rebalance stops the flow while a callback is blocked on flow
control, ``wait_first`` abandons the message; a plain await resumes after the rebalance
and delivers a message fetched before it.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import textwrap

_WAIT_FIRST = re.compile(
    r"( +)await self\.wait_first\(\s*callback\(message\), self\.suspend_flow\.wait\(\)\s*\)"
)


def _patch() -> None:
    try:
        from faust.transport import consumer
    except ImportError:  # a process without Faust: nothing to do
        return
    source = textwrap.dedent(inspect.getsource(consumer.Consumer._drain_messages))
    found = _WAIT_FIRST.search(source)
    if found is None:
        raise RuntimeError("this Faust's fetch loop has no wait_first line to replace")
    pad = found.group(1)
    plain = (
        f"{pad}if self.suspend_flow.is_set():\n"
        f"{pad}    await self.wait_first(callback(message), self.suspend_flow.wait())\n"
        f"{pad}else:\n"
        f"{pad}    await callback(message)"
    )
    source = source[: found.start()] + plain + source[found.end() :]
    defined: dict[str, object] = {}
    exec(compile(source, consumer.__file__, "exec"), consumer.__dict__, defined)
    consumer.Consumer._drain_messages = defined["_drain_messages"]
    print("plain_await: Faust's fetch loop awaits each message directly", file=sys.stderr)


if os.environ.get("BENCH_PLAIN_AWAIT") != "worker" or "NUDGE_APP_ID" in os.environ:
    _patch()
