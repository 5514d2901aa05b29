"""The descriptors' column reference: ``extract.handcrafted.descriptors.columns`` and
``extract.handcrafted.expressive.COLUMNS`` rendered as Markdown.

``python -m mvemo.pipeline.descriptor_reference > docs/descriptors.md`` (``make docs``) writes the page, and a
test checks that the file equals what this module renders, so the page and the code cannot disagree.
"""

from __future__ import annotations

from mvemo.extract.handcrafted.descriptors import ACTIVE_FRAME_DBFS, STATISTICS, Column, DescriptorConfig, columns
from mvemo.extract.handcrafted.expressive import COLUMNS as EXPRESSIVE_COLUMNS
from mvemo.extract.handcrafted.expressive import HYSTERESIS_ST, MIN_NOTE_S, NOTE_MEDIAN_S, ExpressiveConfig

HEADER = """\
# The `descriptors` feature set

One vector per clip (`mvemo extract ... --features descriptors`, computed by default without `--nets`),
read in stage two as the input `descriptors` (e.g. `--models 'descriptors,musicnn+descriptors'`).
Generated from `extract/handcrafted/descriptors.py` by `make docs`: do not edit by hand. Back to the
[README](../README.md); how the set is computed: [pipeline.md](pipeline.md#descriptors).

Each value is computed from the clip's real audio (not the window's zero padding), resampled once
to 16 kHz mono and shared with the other audio sets. A measure that is undefined for a clip (a
silent clip, a clip too short for a loudness block, a constant series) takes the value in the
column *undefined*: the cache never holds NaN. A clip whose loudest sample lies below -100 dBFS
is silent: every column takes its undefined value.

Every frame series but the RMS level is measured over the active frames only (RMS above
{active:g} dBFS), so a silent intro or break does not read as 0 Hz, flat and toneless.
Frame series are summarized by {n_stats} statistics, as `<series>_<statistic>`: {stats}; the
per-band flatness and crest and the line spectral frequencies by their `mean` and `std` alone.

The tone-colour and sensory columns (`band_flatness_*`, `band_crest_*`, `lsf_*`, `dissonance_*`,
`inharmonicity_*`, `fluctuation_*`) are of the kind the 4Q state of the art rests on (Panda et al.
2018, IEEE TAFFC; Louro et al. 2024): spectral flatness and crest per band as MPEG-7's
AudioSpectrumFlatness and AudioSpectrumCrest (ISO/IEC 15938-4), line spectral frequencies (Itakura
1975) of an LPC envelope, sensory dissonance as Sethares' fit (1993) of Plomp and Levelt's curves
(1965), inharmonicity as Essentia's `Inharmonicity`, and the fluctuation pattern as Pampalk's (2001)
and MIRtoolbox's `mirfluctuation`. Each is tested on signals of known answer
(`tests/extract/handcrafted/test_timbre.py`).

The texture columns (`layers_*`, `layer_transitions`) count the pitched layers of each frame, as
Panda et al.'s musical layers do, by Klapuri's (2006) iterative multi-pitch estimation and
cancellation over a harmonic-summation salience, tested on chords of known voices
(`tests/extract/handcrafted/test_texture.py`).
"""
EXPRESSIVE = """
## The `expressive` feature set: the melody and how it is played

One vector per clip (`mvemo extract ... --features expressive`), read in stage two as the input
`expressive`, alone or beside the descriptors (`--models 'descriptors+expressive'`). After Panda et
al. (2018, IEEE TAFFC), whose melodic and expressive features carried much of their emotion
classifier's gain. From the same 16 kHz copy of the clip's real audio: its foreground (REPET-SIM, Rafii
and Pardo 2012: each frame's repeating background is the median of its most similar frames at least
2 s away, and a soft mask keeps what exceeds it {margin:g} times over; mostly the voice, as the anchor
measured its expressive techniques on the voice; `[expressive] voice_margin = 0` analyses the whole
mix, and a clip shorter than about 4 s always is) -> its harmonic part (median-filter HPSS) -> the
predominant melody (pYIN, each frame refined by YIN's continuous estimate) -> notes.
A note is a stretch of one semitone: the contour's running median over {median:g} s (it keeps a
step's edge and flattens a vibrato's swing) takes the nearest semitone, kept until it lies {hyst:g}
semitones away; runs of at least {min_note:g} s whose median barely moves are notes, and the frames
between two notes of one unbroken phrase are a step (none) or a glide. Vibrato and tremolo are
periodic swings of a note's pitch and level at 3-9 Hz. A clip without melody (drums alone) takes
every column's undefined value but the texture's; a silent clip takes them all.

{n} columns:
"""


def table(columns: list[Column]) -> list[str]:
    lines = ["| # | column | unit | what it measures | undefined |", "|---|---|---|---|---|"]
    return lines + [f"| {i} | `{c.name}` | {c.unit} | {c.measures} | {c.undefined:g} |" for i, c in enumerate(columns)]


def render(config: DescriptorConfig | None = None) -> str:
    described = columns(config or DescriptorConfig())
    stats = ", ".join(f"`{name}` ({what})" for name, what in STATISTICS.items())
    lines = [
        HEADER.format(n_stats=len(STATISTICS), stats=stats, active=ACTIVE_FRAME_DBFS),
        f"{len(described)} columns with the default config:",
        "",
    ]
    lines += table(described)
    lines.append(
        EXPRESSIVE.format(
            margin=ExpressiveConfig().voice_margin,
            median=NOTE_MEDIAN_S,
            hyst=HYSTERESIS_ST,
            min_note=MIN_NOTE_S,
            n=len(EXPRESSIVE_COLUMNS),
        )
    )
    lines += table(list(EXPRESSIVE_COLUMNS))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
