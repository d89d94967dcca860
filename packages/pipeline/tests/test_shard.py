"""Sharding a run over processes, in process with stub components: the split deals every scan to exactly
one process, the merged shares write what one process writes (failed scans included), a merge with a
missing, doubled or differently configured share is refused, a killed process's scans are redone on
resume, and only a pipeline that other processes can build again is sent to them."""

from __future__ import annotations

import json
import pickle
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lungtk.core import Candidate, ComponentSpec, Geometry, LungtkError, NoduleMask, Registry
from lungtk.ct_io import write_image
from lungtk.pipeline import GivenCandidates, Pipeline, Ranks, run, run_processes, run_ranks, shard_of
from lungtk.pipeline.run import analyse_scans
from lungtk.pipeline.shard import merge

BROKEN = "scan-broken"  # sorted last: process 1 of 2 gets it


class BallDetector:
    """One candidate at the centre, as wide as the scan's dense voxels make a ball (differs per scan)."""

    def __init__(self, options):
        self.options = options

    def detect(self, ct):
        voxel_mm3 = float(np.prod(ct.geometry.spacing))
        volume = float((np.asarray(ct.array) > -500).sum()) * voxel_mm3
        diameter = 2 * (3 * volume / (4 * np.pi)) ** (1 / 3)
        centre = ct.geometry.irc2xyz(np.array(ct.array.shape) // 2)
        return [Candidate(tuple(float(v) for v in centre), diameter, 0.9)]


class BallSegmenter:
    def __init__(self, options):
        self.options = options

    def segment(self, ct, candidates):
        masks = []
        for c in candidates:
            geometry = ct.geometry.shifted(ct.geometry.xyz2irc(c.center_xyz) - 6)
            mm = (np.indices((13, 13, 13)) - 6) * ct.geometry.spacing_irc[:, None, None, None]
            masks.append(NoduleMask(np.sqrt((mm**2).sum(0)) <= c.diameter_mm / 2, geometry))
        return masks


class Malignancy:
    def __init__(self, options):
        self.options = options

    def classify(self, ct, findings):
        p = float(self.options.settings["malignant"])
        return [{"malignancy": {"benign": 1 - p, "malignant": p}} for _ in findings]


def _registry() -> Registry:
    registry = Registry()
    registry.add(ComponentSpec("ball-det", "detector", BallDetector, cpu_only=True))
    registry.add(ComponentSpec("ball-seg", "segmenter", BallSegmenter, cpu_only=True))
    registry.add(
        ComponentSpec("malig", "classifier", Malignancy, settings={"malignant": 0.25}, cpu_only=True)
    )
    return registry


def _pipeline(malignant: float = 0.25) -> Pipeline:
    return Pipeline.from_registry(
        _registry(),
        "ball-det",
        "ball-seg",
        ["malig"],
        device="cpu",
        settings={"malig": {"malignant": malignant}},
    )


def _scans(folder: Path, n: int = 5) -> list[tuple[str, Path]]:
    """``n`` small scans whose nodules differ in size (so a scan's findings show which scan they are
    from), in an order that is not sorted by name, and an unreadable one."""
    scans = []
    for i in range(n):
        radius = 3.0 + 0.5 * i
        grid = np.indices((24, 40, 40)).astype(float)
        mm = (grid - np.array([12, 20, 20.0])[:, None, None, None]) * np.array([1.5, 0.8, 0.8])[
            :, None, None, None
        ]
        hu = np.where(np.sqrt((mm**2).sum(axis=0)) <= radius, 40, -850).astype(np.int16)
        uid = f"scan-{(7 * i) % n}"
        path = folder / f"{uid}.mhd"
        write_image(path, hu, Geometry((-20.0, 10.0, -100.0), (0.8, 0.8, 1.5)))
        scans.append((uid, path))
    broken = folder / f"{BROKEN}.mhd"
    broken.write_text("ObjectType = Image\nNDims = 3\nElementDataFile = nowhere.raw\n")
    scans.insert(2, (BROKEN, broken))
    return scans


def _comparable(findings_json: Path) -> dict:
    """findings.json without what differs between two runs of the same scans (clock and memory)."""
    data = json.loads(findings_json.read_text(encoding="utf-8"))
    for key in ("created", "timings_s", "peak_rss_mb"):
        data.pop(key)
    for scan in data["scans"]:
        scan.pop("timings_s")
    return data


@pytest.mark.parametrize("n", [0, 1, 5, 7, 20])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shard_of_deals_every_scan_to_exactly_one_process(n, world):
    scans = [(f"uid-{(11 * i) % max(n, 1):03d}-{i}", Path(f"/data/{i}.mhd")) for i in range(n)]
    shares = [shard_of(scans, rank, world) for rank in range(world)]
    dealt = [scan for share in shares for scan in share]
    assert sorted(dealt) == sorted(scans)  # every scan, each once
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1
    for share in shares:  # a share keeps the order the scans were given in
        assert share == [scan for scan in scans if scan in share]
    shuffled = random.Random(n * 31 + world).sample(scans, len(scans))
    for rank in range(world):  # every process computes the same split, whatever the order it was given
        assert sorted(shard_of(shuffled, rank, world)) == sorted(shares[rank])


@pytest.mark.parametrize(("rank", "world"), [(2, 2), (-1, 2), (0, 0)])
def test_shard_of_refuses_a_rank_outside_the_world(rank, world):
    with pytest.raises(ValueError, match="rank"):
        shard_of([("a", Path("a.mhd"))], rank, world)


@pytest.mark.parametrize("world", [2, 3])
def test_merged_shares_write_what_one_process_writes(tmp_path, world):
    scans = _scans(tmp_path)
    single = run(_pipeline(), scans, tmp_path / "one")
    out = tmp_path / "sharded"
    started = time.perf_counter()
    parts = [analyse_scans(_pipeline(), shard_of(scans, rank, world), out) for rank in range(world)]
    assert sum(len(p.scans) for p in parts) == len(scans) and all(p.scans for p in parts)
    merged = merge(_pipeline(), scans, out, parts[::-1], started=started)  # in any order of the parts

    assert [s["seriesuid"] for s in merged.scans] == [uid for uid, _ in scans]
    assert [s["seriesuid"] for s in merged.failed] == [BROKEN]
    for name in ("findings.csv", "fleischner.json"):
        assert (out / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert _comparable(out / "findings.json") == _comparable(tmp_path / "one" / "findings.json")
    assert json.loads((out / "findings.json").read_text())["failed"] == 1
    diameters = [row["diameter_mm"] for row in merged.findings]
    assert len(set(diameters)) == len(scans) - 1  # each scan's own finding, in the order given
    assert diameters == [row["diameter_mm"] for row in single.findings]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert all(f">{uid}</h2>" in page for uid, _ in scans) and "MetaImage header" in page


def test_merge_refuses_a_missing_doubled_or_differently_configured_share(tmp_path):
    scans = _scans(tmp_path, 4)
    out = tmp_path / "out"
    parts = [analyse_scans(_pipeline(), shard_of(scans, rank, 2), out) for rank in range(2)]
    with pytest.raises(LungtkError, match=r"scan\(s\) were analysed by no process"):
        merge(_pipeline(), scans, out, parts[:1], started=0.0)
    with pytest.raises(LungtkError, match="was analysed by two processes"):
        merge(_pipeline(), scans, out, [*parts, parts[1]], started=0.0)
    with pytest.raises(LungtkError, match="which is not one of this run's"):
        merge(_pipeline(), scans[:-1], out, parts, started=0.0)
    other = analyse_scans(_pipeline(malignant=0.5), shard_of(scans, 1, 2), tmp_path / "other")
    with pytest.raises(LungtkError, match="process 1 analysed its scans with other components or settings"):
        merge(_pipeline(), scans, out, [parts[0], other], started=0.0)
    assert not (out / "findings.csv").exists()  # nothing merged from a wrong set of shares


def test_a_killed_process_s_scans_are_redone_on_resume(tmp_path):
    scans = _scans(tmp_path)
    out = tmp_path / "out"
    finished = shard_of(scans, 1, 2)  # process 1 finished its share; process 0 was killed at its start
    analyse_scans(_pipeline(), finished, out)
    assert BROKEN in [uid for uid, _ in finished]  # a failed scan is never reused: it is tried again

    seen: dict[str, str] = {}
    summary = run(
        _pipeline(), scans, out, resume=True, on_scan=lambda uid, status, _: seen.update({uid: status})
    )
    expected = {uid: "reused" for uid, _ in finished} | {uid: "done" for uid, _ in shard_of(scans, 0, 2)}
    assert seen == expected | {BROKEN: "failed"}
    assert summary.resumed == len(finished) - 1
    run(_pipeline(), scans, tmp_path / "fresh")
    assert (out / "findings.csv").read_bytes() == (tmp_path / "fresh" / "findings.csv").read_bytes()


def test_only_a_pipeline_other_processes_can_build_is_sent_to_them(tmp_path):
    scans = _scans(tmp_path, 2)
    with pytest.raises(LungtkError, match=r"detector 'ball-det' \(.*\) is not an installed plugin"):
        run_processes(_pipeline(), scans, tmp_path / "out", 2)
    with pytest.raises(LungtkError, match="not built by Pipeline.from_registry"):
        run_processes(replace(_pipeline(), recipe=None), scans, tmp_path / "out", 2)
    for nproc in (0, 257):
        with pytest.raises(LungtkError, match=f"nproc: {nproc} is out of range"):
            run_processes(_pipeline(), scans, tmp_path / "out", nproc)
    assert not (tmp_path / "out" / "scans").exists()  # refused before any scan was analysed


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("coordX,coordY,coordZ,diameter_mm\n1,2,3,4\n", "no column 'seriesuid'"),  # whose nodules?
        ("seriesuid,coordX,coordY,coordZ,diameter_mm\n,1,2,3,4\n", "column 'seriesuid': is empty"),
        ("seriesuid,coordX,coordY,coordZ,diameter_mm\nscan-1,1,2,3,-4\n", "diameter_mm"),
    ],
)
def test_annotations_that_cannot_be_matched_are_refused_before_any_scan(tmp_path, table, message):
    scans = _scans(tmp_path, 2)
    truth = tmp_path / "annotations.csv"
    truth.write_text(table)
    out = tmp_path / "out"
    starts = {
        "run": lambda: run(_pipeline(), scans, out, truth=truth),
        "run_processes": lambda: run_processes(_pipeline(), scans, out, 2, truth=truth),
        "run_ranks": lambda: run_ranks(_pipeline(), scans, out, Ranks(0, 2, 0), truth=truth),
    }
    for name, start in starts.items():
        with pytest.raises(LungtkError, match=message) as caught:
            start()
        assert "\n" not in str(caught.value), name
        assert not (out / "scans").exists(), name  # refused before any scan was analysed


