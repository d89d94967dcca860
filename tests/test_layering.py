"""Dependencies flow one way (ARCHITECTURE.md, "Layout"). ``A <- B``: B may use A and what A may use.

    core <- ct-io <- nn-blocks <- train <- seg, cls, detect (never each other)
    fleischner: core only; phantom: core, ct-io, fleischner; pipeline: core, ct-io, fleischner
    cli: every library; a third-party plugin (plugins/example): any library, never the cli

Each workspace member's pyproject.toml declares the members it depends on; this test reads those
declarations and every ``.py`` file under the member's ``src/`` and ``tests/`` and fails when

- a member declares a member the layering does not let it use (directly or through what it declares);
- its code imports a ``lungtk.*`` module (anywhere: at the top, inside a function, through
  ``importlib.import_module`` / ``pytest.importorskip``, or in Python source run in a subprocess) of a
  member it does not declare, directly or transitively;
- its tests drive the ``lungtk`` command (the root conftest's ``lungtk_cli`` / ``run_lungtk``), which only
  the CLI's tests (the cross-package ``tests/`` folder) may do;
- its code imports a third-party package that neither it nor the members it declares list, unless the
  import is optional (``try: ... except ImportError``, ``pytest.importorskip``); tests may also use the
  workspace's dev group, numpy, scipy and the test oracles below;
- core, ct-io, fleischner or pipeline import torch when every one of their modules is imported.

Members that do not exist (yet) are skipped; a member this file does not know fails until it is placed.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CORE, CT_IO, NN_BLOCKS, TRAIN = "lungtk-core", "lungtk-ct-io", "lungtk-nn-blocks", "lungtk-train"
SEG, CLS, DETECT = "lungtk-seg", "lungtk-cls", "lungtk-detect"
FLEISCHNER, PHANTOM, PIPELINE = "lungtk-fleischner", "lungtk-phantom", "lungtk-pipeline"
CLI, EXAMPLE_PLUGIN = "lungtk", "lungtk-example-plugin"

_BELOW_TASKS = {CORE, CT_IO, NN_BLOCKS, TRAIN}
LIBRARIES = {*_BELOW_TASKS, SEG, CLS, DETECT, FLEISCHNER, PHANTOM, PIPELINE}
# The members each member may depend on, directly or transitively.
MAY_USE: dict[str, set[str]] = {
    CORE: set(),
    CT_IO: {CORE},
    NN_BLOCKS: {CORE, CT_IO},
    TRAIN: {CORE, CT_IO, NN_BLOCKS},
    SEG: _BELOW_TASKS,
    CLS: _BELOW_TASKS,
    DETECT: _BELOW_TASKS,
    FLEISCHNER: {CORE},
    PHANTOM: {CORE, CT_IO, FLEISCHNER},
    PIPELINE: {CORE, CT_IO, FLEISCHNER},  # components come from the registry, never by import
    CLI: LIBRARIES,  # a plugin (the example) is found through its entry point, never imported
    EXAMPLE_PLUGIN: LIBRARIES,  # a third-party plugin builds on any library, never on the CLI
}
TORCH_FREE = (CORE, CT_IO, FLEISCHNER, PIPELINE)
# What the root conftest gives every test folder: fixtures that run the `lungtk` command.
CLI_FIXTURES = {"lungtk_cli", "run_lungtk"}
# Besides the dev group, tests may use numpy and scipy, and these independent reference implementations
# that tests compare against (the workspace installs them: fleischner declares scikit-learn, phantom[lidc]
# brings scikit-image). They belong in the root dev group; until then they are listed here.
TEST_EXTRAS = {"numpy", "scipy"}
TEST_ORACLES = {"scikit-learn", "scikit-image"}
# Imported under a name that differs from the distribution's, where importlib.metadata cannot tell.
IMPORT_NAMES = {"PIL": "pillow", "skimage": "scikit-image", "sklearn": "scikit-learn", "yaml": "pyyaml"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))  # type: ignore[union-attr]


@dataclass(frozen=True)
class Member:
    name: str
    root: Path
    requires: frozenset[str]  # every distribution its pyproject declares (extras included)
    modules: frozenset[str]  # the import names it provides: lungtk.ct_io, lungtk_example_plugin, ...


def _modules(src: Path) -> frozenset[str]:
    found = set()
    for top in src.iterdir() if src.is_dir() else ():
        if top.name == "lungtk":  # the PEP 420 namespace: each member provides lungtk.<name>
            found |= {f"lungtk.{p.name}" for p in top.iterdir() if (p / "__init__.py").is_file()}
        elif (top / "__init__.py").is_file():
            found.add(top.name)
    return frozenset(found)


@cache
def members() -> dict[str, Member]:
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found = {}
    for pattern in workspace["tool"]["uv"]["workspace"]["members"]:
        for pyproject in sorted(ROOT.glob(f"{pattern}/pyproject.toml")):
            project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
            declared = list(project.get("dependencies", []))
            for extra in project.get("optional-dependencies", {}).values():
                declared += extra
            name = normalise(project["name"])
            requires = frozenset(requirement_name(r) for r in declared)
            found[name] = Member(name, pyproject.parent, requires, _modules(pyproject.parent / "src"))
    return found


def declared_members(name: str) -> set[str]:
    return set(members()[name].requires) & set(members())


def closure(name: str) -> set[str]:
    """The members ``name`` declares, directly or through them."""
    seen: set[str] = set()
    todo = list(declared_members(name))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo += declared_members(dep)
    return seen


def owner(module: str) -> str | None:
    """The member that provides ``module`` (None for the standard library and third parties)."""
    for member in members().values():
        if any(module == m or module.startswith(m + ".") for m in member.modules):
            return member.name
    return None


# -- what a file imports ----------------------------------------------------------------------------------
_IMPORT_CALLS = {"import_module", "importorskip", "__import__"}
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


@dataclass(frozen=True)
class Reference:
    module: str
    line: int
    optional: bool  # inside ``try: ... except ImportError`` or through ``pytest.importorskip``


def _catches_import_errors(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(k, ast.Name) and k.id in _IMPORT_ERRORS for k in kinds)


class _Imports(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[Reference] = []
        self.optional = False

    def add(self, module: str, node: ast.AST, optional: bool = False) -> None:
        self.found.append(Reference(module, getattr(node, "lineno", 0), self.optional or optional))

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_errors(h) for h in node.handlers)
        outer, self.optional = self.optional, self.optional or guarded
        for statement in node.body:
            self.visit(statement)
        self.optional = outer
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    visit_TryStar = visit_Try  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:  # relative imports stay inside their package
            self.add(node.module, node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0] if node.args else None
        if called in _IMPORT_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            self.add(first.value, node, optional=called == "importorskip")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and "import " in node.value:  # source run in a subprocess?
            try:
                inner = references(textwrap.dedent(node.value))
            except SyntaxError:
                return  # prose, not code
            for ref in inner:
                self.add(ref.module, node, ref.optional)

    def visit_arg(self, node: ast.arg) -> None:
        if node.arg in CLI_FIXTURES:
            self.add("lungtk.cli", node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in CLI_FIXTURES:
            self.add("lungtk.cli", node)


def references(source: str, filename: str = "<string>") -> list[Reference]:
    """Every absolute import in ``source``: import statements anywhere, calls of import_module /
    importorskip / __import__ with a literal name, Python source in string literals (run in a
    subprocess), and the root conftest's fixtures that run the ``lungtk`` command (as ``lungtk.cli``)."""
    visitor = _Imports()
    visitor.visit(ast.parse(source, filename))
    return visitor.found


