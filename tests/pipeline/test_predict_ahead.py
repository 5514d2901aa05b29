"""A one-command predict's feature sets, computed in a process of their own ahead of the nets: the same labels, the
same refusals and the same failures as computed in the command's own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.fuse.saved.model import load_fusion_model
from mvemo.manifests.errors import ConfigError, MediaError
from mvemo.manifests.synthetic import write_media
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.predict.ahead import PARTS_A_CLIP, SetsAhead
from mvemo.pipeline.predict.clip_sets import net_input_sets
from mvemo.pipeline.predict.predictor import Predictor, file_clip
from tests.built import built_once
from tests.pipeline import helpers, test_saved_model
from tests.pipeline.test_saved_model import edited, save_a_model

pytestmark = pytest.mark.heavy  # each test starts a process that imports librosa


@pytest.fixture(scope="module")
def saved() -> Path:
    """test_saved_model's model: twodcnn from seeded weights, LLDs and descriptors of 4-s songs."""
    code = [test_saved_model.__file__, helpers.__file__]
    return built_once("saved-model", save_a_model, code=code) / "fused" / "model"


@pytest.fixture
def songs(tmp_path: Path) -> list[str]:
    """Two songs of different sounds, a missing file between them."""
    rng = np.random.default_rng(0)
    files = [
        write_media(tmp_path / f"song{i}.{suffix}", y=0.1 * rng.standard_normal(2 * 16000), sr=16000)
        for i, suffix in enumerate(("wav", "flac"))
    ]
    return [str(files[0]), str(tmp_path / "missing.wav"), str(files[1])]


def scores(results: list[dict]) -> list[tuple[str, object]]:
    return [(r["clip_id"], r.get("error") or (r["label"], list(r["probabilities"].values()))) for r in results]


def test_each_clip_is_labelled_as_in_the_commands_own_process(saved: Path, songs: list[str]) -> None:
    clips = [file_clip(song) for song in songs]
    here = scores(list(Predictor(saved).predict(clips)))
    with SetsAhead(saved) as ahead:
        got = scores(list(Predictor(saved, sets_ahead=ahead).predict(clips)))
    assert [clip_id for clip_id, _ in got] == [clip_id for clip_id, _ in here] == songs
    assert got[1] == here[1] and "missing.wav" in str(got[1][1]), "the missing file fails alone, as it says here"
    for (_, (label, probabilities)), (_, (label_here, probabilities_here)) in zip(got[::2], here[::2]):
        assert label == label_here
        np.testing.assert_allclose(probabilities, probabilities_here, rtol=1e-6)


def test_the_console_script_computes_the_sets_ahead_and_labels_as_here(saved: Path, songs: list[str]) -> None:
    command = [str(Path(sys.executable).parent / "mvemo"), "predict", str(saved), songs[0], "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ | {"MVEMO_SERVE": "0"})
    (result,) = json.loads(done.stdout)
    (here,) = Predictor(saved).predict([file_clip(songs[0])])
    assert result["label"] == here["label"]
    np.testing.assert_allclose(list(result["probabilities"].values()), list(here["probabilities"].values()), rtol=1e-6)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["models"]["lldstats"]["feature_sets"]["lld"].update(fingerprint="0" * 64),
        lambda d: d["models"]["lldstats"]["feature_sets"]["lld"]["config"].update(n_mfcc="many"),
    ],
    ids=["a fingerprint this version does not compute", "a config edited out of shape"],
)
def test_a_feature_set_the_process_refuses_is_refused_as_here(saved: Path, tmp_path: Path, edit) -> None:
    model = edited(saved, tmp_path, edit)
    with pytest.raises(ConfigError) as here:
        Predictor(model)
    with SetsAhead(model) as ahead, pytest.raises(ConfigError) as there:
        Predictor(model, sets_ahead=ahead)
    assert str(there.value) == str(here.value) and "models['lldstats']" in str(here.value)


def test_a_process_that_dies_fails_its_clip_and_a_new_one_computes_the_others(saved: Path, songs: list[str]) -> None:
    clips = [file_clip(songs[0]), file_clip(songs[2])]
    name = "stack(descriptors,twodcnn)"
    with SetsAhead(saved) as ahead:
        Predictor(saved, name, sets_ahead=ahead)
        os.kill(ahead._process.pid, signal.SIGSTOP)  # before it can compute the first clip's sets
        parts = ahead.parts(name, clips)
        os.kill(ahead._process.pid, signal.SIGKILL)
        got = list(parts)
    assert len(got) == PARTS_A_CLIP * len(clips)
    for part in got[:PARTS_A_CLIP]:
        assert isinstance(part, MediaError) and "the process computing its feature sets died (exit -9)" in str(part)
    assert all(isinstance(part, dict) for part in got[PARTS_A_CLIP:])
    read_by_nets, others = got[PARTS_A_CLIP:]
    assert set(read_by_nets) == set(net_input_sets(load_fusion_model(saved), name)) and set(others) == {"descriptors"}


def test_a_process_that_died_before_the_clips_is_started_again(saved: Path, songs: list[str]) -> None:
    with SetsAhead(saved) as ahead:
        predictor = Predictor(saved, sets_ahead=ahead)
        os.kill(ahead._process.pid, signal.SIGKILL)
        ahead._process.join()
        results = list(predictor.predict([file_clip(songs[0])]))
    assert "label" in results[0], results


def test_a_request_left_unread_gives_no_clip_of_the_next_another_clips_sets(saved: Path, songs: list[str]) -> None:
    first, second = file_clip(songs[0]), file_clip(songs[2])
    name = "stack(descriptors,twodcnn)"
    with SetsAhead(saved) as ahead:
        Predictor(saved, name, sets_ahead=ahead)
        parts = ahead.parts(name, [first, second])
        of_first = [next(parts) for _ in range(PARTS_A_CLIP)]  # the second clip's parts left unread
        again = list(ahead.parts(name, [first]))
        of_second = list(ahead.parts(name, [second]))
    for got, expected, other in zip(again, of_first, of_second):
        for set_name in expected:
            np.testing.assert_array_equal(got[set_name], expected[set_name])
            assert not np.array_equal(got[set_name], other[set_name]), f"{set_name}: the songs sound alike"


def test_a_command_run_in_a_process_of_other_work_computes_its_sets_there(saved: Path, songs: list[str]) -> None:
    result = CliRunner().invoke(cli, ["predict", str(saved), songs[0], "--verbose"])
    assert result.exit_code == 0, result.output
    assert "second process" not in result.stderr, "a test's or a notebook's process starts no process of its own"


def test_the_process_ends_with_the_command(saved: Path) -> None:
    ahead = SetsAhead(saved)
    Predictor(saved, sets_ahead=ahead)
    ahead.close()
    assert ahead._process.exitcode == 0, "told there are no more clips, it ended of itself"
