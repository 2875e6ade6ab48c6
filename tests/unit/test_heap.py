"""`settle_heap` freezes start-up's objects and widens the young generation; it runs in each
runtime's entry point, so it is checked here in a child process (freezing this one would
keep every app the suite builds alive)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import gc
import control_plane.app
from policy.runtime.heap import YOUNG_GENERATION, settle_heap
assert gc.get_freeze_count() == 0
settle_heap()
assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()
assert gc.get_threshold()[0] == YOUNG_GENERATION, gc.get_threshold()
"""


def test_settle_heap_freezes_start_up_and_widens_the_young_generation() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
