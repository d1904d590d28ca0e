"""CLI commands and job workers run at background priority, so the app's annotators go first.

Each case runs a fresh interpreter (niceness cannot be lowered back) and reads the niceness the
entry point left: the CLI's `main` and the job worker's `main`, the two ways background work starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(os, "nice"), reason="no process priorities on this platform")


def niceness_after(code: str, home: Path, **env: str) -> int:
    """Run `code` (which must print the niceness last) in a fresh interpreter; return that niceness."""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO), "ACTIVELEARN_HOME": str(home), **env})
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


CLI = "import os; from activelearn.cli import main; main(['status']); print(os.nice(0))"
# The job is not run: only what the worker's entry point does before it starts one is checked.
WORKER = ("import os; from activelearn import jobs; jobs.run_job = lambda paths, job_id: 0; "
          "jobs.main(['7']); print(os.nice(0))")


@pytest.mark.parametrize("code", [CLI, WORKER], ids=["cli", "job worker"])
def test_background_entry_points_lower_their_priority(tmp_path, code):
    from activelearn.config import BACKGROUND_NICE

    base = os.nice(0)
    assert niceness_after(code, tmp_path) == max(base, BACKGROUND_NICE)


@pytest.mark.parametrize("code", [CLI, WORKER], ids=["cli", "job worker"])
def test_priority_is_set_not_added_and_can_be_turned_off(tmp_path, code):
    base = os.nice(0)
    assert niceness_after(code, tmp_path, ACTIVELEARN_BACKGROUND_NICE="0") == base
    # A worker started by a niced CLI command inherits the niceness: it must not add another 10.
    nested = f"import os; os.nice({max(0, 10 - base)}); " + code
    assert niceness_after(nested, tmp_path) == max(base, 10)
