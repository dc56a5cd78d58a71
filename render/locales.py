"""Locale names as users and template directories write them, and Babel's view of them.

A profile says ``de-AT``, ``de_at`` or ``en_US.UTF-8``; a template variant directory is
named ``de_AT`` or ``de-AT``. Both are normalised to Babel's spelling (``de_AT``,
``zh_Hant_TW``) before they are compared. A name Babel cannot parse is no locale.
"""

from __future__ import annotations

import functools

from babel import Locale, UnknownLocaleError
from babel.core import parse_locale

__all__ = ["babel_locale", "fallbacks", "is_locale", "normalise_locale"]


@functools.lru_cache(maxsize=1024)
def normalise_locale(raw: str | None) -> str | None:
    """``de-at`` -> ``de_AT``, ``en_US.UTF-8`` -> ``en_US``; ``None`` for what is no
    locale name at all (empty, digits, too many parts)."""
    if not raw or not raw.strip():
        return None
    try:
        parts = parse_locale(raw.strip().replace("-", "_"))
    except ValueError:
        return None
    language, territory, script, variant = parts[:4]  # a modifier (``@euro``) is dropped
    return "_".join(part for part in (language, script, territory, variant) if part)


def fallbacks(locale: str) -> tuple[str, ...]:
    """A normalised locale, then each shorter one: ``zh_Hant_TW``, ``zh_Hant``, ``zh``."""
    parts = locale.split("_")
    return tuple("_".join(parts[:n]) for n in range(len(parts), 0, -1))


@functools.lru_cache(maxsize=1024)
def is_locale(name: str) -> bool:
    """Whether ``name`` (a directory name) is a locale Babel has data for."""
    normal = normalise_locale(name)
    if normal is None:
        return False
    try:
        Locale.parse(normal)
    except (UnknownLocaleError, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=1024)
def babel_locale(raw: str | None, default: str) -> Locale:
    """The Babel locale of ``raw``, else of its language (``de_XX`` -> ``de``), else
    ``default`` (a locale the configuration checked)."""
    normal = normalise_locale(raw)
    for name in (*fallbacks(normal), default) if normal else (default,):
        try:
            return Locale.parse(name)
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse("en_US")
