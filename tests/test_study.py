"""`brainae study` end to end on a small phantom set: runs, summary, one self-contained report."""
import json
import re

import pytest

from brainae.cli import main
from brainae.evaluation.evaluate import evaluate
from report_html import report_sections


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
    # the linear baseline: as many components as the codes have numbers (or the training images span), same split
    pca = summary["baselines"]["pca"]
    n_train = sum(summary["data"]["counts"]["train"].values())
    assert pca["latent_dim"] == min(summary["models"]["ae"]["test"]["latent_dim"], n_train - 1)
    assert pca["n"] == summary["models"]["ae"]["test"]["n"] and set(pca["per_class"]) == {"no_tumor", "tumor"}


def test_report_is_one_offline_file_with_every_section(study_dir):
    html = (study_dir / "report.html").read_text()
    sections = report_sections(html)
    assert {"data", "config", "training", "comparison", "reconstructions"} <= set(sections)
    assert all(sections[s].images >= 1 for s in ("data", "training", "reconstructions"))  # examples, curves, grids
    rows = sections["comparison"].table_with("PSNR (dB)")
    assert [r["model"] for r in rows] == ["AE", "VAE", "PCA (linear baseline)"] and all(r["n"] == rows[0]["n"] for r in rows)
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


def test_evaluate_scores_the_pca_baseline_beside_the_run_on_request(study_dir, capsys):
    run = study_dir / "runs" / "ae"
    assert main(["evaluate", str(run), "--baseline", "pca", "--no-progress"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("ae ", "pca "))]
    assert [r[0] for r in rows] == ["ae", "pca"]
    result = json.loads((run / "eval" / "test.json").read_text())
    summary = json.loads((study_dir / "summary.json").read_text())
    # fitted on the run's own training split: the study's row for the same split and code size
    assert result["baselines"]["pca"]["psnr"] == summary["baselines"]["pca"]["psnr"]
    assert rows[1][1] == str(result["baselines"]["pca"]["latent_dim"])
    assert result["baselines"]["pca"]["split"] == "test"
    # another split: the baseline scores that split and says so
    assert main(["evaluate", str(run), "--split", "val", "--baseline", "pca", "--no-progress"]) == 0
    val = json.loads((run / "eval" / "val.json").read_text())
    assert val["split"] == val["baselines"]["pca"]["split"] == "val"
    assert val["baselines"]["pca"]["n"] == val["n"] and val["baselines"]["pca"]["psnr"] != result["baselines"]["pca"]["psnr"]


def test_study_compares_new_architectures_with_their_latent_size_parameters_and_bypass(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(["study", "--data", "phantom:80", "--epochs", "1", "--image-size", "32", "--no-progress", "--no-sweep",
                 "--models", "resae,skipae,unet", "--skips", "0", "--set", "model.channels=[8,16,32]",
                 "--set", "model.latent_dim=16", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "bypass" in printed and "copy its input" in printed  # the console table warns too
    summary = json.loads((out / "summary.json").read_text())
    tests = {m: r["test"] for m, r in summary["models"].items()}
    assert list(tests) == ["resae", "skipae", "unet"]
    assert {m: t["bypasses_bottleneck"] for m, t in tests.items()} == {"resae": False, "skipae": True, "unet": True}
    assert tests["resae"]["latent_dim"] == tests["skipae"]["latent_dim"] == 16
    assert tests["resae"]["parameters"] == tests["skipae"]["parameters"]  # skips are added: same network
    assert tests["unet"]["latent_dim"] == 32 * 8 * 8  # the values on its deepest map
    sections = report_sections((out / "report.html").read_text())
    rows = sections["comparison"].table_with("skips bypass the bottleneck")
    assert {r["model"]: r["skips bypass the bottleneck"] for r in rows} == {
        "RESAE": "no", "SKIPAE": "yes", "UNET": "yes", "PCA (linear baseline)": "no"}
    # the baseline codes as many numbers as the bottleneck model (resae; the others bypass theirs)
    assert rows[-1]["latent size"] == "16"
    # the latent views show only the true bottleneck model
    assert "RESAE" in sections["latent"].text and "UNET" not in sections["latent"].text
    # a network whose skips bypass its code has no code size for PCA to match
    capsys.readouterr()
    assert main(["evaluate", str(out / "runs" / "unet"), "--baseline", "pca", "--no-progress"]) == 2
    assert "--baseline pca needs a bottleneck model" in capsys.readouterr().err


def test_study_rejects_an_unknown_model(capsys):
    assert main(["study", "--models", "ae,nope", "--out", "x"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
