"""The garbage collector around a console script's command: paused while it starts, frozen as it ends; left alone
in a process that runs commands among other work (a test, a notebook, a server)."""

from __future__ import annotations

import gc
import subprocess
import sys

from mvemo.pipeline.cli.collector import collector_paused

COMMAND_FROZEN_AT_EXIT = """
import atexit, gc, sys
atexit.register(lambda: print("left to collect at exit:", len(gc.get_objects())))
sys.argv = ["mvemo", "--help"]
from mvemo.pipeline.cli.entry import main
main()
"""

PAUSED_IN_ONE_COMMAND = """
import gc
from mvemo.pipeline.cli.collector import collector_paused, one_command_process
one_command_process()
with collector_paused():
    print("paused:", not gc.isenabled(), gc.get_freeze_count())
print("after:", gc.isenabled(), gc.get_freeze_count() > 0)
"""


def test_a_process_that_runs_other_work_keeps_its_collector() -> None:
    frozen = gc.get_freeze_count()
    with collector_paused():
        assert gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_console_scripts_command_starts_with_the_collector_paused_then_freezes_what_it_built() -> None:
    out = subprocess.run([sys.executable, "-c", PAUSED_IN_ONE_COMMAND], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["paused: True 0", "after: True True"]


def test_a_console_scripts_command_ends_with_every_object_frozen() -> None:
    out = subprocess.run([sys.executable, "-c", COMMAND_FROZEN_AT_EXIT], capture_output=True, text=True, check=True)
    assert "Usage: mvemo" in out.stdout
    assert out.stdout.splitlines()[-1] == "left to collect at exit: 0"
