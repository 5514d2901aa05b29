"""The descriptors' column reference: ``extract.descriptors.columns`` rendered as Markdown.

``python -m mvemo.pipeline.descriptor_reference > docs/descriptors.md`` (``make docs``) writes the page, and a
test checks that the file equals what this module renders, so the page and the code cannot disagree.
"""

from __future__ import annotations

from mvemo.extract.descriptors import ACTIVE_FRAME_DBFS, STATISTICS, DescriptorConfig, columns

HEADER = """\
# The `descriptors` feature set

One vector per clip (`mvemo extract ... --features descriptors`, computed by default without `--nets`),
read in stage two as the input `descriptors` (e.g. `--models 'descriptors,musicnn+descriptors'`).
Generated from `extract/descriptors.py` by `make docs`: do not edit by hand. Back to the
[README](../README.md); how the set is computed: [pipeline.md](pipeline.md#descriptors).

Each value is computed from the clip's real audio (not the window's zero padding), resampled once
to 16 kHz mono and shared with the other audio sets. A measure that is undefined for a clip (a
silent clip, a clip too short for a loudness block, a constant series) takes the value in the
column *undefined*: the cache never holds NaN. A clip whose loudest sample lies below -100 dBFS
is silent: every column takes its undefined value.

Every frame series but the RMS level is measured over the active frames only (RMS above
{active:g} dBFS), so a silent intro or break does not read as 0 Hz, flat and toneless.
Frame series are summarized by {n_stats} statistics, as `<series>_<statistic>`: {stats}.
"""


def render(config: DescriptorConfig | None = None) -> str:
    table = columns(config or DescriptorConfig())
    stats = ", ".join(f"`{name}` ({what})" for name, what in STATISTICS.items())
    lines = [
        HEADER.format(n_stats=len(STATISTICS), stats=stats, active=ACTIVE_FRAME_DBFS),
        f"{len(table)} columns with the default config:",
        "",
    ]
    lines += ["| # | column | unit | what it measures | undefined |", "|---|---|---|---|---|"]
    lines += [f"| {i} | `{c.name}` | {c.unit} | {c.measures} | {c.undefined:g} |" for i, c in enumerate(table)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
