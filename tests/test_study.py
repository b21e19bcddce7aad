"""`brainae study` end to end on a small phantom set: runs, summary, one self-contained report."""
import json
import re

import pytest

from brainae.cli import main
from brainae.evaluation.evaluate import evaluate


def test_summary_holds_metrics_with_intervals_per_model_and_class(study_dir):
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["split"] == "test"
    assert set(summary["models"]) == {"ae", "vae"}
    for name, m in summary["models"].items():
        test = m["test"]
        assert test["split"] == "test" and test["n"] == sum(summary["data"]["counts"]["test"].values())
        for metric in ("mse", "psnr", "ssim"):
            lo, hi = test[metric]["ci95"]
            assert lo <= test[metric]["mean"] <= hi
        assert set(test["per_class"]) == {"no_tumor", "tumor"}
        assert (study_dir / "runs" / name / "eval" / "test.json").is_file()


def test_report_is_one_offline_file_with_every_section(study_dir):
    html = (study_dir / "report.html").read_text()
    for title in ["Data", "Configuration", "Training", "Held-out comparison", "Reconstructions"]:
        assert f">{title}</h2>" in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 3  # examples, loss curves, reconstructions
    assert not re.search(r'(src|href)="https?://', html)  # opens offline


def test_evaluate_on_another_dataset_writes_json(study_dir, capsys):
    run = study_dir / "runs" / "ae"
    code = main(["evaluate", str(run), "--data", "phantom:60", "--split", "val", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "val" in out and "no_tumor" in out and "tumor " in out  # overall and per class
    result = json.loads((run / "eval" / "val.json").read_text())
    assert result["data"] == "phantom:60" and result["n"] > 0
    direct = evaluate(run, data="phantom:60", split="val", progress=False)
    assert direct["psnr"]["mean"] == pytest.approx(result["psnr"]["mean"])
