"""The error types of mvemo, one root for all of them.

Every message names the clip id or parameter, the value, what was expected and
the fix. The command line turns any ``MvemoError`` into one line on stderr and
exit code 2; a traceback means a bug.
"""


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


def require(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition``: the check of a config field."""
    if not condition:
        raise ConfigError(message)
