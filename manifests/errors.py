"""The error types of mvemo, one root for all of them.

Every message names the clip id or parameter, the value, what was expected and
the fix. The command line turns any ``MvemoError`` into one line on stderr and
exit code 2; a traceback means a bug.
"""

from __future__ import annotations

from pathlib import Path


class MvemoError(Exception):
    """Root of every error mvemo raises on purpose."""


class ManifestError(MvemoError, ValueError):
    """A manifest that cannot be read or that breaks the clip-table contract."""


class MediaError(MvemoError):
    """A media file that is missing, undecodable or lacks a promised stream."""


class CacheError(MvemoError):
    """A feature cache that does not match its config, is locked, or is corrupt."""


class ConfigError(MvemoError, ValueError):
    """A configuration value outside its valid range."""


def is_number(value: object) -> bool:
    """A real number as a config or table value: an int or float, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_seed(value: object) -> bool:
    """A random seed as numpy and torch take it: an integer in 0..2**32-1, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def require(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition``: the check of a config field."""
    if not condition:
        raise ConfigError(message)


def utf8_text(path: Path, where: str) -> str:
    """A text file's content (a byte-order mark dropped).

    Raises
    ------
    ManifestError
        Naming ``where`` when the file is not UTF-8 text.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{where} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
