"""The stored form of a profile: its JSON, deflated against a preset dictionary.

A profile's JSON is a few KB, and most of it is structure every profile shares: field
names, rule ids, outcomes and reasons, timestamps. Deflate with a preset dictionary
(``profile-v1.zdict``: a typical profile's JSON, see ``bench/make_dictionaries.py``)
refers back to that instead of learning it anew in each document: a year-old profile of
the bench workload is stored in ~1.2 KB instead of ~2.2 KB and read in half the time
(bench/README.md, memory).

The first byte says the form, and every earlier form still loads:

- :data:`DEFLATED_V1` deflated with the dictionary of ``profile-v1.zdict`` (written now);
- :data:`DEFLATED` deflated with no dictionary;
- ``{``: plain JSON.

The dictionary never changes once profiles are stored with it (a test pins its digest):
a better one comes as a new file with a new form byte.
"""

from __future__ import annotations

import zlib

from pydantic import ValidationError

from profiles.deflated import PresetDeflate
from profiles.errors import CorruptProfile
from profiles.model import Profile

__all__ = ["DEFLATED", "DEFLATED_V1", "DICTIONARY_V1", "dump_profile", "load_profile"]

#: first byte of a profile deflated with no dictionary (JSON starts with ``{``)
DEFLATED = b"\x01"
_OLD_WBITS = -12  # raw deflate, 4 KiB window
# a 16 KiB window holds the dictionary (9 KiB) and most of a document, and stores what a
# 32 KiB window does with a primed compressor that copies faster. Level 6 and memory level
# 8 store the median profile of the memory bench in ~10 % fewer bytes than level 4 and
# memory level 6 did (1,072 against 1,194 B), for ~6 µs more a write (bench/README.md,
# memory); neither is part of the stored form, which every level reads the same
_V1 = PresetDeflate(b"\x02", "profile-v1.zdict", wbits=-14, level=6, mem_level=8)
#: first byte of a profile deflated with :data:`DICTIONARY_V1`
DEFLATED_V1 = _V1.marker
DICTIONARY_V1 = _V1.dictionary


def dump_profile(profile: Profile) -> bytes:
    return _V1.pack(profile.model_dump_json().encode())


def load_profile(user_id: str, stored: bytes) -> Profile:
    """The profile in ``stored`` (any form); :class:`CorruptProfile` if it is none."""
    try:
        form = stored[:1]
        if form == DEFLATED_V1:
            stored = _V1.unpack(stored)
        elif form == DEFLATED:
            stored = zlib.decompress(stored[1:], _OLD_WBITS)
        return Profile.model_validate_json(stored)
    except (zlib.error, ValidationError) as exc:
        raise CorruptProfile(user_id, str(exc).splitlines()[0]) from exc
