"""Fixtures shared by every package's tests."""

from __future__ import annotations

import itertools
import sys
from importlib.metadata import distributions
from pathlib import Path

import pytest

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread per test: the networks in tests are tiny, and on a busy machine torch's thread pool
    costs more than it gains (a tiny FeatureNet pass: 0.02 s on one thread, seconds on two contended
    ones). Only where a test module has imported torch (the others never pay for importing it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class PluginSite:
    """A folder on sys.path where tests install fake plugin distributions as real ``*.dist-info``
    metadata, so discovery goes through importlib.metadata exactly as for an installed package."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(
        self,
        dist: str,
        source: str,
        *,
        version: str = "1.0",
        ep_name: str | None = None,
        target: str | None = None,
    ) -> str:
        """Install ``dist`` with one entry point (named ``ep_name``, default ``dist``) to a new module
        holding ``source``, or to ``target`` (an importable ``module[:attr]``) if given."""
        module = f"fake_plugin_{dist.replace('-', '_')}_{next(_counter)}"
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[lungtk]\n{ep_name or dist} = {target or module}\n")
        (self.root / f"{module}.py").write_text(source)
        return module

    def entry_points(self):
        return [
            ep for d in distributions(path=[str(self.root)]) for ep in d.entry_points if ep.group == "lungtk"
        ]


@pytest.fixture
def plugin_site(tmp_path, monkeypatch) -> PluginSite:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return PluginSite(root)


GOOD_PLUGIN = """
from lungtk.core import hookimpl

@hookimpl
def lungtk_register_detectors(registry):
    registry.add("fake-det", "collections:OrderedDict", summary="a fake detector")

@hookimpl
def lungtk_register_classifiers(registry):
    registry.add("fake-cls", "collections:OrderedDict")
"""

BROKEN_PLUGIN = "raise RuntimeError('this plugin is broken on purpose')\n"

DUPLICATE_PLUGIN = """
from lungtk.core import hookimpl

@hookimpl
def lungtk_register_detectors(registry):
    registry.add("other-det", "collections:OrderedDict")
    registry.add("fake-det", "collections:OrderedDict")
"""


@pytest.fixture
def plugin_sources() -> dict[str, str]:
    return {"good": GOOD_PLUGIN, "broken": BROKEN_PLUGIN, "duplicate": DUPLICATE_PLUGIN}


def run_lungtk(*args, env: dict[str, str] | None = None):
    """Run ``lungtk`` in a fresh interpreter, as a user would; returns the CompletedProcess."""
    import os
    import subprocess
    import sys

    merged = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    merged.pop("LUNGTK_DEBUG", None)
    merged.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lungtk.cli.main", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env=merged,
        timeout=300,
    )


@pytest.fixture
def lungtk_cli(tmp_path):
    """``run(*args, env=None, check=None)``: lungtk in a subprocess, its cache in a temporary folder."""
    cache = {"LUNGTK_CACHE_DIR": str(tmp_path / "lungtk-cache")}

    def run(*args, env=None, check=None):
        proc = run_lungtk(*args, env={**cache, **(env or {})})
        if check is not None:
            assert proc.returncode == check, proc.stdout + proc.stderr
        return proc

    return run
