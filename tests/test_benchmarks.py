"""The accounting of the benchmark scripts whose numbers decide the issues' goals (no training here)."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
sweep_efficiency = pytest.importorskip("sweep_efficiency")
architectures = pytest.importorskip("architectures")
vae_samples = pytest.importorskip("vae_samples")


def _table(n=27):
    return {(("lr", i),): 1.0 + i for i in range(n)}  # config i has loss 1 + i; config 0 is the best


def test_random_search_with_and_without_repeats():
    table = _table()
    with_rep = sweep_efficiency.random_search(table, seed=0, trials=40, epochs=10)
    assert with_rep["epochs_naive"] == 400 and with_rep["unique_configs"] < 27
    assert with_rep["epochs_run"] == 10 * with_rep["unique_configs"]
    no_rep = sweep_efficiency.random_search(table, seed=0, trials=40, epochs=10, repeats=False)
    assert no_rep["unique_configs"] == 27 and no_rep["epochs_naive"] == no_rep["epochs_run"] == 270
    assert no_rep["best_val_loss"] == 1.0  # it covers the whole grid
    few = sweep_efficiency.random_search(table, seed=3, trials=5, epochs=10, repeats=False)
    assert few["unique_configs"] == 5 and few["epochs_run"] == 50


def test_each_accounting_compares_against_its_own_random_search():
    table = _table()
    base = {"seed": 0, "method": sweep_efficiency.BASE, "best_val_loss": 2.0, "epochs_run": 200,
            "epochs_naive": 400, "unique_configs": 20}
    norep = {"seed": 0, "method": sweep_efficiency.NO_REPEATS, "best_val_loss": 1.0, "epochs_run": 270,
             "epochs_naive": 270, "unique_configs": 27}
    tpe = {"seed": 0, "method": "tpe + sha", "best_val_loss": 1.0, "epochs_run": 70, "epochs_naive": 400}
    summary = sweep_efficiency.summarise([base, norep, tpe], ["tpe + sha"], table, tolerance=0.05)
    assert tpe["per_trial"] == {"epochs_fraction": 0.175, "best_loss_vs_random": -0.5, "goal_met": True}
    assert tpe["no_repeats"]["epochs_fraction"] == pytest.approx(70 / 270, abs=1e-4)
    assert tpe["no_repeats"]["goal_met"] is True
    assert tpe["distinct"] == {"epochs_fraction": 0.35, "best_loss_vs_random": -0.5, "goal_met": False}
    row = next(r for r in summary if r["method"] == "tpe + sha")
    assert row["per_trial"]["goal_met"] and not row["distinct"]["goal_met"]
    assert row["grid_rank_of_best"] == [1]
    worse = dict(tpe, best_val_loss=1.2, per_trial=None)  # 20% worse than random without repeats
    sweep_efficiency.summarise([base, norep, worse], ["tpe + sha"], table, tolerance=0.05)
    assert worse["no_repeats"]["goal_met"] is False and worse["per_trial"]["goal_met"] is True


class _Val:
    """A class-ordered split, as the real validation split is."""

    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.labels)

    def subset(self, index):
        return _Val(self.labels[index])


def test_the_denoising_sample_is_drawn_across_the_split_not_its_first_images():
    val = _Val([0] * 50 + [1] * 50 + [2] * 20 + [3] * 50)
    sample = architectures.denoise_sample(val, 60)
    assert len(sample) == 60 and len(set(sample.labels.tolist())) == 4
    assert len(architectures.denoise_sample(val, 500)) == len(val)
    assert (architectures.denoise_sample(val, 60).labels == sample.labels).all()  # seeded


def test_frechet_distance_of_gaussian_feature_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert vae_samples.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    shifted = a + np.array([2.0, 0.0, 0.0])  # same covariance: the squared shift of the means
    assert vae_samples.frechet_distance(a, shifted) == pytest.approx(4.0, abs=1e-6)
    wider = rng.normal(size=(4000, 3)) * 3  # variances 1 and 9: per dimension (1 - 3)^2 = 4
    assert vae_samples.frechet_distance(a, wider) == pytest.approx(12.0, rel=0.05)


def test_nearest_psnr_finds_the_closest_reference():
    rng = np.random.default_rng(0)
    refs = rng.random((5, 8, 8))
    queries = np.stack([refs[3] + 0.1, refs[1]])
    got = vae_samples.nearest_psnr(queries, refs)
    assert got[0] == pytest.approx(20.0, abs=1e-6)  # an error of 0.1 everywhere: 20 dB
    assert got[1] == pytest.approx(100.0)  # an exact copy, capped


def test_vae_goal_compares_with_the_study_recipe_at_the_same_epochs():
    def row(model, epochs, psnr, overrides=("x",)):
        return {"role": "vae", "model": model, "epochs": epochs, "latent_dim": 512, "bypasses_bottleneck": False,
                "overrides": list(overrides), "val_psnr": {"mean": psnr}}

    rows = {"study_vae": row("vae", 6, 19.0, ()), "study_vae_long": row("vae", 40, 21.5, ()),
            "short": row("resvae", 6, 22.1), "long": row("resvae", 40, 24.0)}
    goals = architectures.check_goals(rows, {"skipped": "no DAE"})
    assert goals["vae_plus_3db"] == {"variant": "long", "gain_db": 5.0, "met": True}
    same = goals["vae_plus_3db_same_epochs"]
    assert same["variant"] == "short" and same["baseline"] == "study_vae" and same["gain_db"] == 3.1 and same["met"]
    rows["long"]["val_psnr"]["mean"] = 25.0  # now 3.5 dB above the 40-epoch recipe: the larger same-budget gain
    same = architectures.check_goals(rows, {"skipped": "no DAE"})["vae_plus_3db_same_epochs"]
    assert (same["variant"], same["baseline"], same["gain_db"]) == ("long", "study_vae_long", 3.5)


def test_diagonal_draws_match_each_units_spread_but_not_their_correlation():
    import torch

    from brainae.models.prior import MixturePrior

    t = torch.randn(500, 1, generator=torch.Generator().manual_seed(0))
    prior = MixturePrior.fit(torch.cat([t, 2 * t], dim=1), components=1)
    draws = vae_samples.diagonal_draws(prior, 4000, torch.Generator().manual_seed(1))
    assert torch.allclose(draws.std(dim=0), torch.tensor([1.0, 2.0]), rtol=0.1)
    assert abs(float(torch.corrcoef(draws.T)[0, 1])) < 0.1


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
MACHINE_PATH = re.compile(r"(?<![\w.<>])/(?:work|tmp|home|root|mnt|Users|scratch|var)/|\.\./\.\./")


def test_results_files_name_no_machine_paths():
    found = [f"{f.relative_to(RESULTS)}: {m.group(0)}"
             for f in sorted(RESULTS.rglob("*")) if f.is_file() and f.suffix in (".json", ".md", ".log", ".csv", ".txt")
             for m in [MACHINE_PATH.search(f.read_text(errors="replace"))] if m]
    assert not found, found


def test_command_lines_record_portable_paths(monkeypatch, tmp_path):
    train_real = pytest.importorskip("train_real")
    monkeypatch.setattr(train_real.tempfile, "gettempdir", lambda: str(tmp_path))
    beside = train_real.ROOT.parent / "shared" / "data" / "brain-tumor-mri"
    assert train_real.portable_path(beside) == "../shared/data/brain-tumor-mri"
    assert train_real.portable_path(train_real.ROOT / "benchmarks") == "benchmarks"
    assert train_real.portable_path(tmp_path / "arch" / "runs") == "<tmp>/arch/runs"
    elsewhere = Path("/nowhere-like-this/mri/Training")
    if not elsewhere.is_relative_to(train_real.ROOT.parent):
        assert train_real.portable_path(elsewhere) == "<outside>/mri/Training"
    argv = ["--work", str(tmp_path / "runs"), f"--data={beside}", "--epochs", "6"]
    assert train_real.command_line("architectures.py", argv) == (
        "python benchmarks/architectures.py --work <tmp>/runs --data=../shared/data/brain-tumor-mri --epochs 6")
    assert not MACHINE_PATH.search(train_real.command_line("architectures.py", argv))


def test_machine_names_the_vector_units_that_decide_the_precision(monkeypatch):
    train_real = pytest.importorskip("train_real")
    monkeypatch.setattr(train_real.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train_real, "cpu_flags", lambda: frozenset({"fma", "avx2"}))
    monkeypatch.setattr(train_real, "cpu_name", lambda: "AMD EPYC")
    assert train_real.machine().startswith("AMD EPYC, ") and "cores (AVX2, no native bf16), torch " in train_real.machine()
    monkeypatch.setattr(train_real, "cpu_flags", lambda: frozenset())
    assert "cores, torch " in train_real.machine()  # no flags to read: nothing said about them


def test_cpu_benchmarks_time_the_precision_brainae_picks(monkeypatch):
    import torch

    conv_bias = pytest.importorskip("conv_bias")
    from brainae.training import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert conv_bias.cpu_precision() == ("float32", torch.float32)  # not an emulated bf16
    assert not torch.is_autocast_enabled("cpu")
    with conv_bias.cpu_autocast(torch.float32):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert conv_bias.cpu_precision() == ("bf16 autocast", torch.bfloat16)
    with conv_bias.cpu_autocast(torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
