"""Write ``profiles/profile-v1.zdict``: the preset dictionary stored profiles are deflated with.

A profile's JSON is small (a few KB) and mostly structure: field names, rule ids,
outcomes and reasons, timestamps. Deflate learns that structure anew in every document,
so a dictionary that already holds a typical profile lets each one refer back to it. The
dictionary is the JSON of the profile of median size after a year of the workload
(seed 11, not the benchmarks' 7, so the memory bench measures profiles it was not made
from) on the shipped config, with its user's id and address made generic.

Not a benchmark, and not to be re-run on a live system: a stored profile can only be
read with the dictionary it was written with. A new dictionary needs a new form byte in
:mod:`profiles.stored` (the old one kept for what is stored), and a new file name;
``tests/profiles/test_stored.py`` pins this one's digest.

    .venv/bin/python bench/make_profile_dict.py [--out profiles/profile-v2.zdict]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import orjson
import workload
from engine import END, Clock, EncodingOutbox, record
from harness import REPO

from profiles import InMemoryProfileStore, InMemoryTimerStore
from triggers import Engine, load_rules

SEED = 11
EVENTS = 20_000
#: room left in deflate's 32 KiB window for the document itself
MAX_BYTES = 16 * 1024


async def typical_profile(config: Path) -> bytes:
    """The JSON of the median-sized profile after a year of the workload."""
    end_ms = int(END.timestamp() * 1000)
    shop = workload.shop(EVENTS, seed=SEED, end_ms=end_ms, span_ms=365 * workload.DAY_S * 1000)
    profiles, clock = InMemoryProfileStore(), Clock()
    engine = Engine(
        rules=load_rules(config),
        profiles=profiles,
        timers=InMemoryTimerStore(),
        outbox=EncodingOutbox(),
        clock=clock,
    )
    users: set[str] = set()
    for batch in record(shop, partitions=8, size=500, fetch="interleaved"):
        clock.advance_ms(batch.newest_ms)
        await engine.process(batch.messages)
        users.update(m.key.decode() for m in batch.messages if m.key)
    snapshots = await profiles.load(dict.fromkeys(users, ()))
    documents = [
        s.profile.model_dump_json().encode() for s in snapshots.values() if s.profile is not None
    ]
    documents.sort(key=len)
    return documents[len(documents) // 2]


def generic(document: bytes) -> bytes:
    """``document`` with its user's id and address replaced by generic ones."""
    data = orjson.loads(document)
    user, email = data["user_id"], data["email"]
    raw = document.replace(email.encode(), b"user@example.com")
    return raw.replace(user.encode(), b"user")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "profiles" / "profile-v1.zdict")
    args = parser.parse_args()
    dictionary = generic(asyncio.run(typical_profile(REPO / "config")))[-MAX_BYTES:]
    args.out.write_bytes(dictionary)
    print(f"wrote {args.out} ({len(dictionary):,} bytes)")


if __name__ == "__main__":
    main()
