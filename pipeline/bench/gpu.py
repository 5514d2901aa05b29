"""``make gpu-check``: the GPU path checked in one prepared run of at most ten minutes, for short loans of a GPU.

Six parts, each timed in a process of its own within its share of the time budget, run in this order and printed
as one JSON document with the device's name (also written to ``--json-out`` after every part):

- ``tests``: the tests marked ``gpu`` (the pretrained nets' float32 parity with their references, bf16 autocast
  against float32, NVDEC's frames against the CPU's), in a pytest process of their own, with each measured error;
- ``decoders``: the frames of the MVED sample's videos and of generated ones decoded on the CPU and on NVDEC
  (``[frames] decoder``): how many are equal, their mean and largest difference per pixel, the cosine of I3D's
  embeddings of the two, and each decoder's seconds per clip in one process;
- ``throughput``: clips per second over generated 30-s clips of stage one's decoding (worker processes writing
  the cache) on the CPU (with one worker too, for the pool's efficiency) and on NVDEC, a pool's start-up, and of
  i3d's (float32, and bf16 at several batch sizes) and musicnn's embeddings read from the cache by loader
  processes, with memory and utilisation sampled from ``nvidia-smi`` during each;
- ``extract``: stage one as a user runs it, timed whole over generated clips at 640x360 and 1280x720: decoding
  into the frames and log-mel on the CPU and on NVDEC, with i3d and musicnn on the device alongside, with the GPU's
  utilisation and the nets' share of the wall time;
- ``finetune``: twodcnn and musicnn fine-tuned (``--finetune last``, leak-free, 2 folds x 1 epoch) over the MVED
  sample, checking that each fold's embeddings are written;
- ``leak``: ``--protocol paper`` against ``leakfree`` with ``--finetune last``: the accuracy each protocol's
  embeddings give in stage two, one repeat, and their difference in points; left out when too little of the
  time budget remains.

``--device cpu --tiny`` is the dry run (a few short clips, the synthetic set for the sample): it checks the script,
not the figures, so a GPU's short time goes to measuring.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mvemo.extract.forward import resolve_device
from mvemo.pipeline.bench.gpu_device import device_facts
from mvemo.pipeline.bench.gpu_parts import DECODE_CLIPS_PER_WORKER, PART_RUNS, CheckConfig

PARTS = ("tests", "decoders", "throughput", "extract", "finetune", "leak")
LEAK_MIN_LEFT_S = 240.0
RESERVE_S = 45.0  # kept for each part still to run when a part's time limit is set
MIN_PART_S = 30.0


def gpu_check(config: CheckConfig, parts: tuple[str, ...] = PARTS, *, json_out: Path | None = None) -> dict[str, Any]:
    """The check's JSON document: the device, then each part's figures and seconds.

    Each part runs in a process of its own, stopped when it outlasts its share of the budget (what is left, less
    ``RESERVE_S`` for each part after it): an error or a hang is that part's figure, and the next part runs. After
    every part the document so far is written to ``json_out`` and a line to stderr, so that a loan cut short keeps
    what was measured."""
    began = time.perf_counter()
    document: dict[str, Any] = {"device": device_facts(config.device), "tiny": config.tiny, "budget_s": config.budget_s}
    for n, part in enumerate(parts):
        left = config.budget_s - (time.perf_counter() - began)
        if part == "leak" and left < LEAK_MIN_LEFT_S and not config.tiny:
            document[part] = {
                "not_run": f"{left:.0f} s of the {config.budget_s:.0f} s budget left (needs {LEAK_MIN_LEFT_S:.0f})"
            }
            continue
        part_began = time.perf_counter()
        document[part] = run_part(PART_RUNS[part], config, max(left - RESERVE_S * (len(parts) - n - 1), MIN_PART_S))
        document[part]["seconds"] = round(time.perf_counter() - part_began, 1)
        written(document, began, json_out)
        outcome = document[part].get("error", "done")
        click.echo(f"gpu-check: {part} in {document[part]['seconds']} s: {outcome}"[:300], err=True)
    return written(document, began, json_out)


def written(document: dict[str, Any], began: float, json_out: Path | None) -> dict[str, Any]:
    """``document`` with the seconds since ``began``, as written to ``json_out`` (when given)."""
    document["seconds"] = round(time.perf_counter() - began, 1)
    if json_out is not None:
        write_json(document, json_out)
    return document


def run_part(run: Callable[[CheckConfig], dict[str, Any]], config: CheckConfig, limit_s: float) -> dict[str, Any]:
    """``run(config)`` in a process of its own (spawned: CUDA is never forked), its figures, or ``{"error": ...}``
    when it raises, dies or outlasts ``limit_s`` (it is then killed with every process it started, and their GPU
    memory with them)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_part_process, args=(run, config, sender))
    process.start()
    sender.close()
    status: str = "error"
    value: Any = "interrupted"
    try:
        if receiver.poll(limit_s):
            status, value = receiver.recv()
        else:
            status, value = "error", f"stopped after {limit_s:.0f} s, its share of the budget: it hung or ran too long"
    except EOFError:  # the process died before it answered
        process.join(5)
        status, value = "error", f"its process died (exit code {process.exitcode})"
    finally:
        receiver.close()
        process.join(0 if status == "error" else 5)
        _stop_group(process)
    return value if status == "ok" else {"error": value}


