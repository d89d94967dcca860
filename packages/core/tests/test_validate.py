"""Numbers are checked where they enter: NaN, infinity and out-of-range values are one-line errors that
name where the value came from and show it as given; tables name file, line and column."""

import math

import pytest

from lungtk.core import LungtkError, validate
from lungtk.core.tables import number, optional_number, read_rows, read_table

NOT_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", math.nan, math.inf, -math.inf]
NOT_NUMBERS = ["", "  ", "abc", "[/x]", "[bold]1[/]", "1,5", "0x10", True, None, [1.0], "1 2"]


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize(
    "check", [validate.finite, validate.probability, validate.positive, validate.coordinate]
)
def test_nan_and_infinity_never_pass(check, value):
    with pytest.raises(LungtkError, match=r"^--thing: .*not a finite number"):
        check(value, "--thing")


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_what_is_not_a_number_is_named_and_shown_verbatim(value):
    with pytest.raises(LungtkError) as caught:
        validate.finite(value, "t.csv: line 3, column 'x'")
    message = str(caught.value)
    assert message.startswith("t.csv: line 3, column 'x': ") and "\n" not in message
    if isinstance(value, str) and value.strip():
        assert repr(value) in message  # the cell as written, brackets and all


@pytest.mark.parametrize("value", [-0.01, 1.0001, 2, 7, -1, "1.5", "-0"])
def test_probabilities_lie_in_0_to_1(value):
    if value == "-0":
        assert validate.probability(value, "p") == 0.0
        return
    with pytest.raises(LungtkError, match=r"^--min-prob: .* is not a probability; use a number from 0 to 1$"):
        validate.probability(value, "--min-prob")


@pytest.mark.parametrize("value", [0, 1, 0.5, "0.25", " 1 "])
def test_good_probabilities_pass_as_floats(value):
    assert 0.0 <= validate.probability(value, "p") <= 1.0


@pytest.mark.parametrize("value", [0, -1, "-0.5", 1e6, "20000"])
def test_sizes_are_positive_and_plausible(value):
    with pytest.raises(LungtkError, match="out of range"):
        validate.positive(value, "--spacing (x)")


def test_ranges_and_whole_numbers():
    assert validate.in_range(5, "a", 0, 10) == 5.0
    assert validate.non_negative(0, "a") == 0.0
    with pytest.raises(LungtkError, match="out of range; use a number above 0 and at most 10"):
        validate.in_range(0, "a", 0, 10, low_open=True)
    assert validate.count(3, "--trees") == 3 and validate.count("4", "--trees") == 4
    for bad in (0, -2, "1.5", 2.5):
        with pytest.raises(LungtkError, match="^--trees: "):
            validate.count(bad, "--trees")
    assert validate.seed(0, "--seed") == 0 and validate.seed(2**32 - 1, "--seed") == 2**32 - 1
    for bad in (-1, 2**32, "x"):
        with pytest.raises(LungtkError, match="^--seed: "):
            validate.seed(bad, "--seed")
    with pytest.raises(LungtkError, match="coordinate"):
        validate.coordinate(1e200, "coordX")


def test_number_lists_name_the_item():
    assert validate.number_list("1, 2 ,3", "--origin", 3) == [1.0, 2.0, 3.0]
    with pytest.raises(LungtkError, match="--origin takes 3 numbers"):
        validate.number_list("1,2", "--origin", 3)
    with pytest.raises(LungtkError, match=r"--spacing \(z\): '0' is out of range"):
        validate.number_list("1,1,0", "--spacing", 3, validate.positive, names=("x", "y", "z"))
    with pytest.raises(LungtkError, match=r"--origin \(y\): 'nan' is not a finite number"):
        validate.number_list("0,nan,0", "--origin", 3, names="xyz")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity", "NaN"])
def test_table_numbers_refuse_nan_and_infinity_by_default(tmp_path, cell):
    path = write(tmp_path, "t.csv", f"a,b\n1,{cell}\n")
    (row,) = read_rows(path)
    with pytest.raises(LungtkError, match=rf"t.csv: line 2, column 'b': '{cell}' is not a finite number"):
        number(row, "b", path, 1)
    assert optional_number({"b": ""}, "b", path, 1) is None


