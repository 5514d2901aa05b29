"""``mvemo bench``: speed figures with their in-run baselines."""

from __future__ import annotations

import click

from mvemo.pipeline.bench.registry import BENCHES as REGISTERED
from mvemo.pipeline.bench.registry import Options
from mvemo.pipeline.cli.tools import MvemoCommand, print_json
from mvemo.pipeline.tables import format_table

# extract.nets.musicnn_patches.UPPER_CUTS, without importing torch
UPPER_CUT_NAMES = ["pooled", "cnn2_cut", "cnn1_cut", "pool4"]
BENCHES = (*REGISTERED, "all")


@click.command("bench", cls=MvemoCommand)
@click.argument("what", type=click.Choice(BENCHES))
@click.option(
    "--clips",
    default=None,
    type=click.IntRange(min=1),
    help="Clips in the synthetic cache, or files timed.  [default: 3438 for the cache and fuse benches, 20000 for"
    " memory (its cut activations: a quarter), 24 for short-clips, 16 for catalogue]",
)
@click.option(
    "--tmp-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where the synthetic cache is written.  [default: the system's temp folder]",
)
@click.option(
    "--grow-gb",
    default=0.2,
    type=click.FloatRange(min=0.001),
    help="Cache bench: the sets of the smaller cache one set is added to (the larger holds ten times that).",
)
@click.option(
    "--device", default="auto", show_default=True, help="Where the extract bench runs the nets: auto, cpu, cuda."
)
@click.option(
    "--minutes",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.5),
    help="Timeline bench: the video's length.",
)
@click.option(
    "--weights-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Timeline, faces, upper, memory, short-clips, predict and catalogue benches: folder of the pretrained weights"
    " (also $MVEMO_WEIGHTS, ~/.cache/mvemo/weights).",
)
@click.option(
    "--cut",
    default="pooled",
    show_default=True,
    type=click.Choice(UPPER_CUT_NAMES),
    help="Upper bench: the cut whose layers above are fine-tuned (pooled, cnn2_cut, cnn1_cut: musicnn; pool4: msdvgg).",
)
@click.option(
    "--workers",
    default="1,2",
    show_default=True,
    help="Stage-one bench: the counts of worker processes to run, comma-separated (e.g. 1,4,16 on a 16-core box);"
    " catalogue bench: the largest of them.",
)
@click.option(
    "--smallest",
    is_flag=True,
    help="Run each bench at its smallest size: a check, in seconds, that it runs and prints each of its figures; its"
    " figures measure nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def bench(
    what: str,
    clips: int | None,
    tmp_dir: str | None,
    grow_gb: float,
    device: str,
    minutes: float,
    weights_dir: str | None,
    cut: str,
    workers: str,
    smallest: bool,
    as_json: bool,
) -> None:
    """Measure mvemo's speed on this machine, each figure beside a baseline of the same run.

    audio: decode, resample, mel, MFCC, residual phase and the other LLDs of a 30 s
    clip on one core, beside a naive librosa path computing the same descriptors.

    video: ms per 30 s clip to get the 32 preprocessed frames (240p, 720p, 1080p h264),
    beside decoding every frame of the same file.

    extract: each net's forward ms per clip (fp32, bf16) and fine-tune step on --device;
    on a GPU also I3D and C3D embedding export in clips/s from frames in a cache.

    encoders: musicnn's and msdvgg's ms per 30-s clip on the CPU (one thread and all),
    their GFLOP per clip, and the rate achieved as a fraction of this machine's fp32
    GEMM rate, timed in turns in the same run (goal: 0.6 on 2 cores).

    fuse: the CV of every fusion model x 6 folds over embeddings of the five nets' sizes
    (4,000 dims integrated), beside one LogisticRegression fit.

    upper: one outer fold's fine-tuning of the layers above --cut over cached activations
    of --clips clips (default 900), inner-fold choices included, on one thread (a CV runs a
    fold per core; goal 300 s), beside the logistic head on the frozen penultimate.

    scale: mel and LLDs of 200 30 s AAC clips, serial vs 2 local processes vs a 2-worker
    Dask LocalCluster.

    predict: `mvemo predict --model 4q-quadrants` over one song and over nine, in a process
    of its own and served by `mvemo serve`: the first song's wall time over each further
    song's (goal: at most 2), beside a fresh process that only imports torch and librosa (to
    its first STFT); skipped where the model's weights are not found.

    catalogue: each ready-made model's clips per second over --clips files (default 16:
    4q-dev's songs, mved-sample's videos for mved-classes) on the largest of --workers local
    processes, `predict` against stage one computing the same sets and nets (goal: 0.9 or
    more), in this process; skipped where its weights or ../shared are not found.

    short-clips: stage one (log-mel, LLDs, descriptors, the music encoders) over --clips
    6-s clips (default 24: musemo's where ../shared lies beside the clone), against the same
    clips looped to 30 s (the work each clip cost before stage one computed and embedded a
    clip from its sound alone; goal: a third or less) and followed by 24 s of digital
    silence in the file, in one run.

    stage-one: the default sets of generated 30-s clips (240p and 720p, h264 + AAC) in steady
    state with each of --workers local processes: clips/s, the scaling efficiency over one
    worker on one core, and where the time went (the workers' decoding and computing, the
    writer's waiting, checksums and writes, by the run's own step timers); and how long a
    pool of 16 workers takes to start.

    cache: write and read a synthetic cache (mel 96x1876, LLD 3000x41, embeddings of
    512, 1024 and 2048 per clip), beside numpy copies of the same bytes; then add one
    128-d set to caches of --grow-gb and ten times that: bytes written over the set's
    size, and the larger cache's time over the smaller's.

    timeline: wall and CPU seconds per minute of a generated 1080p video for
    `predict --timeline` with the integrated model over the pretrained nets
    (twodcnn, musicnn, msdvgg, I3D) and the LLD statistics, and its peak memory
    (goal: 60 s per minute); skipped where their weights are not found.

    faces: ms per 30 s clip for the faces sets (32 frames through MTCNN and the mini
    Xception, one core) at 240p and 1080p, beside sampling the 32 frames alone;
    skipped where their weights are not found.

    pages: how long the timeline page of a five-minute 1080p video (271 windows)
    takes to load and to draw its chart in headless Chromium, for six classes, for
    24 tags and for valence and arousal, beside a blank page in the same browser
    (goal: loaded and drawn within 1 s); skipped without selenium or chromium.

    memory: peak memory of `mvemo-cv --models lldstats` over a cache of --clips
    clips with LLDs of the real shape (20,000: 6.5 GB of LLDs; goal 4 GB), and of
    `mvemo fuse` over musicnn's activations at cnn2_cut of a quarter as many clips (5,000:
    2.7 GB; goal 3 GB; skipped without its weights), each beside the same run over a
    tenth of the clips.
    """
    from mvemo.pipeline.bench.stage_one import table as stage_one_table

    options = Options(
        clips=clips,
        folder=tmp_dir,
        grow_gb=grow_gb,
        device=device,
        minutes=minutes,
        weights_dir=weights_dir,
        cut=cut,
        workers=worker_counts(workers),
        smallest=smallest,
    )
    results = {name: bench.run(options) for name, bench in REGISTERED.items() if what in (name, "all")}
    document = results[what] if what != "all" else results
    if as_json:
        print_json(document)
        return
    for name, figures in results.items():
        click.echo(f"[{name}]")
        if name == "stage-one":
            header = ["size", "workers", "start-up s", "clips/s", "efficiency", "largest share of the time"]
            click.echo(format_table(header, stage_one_table(figures)))
            click.echo(f"  pool start-up: {figures['pool_startup_s']} s (workers: seconds)")
            continue
        width = max(28, *map(len, figures))
        for key, value in figures.items():
            click.echo(f"  {key:{width}s} {value}")


def worker_counts(text: str) -> tuple[int, ...]:
    """``--workers 1,2,4`` as counts, each at least 1."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise click.BadParameter(
            f"{text!r}: expected counts of workers, comma-separated, e.g. 1,2,4", param_hint="--workers"
        )
    return counts
