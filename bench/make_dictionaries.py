"""Write the preset dictionaries stored profiles and timers are deflated against.

A profile's JSON (a few KB) and a timer's (a few hundred bytes) are mostly structure:
field names, rule ids, outcomes and reasons, timestamps. Deflate learns that structure
anew in every document, so a dictionary that already holds typical ones lets each refer
back to it. Both come from a year of the workload (seed 11, not the benchmarks' 7, so
the memory bench measures documents they were not made from) on the shipped config, with
each user's id and address made generic:

- ``profiles/profile-v1.zdict``: the JSON of the profile of median size;
- ``profiles/timer-v1.zdict``: per rule, the JSON of its pending timer of median size,
  the rules with the most pending timers last (nearest, so cheapest to refer to).

Not a benchmark, and not to be re-run into those files: what is stored can only be read
with the dictionary it was written with. A new dictionary needs a new form byte
(:mod:`profiles.stored`, :mod:`profiles.timers`), the old one kept for what is stored, and
a new file name; ``tests/profiles`` pins these files' digests.

    .venv/bin/python bench/make_dictionaries.py --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import workload
from engine import END, Clock, EncodingOutbox, record
from harness import REPO

from profiles import InMemoryProfileStore, InMemoryTimerStore, Profile, Timer
from triggers import Engine, load_rules

SEED = 11
EVENTS = 20_000
PARTITIONS = 8
#: room left in deflate's window for the document itself
PROFILE_BYTES = 16 * 1024
TIMER_BYTES = 3 * 1024


@dataclass
class Year:
    profiles: list[Profile]
    timers: list[Timer]


async def a_year(config: Path) -> Year:
    """Every profile and pending timer after a year of the workload."""
    end_ms = int(END.timestamp() * 1000)
    shop = workload.shop(EVENTS, seed=SEED, end_ms=end_ms, span_ms=365 * workload.DAY_S * 1000)
    profiles, timers, clock = InMemoryProfileStore(), InMemoryTimerStore(), Clock()
    engine = Engine(
        rules=load_rules(config),
        profiles=profiles,
        timers=timers,
        outbox=EncodingOutbox(),
        clock=clock,
    )
    users: set[str] = set()
    for batch in record(shop, partitions=PARTITIONS, size=500, fetch="interleaved"):
        clock.advance_ms(batch.newest_ms)
        await engine.process(batch.messages)
        users.update(m.key.decode() for m in batch.messages if m.key)
    snapshots = await profiles.load(dict.fromkeys(sorted(users), ()))
    pending = [t for p in range(PARTITIONS) for t in await timers.pending(p)]
    return Year([s.profile for s in snapshots.values() if s.profile is not None], pending)


def median(documents: list[bytes]) -> bytes:
    """The document of median length (of those as long, the one given first)."""
    return sorted(documents, key=len)[len(documents) // 2]


def generic(document: bytes, user_id: str, email: str | None) -> bytes:
    """``document`` with its user's id and address replaced by generic ones."""
    if email:
        document = document.replace(email.encode(), b"user@example.com")
    return document.replace(user_id.encode(), b"user")


def profile_dictionary(year: Year) -> bytes:
    documents = {p.model_dump_json().encode(): p for p in year.profiles}
    document = median(list(documents))
    typical = documents[document]
    return generic(document, typical.user_id, typical.email)


def timer_dictionary(year: Year) -> bytes:
    by_rule: dict[str, list[bytes]] = defaultdict(list)
    for timer in year.timers:
        by_rule[timer.rule_id].append(generic(timer.to_json(), timer.user_id, None))
    commonest_last = sorted(by_rule, key=lambda rule: (len(by_rule[rule]), rule))
    return b"".join(median(by_rule[rule]) for rule in commonest_last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="a directory; files already there are kept"
    )
    args = parser.parse_args()
    year = asyncio.run(a_year(REPO / "config"))
    for name, dictionary in (
        ("profile-v1.zdict", profile_dictionary(year)[-PROFILE_BYTES:]),
        ("timer-v1.zdict", timer_dictionary(year)[-TIMER_BYTES:]),
    ):
        path = args.out / name
        if path.exists():
            print(f"kept {path}: what is stored was written with it")
            continue
        path.write_bytes(dictionary)
        print(f"wrote {path} ({len(dictionary):,} bytes)")


if __name__ == "__main__":
    main()
