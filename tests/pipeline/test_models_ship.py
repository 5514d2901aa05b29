"""`mvemo models train NAME --ship` ships the rebuilt model's whole folder (the checkpoints of its fine-tuned nets too),
swapped in for the shipped one, and only in a source checkout: an installed mvemo refuses it in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mvemo.fuse.saved.model import HEADS_H5, MODEL_JSON
from mvemo.manifests import ConfigError
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.readymade import recipes, train

PACKAGE = Path("pipeline", "readymade", "shipped")  # where a checkout's package holds its shipped models


def rebuilt(root: Path) -> Path:
    """A rebuilt model's folder, as `mvemo models train` leaves it for a recipe with a fine-tuned net."""
    folder = root / "rebuilt"
    (folder / "checkpoints").mkdir(parents=True)
    for name in (MODEL_JSON, HEADS_H5, recipes.RECIPE_JSON):
        (folder / name).write_text(f"the new {name}")
    (folder / "checkpoints" / "twodcnn.pt").write_bytes(b"fine-tuned weights")
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A source checkout's folder of shipped models, 4q-quadrants shipped before with a file the rebuilt one lacks."""
    (tmp_path / "mvemo").mkdir()
    (tmp_path / "mvemo" / "setup.cfg").write_text("[metadata]\nname = mvemo\n")
    shipped = tmp_path / "mvemo" / PACKAGE
    (shipped / "4q-quadrants").mkdir(parents=True)
    (shipped / "4q-quadrants" / "stale.json").write_text("{}")
    monkeypatch.setattr(recipes, "SHIPPED", shipped)
    return shipped


def test_the_whole_model_folder_is_shipped_in_place_of_the_old_one(checkout: Path, tmp_path: Path) -> None:
    folder = rebuilt(tmp_path)
    target = recipes.ship_model("4q-quadrants", folder)
    assert target == checkout / "4q-quadrants"
    assert files(target) == files(folder), "the checkpoints too, and nothing of the model shipped before"
    assert sorted(p.name for p in checkout.iterdir()) == ["4q-quadrants"], "no temporary folder left beside it"
    assert recipes.ship_model("4q-moods", folder) == checkout / "4q-moods", "a model shipped for the first time"


INSTALLED = {
    "site-packages": Path("venv", "lib", "python3.11", "site-packages", "mvemo", *PACKAGE.parts[1:]),
    "no setup.cfg above": Path("opt", "mvemo", *PACKAGE.parts),
}


@pytest.fixture(params=list(INSTALLED))
def installed(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shipped = tmp_path / INSTALLED[request.param]
    (shipped / "4q-quadrants").mkdir(parents=True)
    (shipped.parents[2] / "setup.cfg").write_text("[metadata]\n")  # where a site-packages holds one, it says nothing
    if request.param == "no setup.cfg above":
        (shipped.parents[2] / "setup.cfg").unlink()
    monkeypatch.setattr(recipes, "SHIPPED", shipped)
    return shipped


def test_an_installed_package_is_never_written(installed: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--ship is for a source checkout"):
        recipes.ship_model("4q-quadrants", rebuilt(tmp_path))
    assert list((installed / "4q-quadrants").iterdir()) == []


def test_ship_in_an_installed_package_stops_in_one_line_before_training(
    installed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        train, "train_recipe", lambda *args, **kwargs: pytest.fail("trained for a model it cannot ship")
    )
    result = CliRunner().invoke(cli, ["models", "train", "4q-quadrants", "--ship", "--data", "."])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "--ship is for a source checkout" in result.output


def test_this_checkout_ships() -> None:
    repo = Path(__file__).resolve().parents[2]
    if not Path(recipes.__file__).resolve().is_relative_to(repo):
        pytest.skip("the mvemo under test is installed, not this checkout's")
    assert recipes.in_source_checkout(recipes.SHIPPED)


def test_a_rebuild_equal_to_the_shipped_model_says_so_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `models train` says of a rebuilt model equal to the shipped one (here a copy of it stands for the rebuild;
    the slow ready-made tests rebuild a recipe for real)."""
    import shutil

    copy = shutil.copytree(recipes.shipped_folder("4q-quadrants"), tmp_path / "rebuilt")
    monkeypatch.setattr(train, "train_recipe", lambda *args, **kwargs: copy)
    result = CliRunner().invoke(
        cli, ["models", "train", "4q-quadrants", "--data", str(tmp_path), "--work", str(tmp_path / "w")]
    )
    assert result.exit_code == 0 and "equal to the shipped 4q-quadrants" in result.output, result.output