def test_table_lines_are_file_lines_across_blank_lines(tmp_path):
    path = write(tmp_path, "t.csv", "a,b\n\n1,2\n\n\n3,x\n")
    rows = read_table(path)
    assert [r.line for r in rows] == [3, 6]
    with pytest.raises(LungtkError, match="t.csv: line 6, column 'b': 'x' is not a number"):
        rows[1].number("b")
    assert rows[0].number("b") == 2.0


def test_table_rows_check_ranges_and_empty_cells(tmp_path):
    path = write(tmp_path, "t.csv", "uid,p\n,0.5\ns,1.5\n")
    first, second = read_table(path)
    with pytest.raises(LungtkError, match="t.csv: line 2, column 'uid': is empty"):
        first.text("uid")
    with pytest.raises(LungtkError, match="t.csv: line 3, column 'p': '1.5' is not a probability"):
        second.number("p", validate.probability)
    assert first.optional("missing") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a,a\n1,2\n", "names column 'a' more than once"),
        (b"a,b\n1\n", "line 2 has 1 cell"),
        (b"\xff\xfe\x00\x01", "not a UTF-8 text CSV file"),
        (b"a,b\n1," + b"x" * 200_000 + b"\n", "not a readable CSV file"),
        (b"", "no column 'a'"),
    ],
)
def test_broken_tables_are_one_line(tmp_path, content, message):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(LungtkError, match=message) as caught:
        read_rows(path, ("a",))
    assert "\n" not in str(caught.value)


def test_a_folder_or_a_missing_file(tmp_path):
    with pytest.raises(LungtkError, match="is a folder"):
        read_rows(tmp_path)
    with pytest.raises(LungtkError, match="no such file"):
        read_rows(tmp_path / "nope.csv")


def test_option_advice_only_for_a_command_that_has_the_option():
    exc = LungtkError("dir: holds 2 DICOM series", option="--series", advice="pick one with --series UID",
                      otherwise="convert one with `lungtk convert image`")  # fmt: skip
    assert str(exc) == "dir: holds 2 DICOM series; pick one with --series UID"
    assert exc.for_command({"--series", "--out"}) == str(exc)
    assert exc.for_command({"--ct"}) == "dir: holds 2 DICOM series; convert one with `lungtk convert image`"
    assert exc.for_command(None) == str(exc)
    plain = LungtkError("plain")
    assert plain.for_command({"--x"}) == "plain" == str(plain)


def test_number_columns_are_fast_and_checked(tmp_path):
    from lungtk.core.tables import number_column, read_columns

    path = write(tmp_path, "c.csv", "seriesuid,coordX,class\na,1.5,0\nb,-2,1\n")
    columns = read_columns(path)
    assert number_column(columns["coordX"], "coordX", path).tolist() == [1.5, -2.0]
    assert number_column([], "coordX", path).shape == (0,)
    for bad, message in (("nan", "not a finite number"), ("x", "not a number"), ("", "is empty")):
        with pytest.raises(LungtkError, match=rf"c.csv: line 3, column 'coordX': .*{message}"):
            number_column(["1", bad], "coordX", path)
    with pytest.raises(LungtkError, match="line 2, column 'p': '2' is not a probability"):
        number_column(["2"], "p", path, validate.probability)


def test_number_columns_name_the_file_line_below_blank_lines(tmp_path):
    from lungtk.core.tables import number_column, read_column_table

    path = write(tmp_path, "c.csv", "seriesuid,coordX\n\na,1\n\n\nb,nan\n")
    columns, lines = read_column_table(path)
    assert lines == [3, 6] and columns["seriesuid"] == ["a", "b"]
    with pytest.raises(LungtkError, match=r"c.csv: line 6, column 'coordX': 'nan' is not a finite"):
        number_column(columns["coordX"], "coordX", path, lines=lines)
    with pytest.raises(LungtkError, match=r"c.csv: line 6, column 'p': '2' is not a probability"):
        number_column(["0.5", "2"], "p", path, validate.probability, lines=lines)
