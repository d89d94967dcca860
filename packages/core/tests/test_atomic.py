"""Atomic writes: whole files or nothing, with ordinary permissions."""

import errno
import os
import stat
import tempfile

import pytest

from lungtk.core import atomic_path, write_text


def test_written_files_get_umask_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "out.csv", "a,b\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "a,b\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("write", errno.ENOSPC),  # a full disk: write() raises with no file name
        ("write", errno.EDQUOT),
        ("create", errno.EACCES),  # a read-only folder: creating the temporary file fails
        ("create", errno.EROFS),
        ("replace", errno.EACCES),
    ],
)
def test_a_failed_write_names_the_target_not_the_temporary_file(tmp_path, monkeypatch, where, code):
    target = tmp_path / "findings.csv"
    if where == "create":

        def mkstemp(prefix, suffix, dir):
            raise OSError(code, os.strerror(code), os.path.join(dir, f"{prefix}abc123{suffix}"))

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    elif where == "replace":

        def replace(src, dst):
            raise OSError(code, os.strerror(code), os.fspath(src), os.fspath(dst))

        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        if where == "write":
            raise OSError(code, os.strerror(code))
        tmp.write_text("x")
    assert info.value.errno == code and info.value.filename == str(target)
    assert ".tmp" not in str(info.value) and isinstance(info.value, type(OSError(code, "")))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".findings.csv.")]


def test_an_error_about_another_file_keeps_its_name(tmp_path):
    other = tmp_path / "source.raw"
    with pytest.raises(FileNotFoundError) as info, atomic_path(tmp_path / "copy.raw") as tmp:
        tmp.write_bytes(other.read_bytes())
    assert info.value.filename == str(other)
