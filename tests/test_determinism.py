"""Same seed, same numbers: the main job run twice gives identical metrics in summary.json."""
import csv
import json
from pathlib import Path

from brainae.cli import main
from brainae.study import comparable


def test_the_study_twice_gives_identical_metrics(study_dir, tmp_path):
    again = tmp_path / "again"
    # the same command as the study_dir fixture (conftest.py), into a second folder
    code = main(["study", "--data", "phantom:120", "--epochs", "1", "--image-size", "32", "--no-progress",
                 "--set", "model.channels=[8,16,32]", "--set", "model.latent_dim=16", "--out", str(again)])
    assert code == 0
    first = json.loads((study_dir / "summary.json").read_text())
    second = json.loads((again / "summary.json").read_text())
    for name in ("ae", "vae"):
        test = second["models"][name]["test"]
        assert test["psnr"]["mean"] > 0 and test["n"] > 0  # there is something to compare
        assert comparable(second["models"][name]["test"]) == comparable(first["models"][name]["test"])
        assert comparable(second["models"][name]["train"]) == comparable(first["models"][name]["train"])
    assert comparable(second.get("sweeps")) == comparable(first.get("sweeps"))
    assert comparable(second.get("flags")) == comparable(first.get("flags"))
    assert (again / "runs" / "ae" / "history.csv").read_text().count("\n") > 1
    assert history(again) == history(study_dir)  # every epoch's losses, not only the final metrics


def history(study: Path) -> list[dict]:
    with open(study / "runs" / "ae" / "history.csv", newline="") as f:
        return [comparable(row) for row in csv.DictReader(f)]
