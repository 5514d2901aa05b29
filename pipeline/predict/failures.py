"""A clip's failure, reported in its result: a bad clip never stops a run of ``predict``; a ``ConfigError`` (the saved
model does not fit this version) does."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mvemo.manifests.errors import ConfigError, MvemoError
from mvemo.manifests.schema import Clip


def clip_results(results: Iterable[Any], clips: list[Clip]) -> Iterator[dict[str, Any]]:
    """The results of the clips' jobs, in order: a ``ConfigError`` stops the run, a lost job is its clip's failure."""
    # results first: the executor's stream is read to its end, and ends with the clips
    for result, clip in zip(results, clips, strict=True):
        if isinstance(result, ConfigError):
            raise result
        if isinstance(result, BaseException):  # the executor lost the job (a worker died on this clip)
            result = failed_result(clip, f"clip {clip.clip_id!r}: its worker died ({type(result).__name__}: {result})")
        yield result


def clip_result(clip: Clip, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, or the clip's failure: a bad clip never stops a run; a ``ConfigError`` (the saved model
    does not fit this version) does."""
    try:
        return compute()
    except ConfigError:
        raise
    except Exception as err:  # a decoder or library fault on one clip must not stop the run
        return failed_result(clip, failure_reason(clip, err))


def failure_reason(clip: Clip, err: Exception) -> str:
    """What a clip's failure says: mvemo's own error as it is, another (a decoder's, a library's) with its type."""
    return str(err) if isinstance(err, MvemoError) else f"clip {clip.clip_id!r}: {type(err).__name__}: {err}"


def file_of(clip: Clip) -> str:
    return str(clip.video or clip.audio)


def failed_result(clip: Clip, reason: str) -> dict[str, Any]:
    return {"clip_id": clip.clip_id, "file": file_of(clip), "error": reason}
