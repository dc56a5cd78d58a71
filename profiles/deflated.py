"""Raw deflate against a preset dictionary, behind a marker byte: the stored form of
profiles (:mod:`profiles.stored`) and timers (:mod:`profiles.timers`).

A small JSON document is mostly structure its kind shares (field names, rule ids,
timestamps); a dictionary holding typical ones lets each refer back to it instead of
learning it anew. A dictionary never changes once documents are stored with it: a better
one comes as a new file with a new marker byte (``bench/make_dictionaries.py``).
"""

from __future__ import annotations

import zlib
from importlib import resources

__all__ = ["PresetDeflate"]


class PresetDeflate:
    """One stored form: ``marker``, then the document deflated against the package file
    ``dictionary`` with these zlib settings."""

    def __init__(
        self, marker: bytes, dictionary: str, *, wbits: int, level: int, mem_level: int
    ) -> None:
        self.marker = marker
        self.dictionary = resources.files("profiles").joinpath(dictionary).read_bytes()
        self._wbits = wbits
        # primed with the dictionary once: loading it into a new compressor is most of the
        # cost of deflating a small document, and a copy of this one skips it
        self._primed = zlib.compressobj(
            level, zlib.DEFLATED, wbits, mem_level, zdict=self.dictionary
        )

    def pack(self, document: bytes) -> bytes:
        deflate = self._primed.copy()
        return self.marker + deflate.compress(document) + deflate.flush()

    def unpack(self, stored: bytes) -> bytes:
        """The document in ``stored`` (which starts with the marker); :class:`zlib.error`
        if it does not inflate, ends early or goes on after its end."""
        inflate = zlib.decompressobj(self._wbits, zdict=self.dictionary)
        document = inflate.decompress(stored[len(self.marker) :]) + inflate.flush()
        if not inflate.eof:
            raise zlib.error("the deflated document ends early")
        if inflate.unused_data:
            raise zlib.error("the deflated document goes on after its end")
        return document
