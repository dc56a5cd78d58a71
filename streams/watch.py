"""What makes a worker reload its rules: a change under the config dir, or a replaced
prediction model (its ``manifest.json``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from triggers.loader import RULES_FILE, model_dir_named

__all__ = ["MODEL_MANIFEST", "ConfigWatch", "config_fingerprint", "config_hash"]

#: the file of a model directory that changes whenever the model does
MODEL_MANIFEST = "manifest.json"


def _config_files(config_dir: Path) -> list[Path]:
    """Every file under ``config_dir``, in a stable order."""
    return sorted(p for p in config_dir.rglob("*") if p.is_file())


def config_fingerprint(
    config_dir: Path, model_dir: Path | None = None
) -> tuple[tuple[str, int, int], ...]:
    """What changes when any file under ``config_dir`` is edited, added or removed, or
    the manifest of ``model_dir`` (the prediction model) is replaced."""
    found = [(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in _config_files(config_dir)]
    if model_dir is not None:
        manifest = model_dir / MODEL_MANIFEST
        try:
            stat = manifest.stat()
            found.append((str(manifest), stat.st_mtime_ns, stat.st_size))
        except OSError:
            found.append((str(manifest), -1, -1))
    return tuple(found)


def config_hash(config_dir: Path, model_dir: Path | None = None) -> str:
    """A short digest of what the worker loaded: every file under ``config_dir`` (by
    relative path and content) and the model's manifest, so two workers that show the same
    hash run the same rules, templates and model."""
    digest = hashlib.sha256()
    files = _config_files(config_dir)
    if model_dir is not None and (model_dir / MODEL_MANIFEST).is_file():
        files.append(model_dir / MODEL_MANIFEST)
    for path in files:
        name = path.relative_to(config_dir) if path.is_relative_to(config_dir) else path.name
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class ConfigWatch:
    """Whether the config, or the model it names, changed since the last look.

    The model directory is ``NUDGE_MODEL_DIR`` or the one ``rules.yaml`` names; the file
    is read again only when it changed (it may name a directory whose model failed to
    load, which the next look must still follow)."""

    def __init__(self, config_dir: Path, model_dir: Path | None) -> None:
        self.config_dir, self.override = config_dir, model_dir
        self._rules_stat: tuple[int, int] | None = None
        self._named: Path | None = None
        self.fingerprint = config_fingerprint(config_dir, self.model_dir())

    def model_dir(self) -> Path | None:
        if self.override is not None:
            return self.override
        try:
            stat = (self.config_dir / RULES_FILE).stat()
            rules_stat = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            return None
        if rules_stat != self._rules_stat:
            self._rules_stat, self._named = rules_stat, model_dir_named(self.config_dir)
        return self._named

    def changed(self) -> bool:
        fingerprint = config_fingerprint(self.config_dir, self.model_dir())
        changed, self.fingerprint = fingerprint != self.fingerprint, fingerprint
        return changed
