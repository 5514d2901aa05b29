"""A writer process for the crash test: fills two feature sets row by row, slowly enough to be killed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mvemo.cache.store import CacheWriter
from tests.cache.helpers import EMB, MEL, row_values, stand_in_manifest


def main(cache_path: str, media: str, n: int) -> None:
    manifest = stand_in_manifest(Path(media), n)
    with CacheWriter(cache_path, manifest) as writer:
        writer.prepare([MEL, EMB])
        for spec in (MEL, EMB):
            for row in writer.todo(spec.name):
                time.sleep(0.004)
                writer.write(spec.name, [row], [row_values(spec, int(row))])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
