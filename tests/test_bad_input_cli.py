"""What a hostile or careless user types reaches them verbatim, as one line, never as a traceback.

- User text (file names, CSV cells, patient names, plugin messages) is never read as Rich markup: in
  errors, notes, progress lines and tables alike.
- Numbers are checked where they enter: CLI options and CSV cells, named by option or file/line/column.
- ``lungtk`` prints no traceback without --debug and says "internal error" only for a bug.
"""

from __future__ import annotations

import json
import pickle

import pytest

MARKUP = ["[bold]x[/]", "[/x]", "[red]", "[link=http://e.x]y[/link]", ":smile:"]


def one_error_line(proc) -> str:
    """The single stderr line of a failed command, checked: no traceback, no 'internal error'."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode not in (0, 70), proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def annotations(tmp_path):
    path = tmp_path / "annotations.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\ns1,0,0,0,5\ns2,10,10,10,8\n")
    return path


@pytest.mark.parametrize("text", MARKUP)
def test_file_names_and_cells_are_printed_verbatim(tmp_path, lungtk_cli, annotations, text):
    missing = tmp_path / f"{text}.csv"
    line = one_error_line(lungtk_cli("eval", "froc", "--findings", missing, "--annotations", annotations))
    assert f"{missing}: no such file" in line
    cell = tmp_path / "cell.csv"
    cell.write_text(f"seriesuid,coordX,coordY,coordZ,probability\ns1,0,0,0,{text}\n")
    line = one_error_line(lungtk_cli("eval", "froc", "--findings", cell, "--annotations", annotations))
    assert f"line 2, column 'probability': {text!r} is not a number" in line


def test_names_in_tables_and_notes_are_verbatim(tmp_path, lungtk_cli):
    nodules = tmp_path / "n.csv"
    nodules.write_text("patient,diameter_mm,texture\n[bold]p1[/],7,solid\n[/x],4,solid\n")
    table = lungtk_cli("fleischner", "recommend", nodules, check=0).stdout
    assert "[bold]p1[/]" in table and "[/x]" in table
    out = tmp_path / "[red]o[/].json"
    proc = lungtk_cli("fleischner", "recommend", nodules, "-f", "json", "--out", out, check=0)
    assert f"to {out}" in proc.stderr
    assert [r["patient"] for r in json.loads(out.read_text())] == ["[bold]p1[/]", "[/x]"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-prob", "7"], "--min-prob: 7 is not a probability"),
        (["--min-prob", "-0.5"], "--min-prob: -0.5 is not a probability"),
        (["--min-prob", "nan"], "--min-prob: nan is not a finite number"),
        (["--min-prob", "inf"], "--min-prob: inf is not a finite number"),
        (["--min-prob", "[/x]"], "'[/x]'"),
        (["--scheme", "[bold]x[/]"], "--scheme"),
    ],
)
def test_fleischner_options_out_of_range(tmp_path, lungtk_cli, args, message):
    nodules = tmp_path / "n.csv"
    nodules.write_text("patient,diameter_mm,texture\np1,7,solid\n")
    assert message in one_error_line(lungtk_cli("fleischner", "recommend", nodules, *args))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trees", "0"], "--trees: 0 is out of range"),
        (["--trees", "-3"], "--trees: -3 is out of range"),
        (["--seed", "-1"], "--seed: -1 is out of range"),
        (["--seed", str(2**40)], "is out of range"),
    ],
)
def test_fleischner_train_options(tmp_path, lungtk_cli, args, message):
    nodules = tmp_path / "n.csv"
    nodules.write_text("patient,diameter_mm,texture\np1,7,solid\np2,4,solid\n")
    labels = tmp_path / "l.csv"
    labels.write_text("patient,category\np1,1\np2,0\n")
    line = one_error_line(lungtk_cli("fleischner", "train", nodules, "--labels", labels, *args))
    assert message in line


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        (["--origin", "nan,0,0", "--spacing", "1,1,1"], "--origin (x): 'nan' is not a finite number"),
        (["--origin", "0,inf,0", "--spacing", "1,1,1"], "--origin (y): 'inf' is not a finite number"),
        (["--origin", "0,0,0", "--spacing", "1,0,1"], "--spacing (y): '0' is out of range"),
        (["--origin", "0,0,0", "--spacing", "1,1,-2"], "--spacing (z): '-2' is out of range"),
        (["--origin", "0,0,0", "--spacing", "1,1,inf"], "--spacing (z): 'inf' is not a finite number"),
        (
            ["--origin", "0,0,0", "--spacing", "1,1,1", "--direction", "1,0,0,1,0,0,0,0,1"],
            "not an invertible 3x3 matrix",
        ),
        (["--origin", "0,0,0", "--spacing", "1,1,1", "--direction", "1,0,0,0,1,0,0,0,nan"], "not a finite"),
        (["--origin", "0,0,0", "--spacing", "1,1,1", "--spcing", "2"], "--spcing: no such option"),
    ],
)
def test_convert_geometry_options(lungtk_cli, geometry, message):
    line = one_error_line(lungtk_cli("convert", "irc2xyz", *geometry, "1", "2", "3"))
    assert message in line


@pytest.mark.parametrize("point", [["nan", "2", "3"], ["1", "inf", "3"], ["1", "2", "1e300"]])
def test_convert_points(lungtk_cli, point):
    one_error_line(lungtk_cli("convert", "irc2xyz", "--origin", "0,0,0", "--spacing", "1,1,1", *point))


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("inf", "'inf' is not a finite number"),
        ("-5", "'-5' is out of range"),
        ("nan", "'nan' is not a finite number"),
    ],
)
def test_eval_froc_diameters(tmp_path, lungtk_cli, cell, message):
    marks = tmp_path / "marks.csv"
    marks.write_text("seriesuid,coordX,coordY,coordZ,probability\ns1,0,0,0,0.9\n")
    ann = tmp_path / "ann.csv"
    ann.write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\ns1,0,0,0,5\ns1,50,50,50,{cell}\n")
    line = one_error_line(lungtk_cli("eval", "froc", "--findings", marks, "--annotations", ann))
    assert f"ann.csv: line 3, column 'diameter_mm': {message}" in line


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_model_is_refused_without_running_it(tmp_path, lungtk_cli):
    marker = tmp_path / "code-ran"
    model = tmp_path / "forest.joblib"
    model.write_bytes(pickle.dumps(_Payload(str(marker))))
    nodules = tmp_path / "n.csv"
    nodules.write_text("patient,diameter_mm,texture\np1,7,solid\n")
    assert "pickle" in one_error_line(lungtk_cli("fleischner", "predict", nodules, "--model", model))
    assert not marker.exists()


FAULTS_PLUGIN = """
import errno
from lungtk.core import hookimpl, LungtkError


@hookimpl
def lungtk_register_commands(app):
    import typer
    group = typer.Typer()

    @group.command("fault")
    def fault(kind: str, where: str = typer.Option("x", "--where")):
        from lungtk.cli.console import note, progress_bar
        if kind == "progress":
            with progress_bar() as progress:
                task = progress.add_task(f"reading {where}", total=2)
                progress.advance(task)
                note(f"note about {where}")
                raise LungtkError(f"{where}: broken")
        if kind == "lungtk":
            raise LungtkError(f"{where}: bad [bold]input[/]")
        if kind == "advice":
            raise LungtkError(f"{where}: holds 2 series", option="--series",
                              advice="pick one with --series UID", otherwise="give one series' folder")
        if kind == "advice-here":
            raise LungtkError(f"{where}: holds 2 series", option="--where",
                              advice="pick one with --where", otherwise="never shown")
        if kind == "permission":
            raise PermissionError(errno.EACCES, "Permission denied", where)
        if kind == "full":
            raise OSError(errno.ENOSPC, "No space left on device", f"/data/.{where}.a1b2c3d4.tmp.csv")
        if kind == "missing":
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", where)
        if kind == "warn":
            import warnings
            warnings.warn(f"careful with {where}\\nreally", UserWarning)
            print("done")
            return
        if kind == "import":
            import no_such_package_for_lungtk_tests  # noqa: F401
        if kind == "memory":
            raise MemoryError()
        if kind == "bug":
            raise ValueError(f"a bug\\nover [/x] lines {where}")

    app.add_typer(group, name="faults")
"""


@pytest.fixture
def faults(plugin_site, lungtk_cli):
    plugin_site.add("fake-faults", FAULTS_PLUGIN)
    env = {"PYTHONPATH": str(plugin_site.root)}
    return lambda *args: lungtk_cli("faults", "fault", *args, env=env)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["lungtk", "--where", "[/x]"], "error: [/x]: bad [bold]input[/]"),
        (["advice"], "error: x: holds 2 series; give one series' folder"),
        (["advice-here"], "error: x: holds 2 series; pick one with --where"),
        (["permission", "--where", "/r/[bold]o[/]"], "error: /r/[bold]o[/]: permission denied"),
        (["full", "--where", "out.csv"], "error: /data/out.csv: no space left on the device"),
        (["missing", "--where", "[/x].mhd"], "error: [/x].mhd: no such file or folder"),
        (["memory"], "error: out of memory"),
        (["import"], "error: the Python package 'no_such_package_for_lungtk_tests' is needed"),
    ],
)
def test_user_faults_are_one_verbatim_line(faults, args, expected):
    line = one_error_line(faults(*args))
    assert line.startswith(expected), line


def test_a_bug_is_one_line_that_says_so(faults, lungtk_cli):
    proc = faults("bug", "--where", "[bold]w[/]")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 70 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "internal error: ValueError: a bug over [/x] lines [bold]w[/]" in lines[0]
    assert "--debug" in lines[0]


def test_progress_lines_and_notes_are_verbatim_and_a_failure_clears_the_bar(faults):
    proc = faults("progress", "--where", "[/x][bold]f[/]")
    assert "note about [/x][bold]f[/]" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: [/x][bold]f[/]: broken"
    assert "Traceback" not in proc.stderr


def test_a_python_warning_is_one_visible_line(faults):
    proc = faults("warn", "--where", "[/x]")
    assert proc.returncode == 0 and proc.stdout.strip() == "done"
    assert proc.stderr.strip().splitlines() == ["warning: careful with [/x]\\nreally (UserWarning)"]


@pytest.mark.parametrize(
    "args",
    [
        ["fleischner", "recommend", "n.csv", "--min-prob", "abc"],
        ["fleischner", "recommend"],
        ["eval", "froc", "--findings", "x.csv"],
        ["fleischner", "recommend", "n.csv", "--bogus"],
        ["no-such-command"],
        ["fleischner", "train", "--trees", "1.5"],
    ],
)
def test_command_line_mistakes_are_one_line(lungtk_cli, args):
    proc = lungtk_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
