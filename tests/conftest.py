import os
import subprocess
import sys

import pytest


@pytest.fixture
def lungtk_cli():
    """Run ``lungtk`` in a fresh interpreter, as a user would; returns the CompletedProcess."""

    def run(*args, env=None, check=None):
        merged = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
        merged.pop("LUNGTK_DEBUG", None) if "LUNGTK_DEBUG" not in (env or {}) else None
        proc = subprocess.run(
            [sys.executable, "-m", "lungtk.cli.main", *map(str, args)],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            env=merged,
            timeout=300,
        )
        if check is not None:
            assert proc.returncode == check, proc.stdout + proc.stderr
        return proc

    return run
