"""The built wheel installs and runs outside the repository (missing package data or stray modules show here)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow(reason="builds the wheel, installs it into a fresh venv and runs the tiny demo from it")
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(REPO)],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("mvemo-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The project's dependencies come from its own venv, without its editable mvemo (a plain path, no .pth processing).
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    before = {p.name for p in site.iterdir()}
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([venv / "bin" / args[0], *args[1:]], cwd=outside, env=env, capture_output=True, text=True)

    located = run(
        "python", "-c", "import mvemo, mvemo.pipeline.cli.main, mvemo.extract.nets; print(mvemo.pipeline.__file__)"
    )
    assert located.returncode == 0, located.stderr
    assert str(venv) in located.stdout, "mvemo must come from the wheel, not the repository"
    installed = sorted({p.name for p in site.iterdir()} - before)
    assert [name for name in installed if not name.endswith(".dist-info")] == ["mvemo"], (
        f"installed at the top: {installed}"
    )
    dist_info = next(site / name for name in installed if name.endswith(".dist-info"))
    assert any(p.name == "LICENSE" for p in dist_info.rglob("*")), "the licence ships with the wheel"
    for command in (("mvemo", "--help"), ("mvemo-cv", "--help"), ("mvemo", "--version")):
        assert run(*command).returncode == 0, command
    demo = run("mvemo", "demo", "--out", str(outside / "demo"), "--clips-per-class", "4", "--duration-s", "2")
    assert demo.returncode == 0, demo.stderr
    page = (outside / "demo" / "report.html").read_text()
    assert "<script>" in page and "data:image/png;base64," in page, "the page's script and figures ship and inline"