def python_files(member: Member, folder: str) -> list[Path]:
    return sorted(p for p in (member.root / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imports_of(member: Member, folder: str) -> list[tuple[Path, Reference]]:
    return [
        (path, ref)
        for path in python_files(member, folder)
        for ref in references(path.read_text(encoding="utf-8"), str(path))
    ]


# -- third-party packages ---------------------------------------------------------------------------------
@cache
def _distributions_of_imports() -> dict[str, set[str]]:
    return {k: {normalise(d) for d in v} for k, v in importlib.metadata.packages_distributions().items()}


def distributions_of(module: str) -> set[str]:
    top = module.split(".")[0]
    if top in IMPORT_NAMES:
        return {IMPORT_NAMES[top]}
    return _distributions_of_imports().get(top, {normalise(top)})


def is_third_party(module: str) -> bool:
    top = module.split(".")[0]
    local = {"__future__", "conftest", "lungtk"}  # conftest: the root one (its CLI fixtures checked apart)
    return top not in sys.stdlib_module_names and top not in local and owner(module) is None


def dev_group() -> set[str]:
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {requirement_name(r) for r in workspace.get("dependency-groups", {}).get("dev", [])}


def third_party_allowed(name: str) -> set[str]:
    """What ``name`` and the members it declares list (a member may lean on its members' packages)."""
    return {r for m in {name, *closure(name)} for r in members()[m].requires} - set(members())


def known(name: str) -> Member:
    if name not in members():
        pytest.skip(f"{name} is not in the workspace (yet)")
    return members()[name]


# -- the tests --------------------------------------------------------------------------------------------
def test_every_member_has_a_place_in_the_layering():
    unknown = sorted(set(members()) - set(MAY_USE))
    assert not unknown, f"place {unknown} in MAY_USE (tests/test_layering.py) and ARCHITECTURE.md"
    assert {CORE, CT_IO, FLEISCHNER, PIPELINE, CLI} <= set(members())


def test_the_layering_is_transitive():
    """A member may use whatever its allowed members may use, so a declared chain never leaks upwards."""
    for name, allowed in MAY_USE.items():
        for dep in allowed:
            assert MAY_USE[dep] <= allowed, (name, dep, MAY_USE[dep] - allowed)
        assert name not in allowed


@pytest.mark.parametrize("name", sorted(MAY_USE))
def test_declared_dependencies_follow_the_layering(name):
    known(name)
    direct = declared_members(name) - MAY_USE[name]
    assert not direct, f"{name} declares {sorted(direct)}, above or beside it in the layering"
    through = closure(name) - MAY_USE[name]
    assert not through, f"{name} depends on {sorted(through)} through what it declares"


@pytest.mark.parametrize("folder", ["src", "tests"])
@pytest.mark.parametrize("name", sorted(MAY_USE))
def test_code_imports_only_declared_members(name, folder):
    member = known(name)
    allowed = {name, *closure(name)}
    wrong = [
        f"{path.relative_to(ROOT)}:{ref.line} imports {ref.module} ({owner(ref.module)}), which {name} "
        "does not declare"
        for path, ref in imports_of(member, folder)
        if owner(ref.module) not in (None, *allowed)  # optional or not: an upward import is one
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("folder", ["src", "tests"])
@pytest.mark.parametrize("name", sorted(MAY_USE))
def test_code_imports_only_declared_third_party_packages(name, folder):
    member = known(name)
    allowed = third_party_allowed(name)
    if folder == "tests":
        allowed |= dev_group() | TEST_EXTRAS | TEST_ORACLES
    wrong = [
        f"{path.relative_to(ROOT)}:{ref.line} imports {ref.module} ({', '.join(sorted(dists))}), "
        f"which {name} does not declare"
        for path, ref in imports_of(member, folder)
        if not ref.optional
        and is_third_party(ref.module)
        and not (dists := distributions_of(ref.module)) & allowed
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", TORCH_FREE)
def test_torch_free_members_never_import_torch(name):
    member = known(name)
    src = member.root / "src"
    modules = sorted(
        ".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for p in python_files(member, "src")
    )
    assert modules
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [], f"importing {name}'s modules imports torch"


# -- the checks themselves --------------------------------------------------------------------------------
def test_references_see_every_kind_of_import():
    source = textwrap.dedent(
        """
        import lungtk.core
        from lungtk.ct_io.io import formats
        from . import sibling

        def later(lungtk_cli):
            from lungtk.seg import regiongrow
            importlib.import_module("lungtk.cls.size")
            pytest.importorskip("lungtk.phantom.lidc")
            subprocess.run([sys.executable, "-c", "from lungtk.detect import froc"])
            run_lungtk("demo")
            try:
                import torch
            except ImportError:
                torch = None
        """
    )
    found = {ref.module: ref.optional for ref in references(source)}
    assert found == {
        "lungtk.core": False,
        "lungtk.ct_io.io": False,
        "lungtk.seg": False,
        "lungtk.cls.size": False,
        "lungtk.phantom.lidc": True,
        "lungtk.detect": False,
        "lungtk.cli": False,  # the lungtk_cli fixture and run_lungtk
        "torch": True,
    }
    assert owner("lungtk.ct_io.io") == CT_IO and owner("lungtk") is None and owner("numpy") is None


def test_the_rules_catch_what_they_are_for():
    """On made-up violations: ct-io importing the pipeline inside a function, a core test running the CLI,
    the pipeline importing torch unguarded."""
    (ref,) = references("def f():\n    from lungtk.pipeline.engine import Pipeline\n")
    assert owner(ref.module) == PIPELINE and PIPELINE not in {CT_IO, *closure(CT_IO)}
    (ref,) = references("def test_x(lungtk_cli):\n    pass\n")
    assert owner(ref.module) == CLI and CLI not in {CORE, *closure(CORE)}
    (ref,) = references("import torch\n")
    assert is_third_party(ref.module) and not ref.optional
    assert not distributions_of(ref.module) & third_party_allowed(PIPELINE)
