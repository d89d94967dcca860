"""``jobs``: scans made in several processes give the very same files, report progress in index order, and
fail as the serial path fails."""

from __future__ import annotations

import resource

import pytest

from lungtk.core import LungtkError
from lungtk.phantom import PhantomScan, ScanSummary, dataset, write_phantoms

TINY = (32, 64, 64)


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_any_number_of_jobs_writes_the_same_bytes_and_reports_scans_in_order(tmp_path):
    seen: dict[int, list] = {1: [], 3: []}
    for jobs in seen:
        write_phantoms(
            tmp_path / f"jobs{jobs}",
            4,
            seed=21,
            shape=TINY,
            oblique=True,
            n_nodules=2,
            previews=True,
            jobs=jobs,
            on_scan=lambda i, scan, jobs=jobs: seen[jobs].append((i, scan)),
        )
    serial, parallel = files(tmp_path / "jobs1"), files(tmp_path / "jobs3")
    assert (
        len(serial) == 1 + 6 + 4 * 5
    )  # phantom.json, six tables; per scan .mhd+.raw of image and mask, preview
    assert serial.keys() == parallel.keys()
    assert [name for name in serial if serial[name] != parallel[name]] == []
    assert [i for i, _ in seen[1]] == [i for i, _ in seen[3]] == [0, 1, 2, 3]
    assert all(isinstance(scan, PhantomScan) for _, scan in seen[1])
    assert all(isinstance(scan, ScanSummary) for _, scan in seen[3])
    assert [s.series_uid for _, s in seen[1]] == [s.series_uid for _, s in seen[3]]
    assert [s.nodules for _, s in seen[1]] == [s.nodules for _, s in seen[3]]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


class Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("jobs", "n", "cores", "workers"), [(0, 9, 5, 5), (0, 2, 5, 2), (8, 3, 1, 3), (1, 9, 5, 1)]
)
def test_jobs_zero_means_every_core_and_never_more_than_the_scans(
    tmp_path, monkeypatch, jobs, n, cores, workers
):
    used = []

    def write_set(*args):
        used.append(args[-1])
        raise Stop

    monkeypatch.setattr(dataset, "available_cores", lambda: cores)
    monkeypatch.setattr(dataset, "_write_set", write_set)
    with pytest.raises(Stop):
        write_phantoms(tmp_path / "out", n, shape=TINY, shapes="parametric", jobs=jobs)
    assert used == [workers]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("jobs", [-1, 257, 10**9, 2.5, "2"])
def test_bad_jobs_are_one_line(tmp_path, jobs):
    with pytest.raises(
        LungtkError, match=r"^--jobs must be a whole number of processes from 0 .* to 256; got"
    ):
        write_phantoms(tmp_path / "out", 2, shape=TINY, shapes="parametric", jobs=jobs)
    assert list(tmp_path.iterdir()) == []


def test_a_worker_that_cannot_write_fails_as_the_serial_path_does(tmp_path):
    """A file size limit (inherited by the worker processes) stands in for a full disk: the image of a
    TINY scan (256 KiB) is over it, the tables are not."""
    errors = {}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    try:
        for jobs in (1, 2):
            with pytest.raises(LungtkError) as err:
                write_phantoms(tmp_path / "set", 3, seed=2, shape=TINY, shapes="parametric", jobs=jobs)
            errors[jobs] = str(err.value)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert errors[1] == errors[2]
    assert errors[2].startswith(
        f"{tmp_path / 'set'}: cannot write the phantom set: cannot write (File too large)"
    )
    assert ".phantom-" not in errors[2] and ".tmp" not in errors[2]
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone
