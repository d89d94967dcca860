"""``lungtk eval cls`` on a hand-made data set: every figure against scikit-learn on the cases it must pick."""

import json

import numpy as np
from sklearn import metrics as skm

UID = "1.2.3"
NODULES = [  # x, y, z, diameter, malignancy rating, texture rating, pathology
    (0, 0, 0, 10, 4.5, 5.0, ""),
    (50, 0, 0, 8, 2.0, 1.5, "AAH+AIS"),
    (0, 50, 0, 12, 3.5, 3.0, "IAC"),
    (0, 0, 50, 6, 1.0, 5.0, ""),
]


def _dataset(root):
    (root / "subset0").mkdir(parents=True)
    rows = ["seriesuid,coordX,coordY,coordZ,diameter_mm,malignancy,texture,pathology"]
    rows += [f"{UID},{x},{y},{z},{d},{m},{t},{p}" for x, y, z, d, m, t, p in NODULES]
    (root / "annotations_with_malignancy.csv").write_text("\n".join(rows) + "\n")
    (root / "annotations_excluded.csv").write_text(
        f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{UID},90,90,90,4\n"
    )


def test_eval_cls_matches_scikit_learn(tmp_path, lungtk_cli):
    truth = tmp_path / "data"
    _dataset(truth)
    findings = tmp_path / "findings.csv"
    lines = [
        "seriesuid,coordX,coordY,coordZ,probability,diameter_mm,volume_mm3,texture,malignancy,pathology",
        f"{UID},1,0,0,0.9,10,,solid,0.8,",  # nodule 0 (malignant), the best of two hits
        f"{UID},-1,0,0,0.4,10,,ground-glass,0.1,",  # nodule 0 again, lower probability: not used
        f"{UID},50,2,0,0.7,8,,ground-glass,0.6,MIA",  # nodule 1 (benign), pathology wrong
        f"{UID},0,53,0,0.3,12,,part-solid,0.3,IAC",  # nodule 2 (malignant): filtered out below 0.5
        f"{UID},30,30,30,0.6,5,,solid,0.2,",  # a false positive
        f"{UID},90,90,91,0.8,4,,solid,0.5,",  # on the excluded mark: left out of the nodule task
    ]  # nodule 3 is missed
    findings.write_text("\n".join(lines) + "\n")
    done = lungtk_cli(
        "eval", "cls", "--findings", findings, "--truth", truth, "--json", "--bootstrap", "50", check=0
    )
    result = json.loads(done.stdout)

    nodule_truth, nodule_score = [1, 1, 1, 1, 0], [0.9, 0.4, 0.7, 0.3, 0.6]
    assert result["nodule"]["n"] == 5
    assert result["nodule"]["auc"] == np.float64(skm.roc_auc_score(nodule_truth, nodule_score))
    assert result["nodule"]["accuracy"] == skm.accuracy_score(nodule_truth, np.array(nodule_score) >= 0.5)

    mal_truth, mal_score = [1, 0, 1], [0.8, 0.6, 0.3]
    assert result["malignancy"]["auc"] == skm.roc_auc_score(mal_truth, mal_score)
    assert result["malignancy"]["mcc"] == skm.matthews_corrcoef(mal_truth, np.array(mal_score) >= 0.5)
    assert (
        result["malignancy"]["confusion"]
        == skm.confusion_matrix(mal_truth, np.array(mal_score) >= 0.5).tolist()
    )

    tex_truth, tex_pred = [2, 0, 1], [2, 0, 1]  # solid / ground-glass / part-solid by their ratings
    assert result["texture"]["accuracy"] == 1.0 and result["texture"]["n"] == len(tex_truth) == len(tex_pred)
    assert (
        result["pathology"]["n"] == 2 and result["pathology"]["accuracy"] == 0.5
    )  # MIA for AAH+AIS, IAC right

    e2e = result["end_to_end"]
    assert e2e["malignant"] == {
        "missed": 0,
        "filtered out": 1,
        "predicted benign": 0,
        "predicted malignant": 1,
    }
    assert e2e["benign"] == {"missed": 1, "filtered out": 0, "predicted benign": 0, "predicted malignant": 1}
    assert e2e["non-nodule"] == {
        "missed": 0,
        "filtered out": 0,
        "predicted benign": 1,
        "predicted malignant": 0,
    }


def test_eval_cls_bad_input_is_one_line(tmp_path, lungtk_cli):
    truth = tmp_path / "data"
    _dataset(truth)
    findings = tmp_path / "findings.csv"
    findings.write_text(f"seriesuid,coordX,coordY,coordZ,probability\n{UID},1,0,0,1.7\n")
    done = lungtk_cli("eval", "cls", "--findings", findings, "--truth", truth, check=1)
    assert "probability" in done.stderr and "Traceback" not in done.stderr
    findings.write_text(f"seriesuid,coordX,coordY,coordZ,probability,texture\n{UID},1,0,0,0.7,glassy\n")
    done = lungtk_cli("eval", "cls", "--findings", findings, "--truth", truth, check=1)
    assert "'glassy' is not one of" in done.stderr
    done = lungtk_cli("eval", "cls", "--findings", findings, "--truth", truth, "--task", "colour", check=1)
    assert "--task colour" in done.stderr