def test_the_recipe_rebuilds_the_same_pipeline_and_travels_with_given_locations(tmp_path):
    given = GivenCandidates({"a": [Candidate((1.0, 2.0, 3.0), 6.0, 1.0)]}, table="clicks.csv")
    pipe = Pipeline.from_registry(
        _registry(), given, "ball-seg", ["malig"], device="cpu", settings={"malig": {"malignant": 0.5}}
    )
    recipe = pickle.loads(pickle.dumps(pipe.recipe))  # what another process receives
    assert recipe == pipe.recipe
    assert recipe.detector.by_scan == given.by_scan and recipe.classifiers == ("malig",)
    assert recipe.settings == {"malig": {"malignant": 0.5}} and recipe.device == "cpu"
    assert recipe.options == {}  # threshold, scheme and risk: the defaults


MASTER = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}  # torchrun sets these with WORLD_SIZE


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Ranks(0, 1, 0)),
        ({"WORLD_SIZE": "1", "RANK": "0"}, Ranks(0, 1, 0)),
        ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", **MASTER}, Ranks(3, 4, 1)),
        ({"WORLD_SIZE": "2", "RANK": "1", **MASTER}, Ranks(1, 2, 0)),
    ],
)
def test_ranks_come_from_torchrun_s_environment(env, expected):
    assert Ranks.from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two': not a whole number of 1 or more"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0': not a whole number of 1 or more"),
        ({"WORLD_SIZE": "2"}, "RANK='': not a whole number of 0 or more"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 with WORLD_SIZE=2: a rank is 0 to WORLD_SIZE-1"),
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "-1"}, "LOCAL_RANK='-1'"),
        ({"WORLD_SIZE": "2", "RANK": "1"}, "WORLD_SIZE=2 but MASTER_ADDR and MASTER_PORT not set"),
        ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "h"}, "WORLD_SIZE=2 but MASTER_PORT not set"),
    ],
)
def test_a_bad_torchrun_environment_is_one_line(env, message):
    with pytest.raises(LungtkError, match=message.replace("(", r"\(")) as caught:
        Ranks.from_env(env)
    assert "\n" not in str(caught.value)