def _stop_group(process: Any) -> None:
    """Kill a part's process and every process it started (its group), whether it finished or not: no worker of
    one part runs on into the next."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone, or the part never reached setsid: the process alone
        process.kill()
    process.join()


def _part_process(run: Callable[[CheckConfig], dict[str, Any]], config: CheckConfig, sender: Any) -> None:
    os.setsid()  # a process group of its own: a part stopped at its limit is stopped with its workers
    try:
        sender.send(("ok", run(config)))
    except Exception as err:  # one part's failure is a figure of the check: the others still run
        sender.send(("error", f"{type(err).__name__}: {err}"[:2000]))


def write_json(document: dict[str, Any], path: Path) -> None:
    """``document`` as ``path``, whole (written beside it, then renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2))
    os.replace(partial, path)


@click.command()
@click.option("--device", default="cuda", show_default=True, help="cuda, cuda:N, or cpu for the dry run.")
@click.option(
    "--shared",
    default="../shared",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder holding weights/ and data/mved-sample/.",
)
@click.option("--parts", default=",".join(PARTS), show_default=True, help="Which parts to run, comma-separated.")
@click.option("--tiny", is_flag=True, help="The dry run's sizes: a few short clips, the synthetic set for the sample.")
@click.option(
    "--clips",
    default=None,
    type=click.IntRange(min=1),
    help="Generated clips of the throughput part.  [default: 30 per core, 4 tiny]",
)
@click.option("--budget-s", default=540.0, show_default=True, help="Wall seconds the check should fit in.")
@click.option(
    "--json-out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the document here too, after every part (a loan cut short keeps what was measured).",
)
@click.option(
    "--keep",
    default=None,
    type=click.Path(file_okay=False),
    help="Keep this run's caches and reports in DIR/run, and the generated clips in DIR/generated (reused).",
)
def main(
    device: str,
    shared: str,
    parts: str,
    tiny: bool,
    clips: int | None,
    budget_s: float,
    json_out: str | None,
    keep: str | None,
) -> None:
    """Check the GPU path and print one JSON document of its figures."""
    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: choose among {', '.join(PARTS)}", param_hint="--parts")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        kept = Path(keep) if keep else Path(tmp)
        shutil.rmtree(kept / "run", ignore_errors=True)  # the caches of an earlier run would make this one's figures
        (kept / "run").mkdir(parents=True)
        config = CheckConfig(
            device=resolve_device(device),
            shared=Path(shared).resolve(),
            folder=kept / "run",
            generated=kept / "generated",
            tiny=tiny,
            budget_s=budget_s,
            clips=clips or (4 if tiny else DECODE_CLIPS_PER_WORKER * (os.cpu_count() or 1)),
            leak_epochs=1 if tiny else 5,
        )
        print(json.dumps(gpu_check(config, chosen, json_out=Path(json_out) if json_out else None), indent=2))


if __name__ == "__main__":
    main()
