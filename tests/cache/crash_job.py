"""A writer process for the crash test: fills a set for most clips, then adds clips and a second set, row by row,
slowly enough to be killed in every kind of write (clip table, new set, new segment, rows)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mvemo.cache.store import CacheWriter
from tests.cache.helpers import EMB, MEL, row_values, stand_in_manifest


def main(cache_path: str, media: str, n: int) -> None:
    for clips, specs in ((n * 3 // 4, [MEL]), (n, [MEL, EMB])):
        with CacheWriter(cache_path, stand_in_manifest(Path(media), clips)) as writer:
            writer.prepare(specs)
            for spec in specs:
                for row in writer.todo(spec.name):
                    time.sleep(0.004)
                    writer.write(spec.name, [row], [row_values(spec, int(row))])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
