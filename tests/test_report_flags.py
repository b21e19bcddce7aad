"""The report's automatic checks (brainae.report.flags): each fires on a hand-made case and stays
quiet on its near miss, and the "Read me first" box feeds them from a study and pins them to sections."""
import doctest
import math
from types import SimpleNamespace

import numpy as np
import pytest

from brainae.report import flags
from brainae.report.readme import mark_sections, preset_note, readme_section, study_flags
from brainae.report.sections import Section
from brainae.visualization.latent import code_statistics


def history(*val_losses):
    return [{"epoch": e, "train_loss": v, "val_loss": v} for e, v in enumerate(val_losses, 1)]


def ids(found):
    return [f["id"] for f in found]


def test_every_flag_has_the_fields_the_report_reads():
    found = flags.all_flags({"ae": history(3.0, 2.0)}, {"ae": {"diverged": True}},
                            latent={"ae": {"effective_dims": 1.0, "pc1": 1.0, "dim": 8, "active_units": None}},
                            sweeps={"ae": {"states": {"complete": 1}, "importances": {"values": {}}}},
                            anomaly=({"ae": {"mse": 0.7}}, {"ae": {"mse": 0.7}}),
                            linear=({"ae": psnr_row(20.0)}, psnr_row(21.5)))
    assert ids(found) == ["not_converged", "diverged", "below_linear", "collapsed_latent", "sweep_too_small",
                          "untrained_anomaly"]
    for f in found:
        assert set(f) == {"id", "section", "fold", "models", "title", "text", "warning"}
        assert f["models"] == ["ae"] and f["text"].count(". ") == 0  # one sentence
        assert f["section"] in ("training", "comparison", "latent", "sweeps", "anomaly")


def psnr_row(db, **facts):
    return {"psnr": {"mean": db, "ci95": [db - 0.3, db + 0.3]}, "latent_dim": 512, **facts}


# --- below a linear code -----------------------------------------------------------------------

def test_below_linear_names_the_bottleneck_models_at_or_under_the_pca_row():
    found = flags.below_linear({"ae": psnr_row(24.16), "resae": psnr_row(24.6), "deep": psnr_row(27.0)}, psnr_row(24.6))
    assert ids(found) == ["below_linear"] and found[0]["models"] == ["ae", "resae"]  # equal counts as not better
    assert "AE 24.16 dB" in found[0]["text"] and "24.60 dB for PCA with 512 components" in found[0]["text"]


def test_below_linear_spares_variational_and_bypassing_models_and_a_missing_baseline():
    results = {"vae": psnr_row(20.0, variational=True), "unet": psnr_row(20.0, bypasses_bottleneck=True)}
    assert flags.below_linear(results, psnr_row(24.6)) == []
    assert flags.below_linear({"ae": psnr_row(20.0)}, None) == []
    assert flags.below_linear({"ae": psnr_row(float("nan"))}, psnr_row(24.6)) == []
    assert flags.below_linear({"ae": psnr_row(20.0, latent_dim=64)}, psnr_row(24.6)) == []  # PCA codes more numbers


# --- not converged -----------------------------------------------------------------------------

def test_not_converged_fires_when_the_best_epoch_is_the_last():
    found = flags.not_converged({"ae": history(3.0, 2.0, 1.0), "vae": history(3.0, 1.0, 2.0)})
    assert ids(found) == ["not_converged"] and found[0]["models"] == ["ae"]
    assert "epoch 3 of 3" in found[0]["text"] and "train longer" in found[0]["text"]


@pytest.mark.parametrize("losses", [(3.0, 1.0, 2.0), (1.0, 1.0), (2.0, 1.0, math.nan)])
def test_not_converged_is_quiet_when_an_earlier_epoch_is_best(losses):
    # a tie with an earlier epoch and a non-finite last epoch do not count as still improving
    assert flags.not_converged({"ae": history(*losses)}) == []


def test_not_converged_spares_an_annealed_run_that_has_levelled_off():
    # 20 epochs, still lowest at the end but by 0.3% over the last two (a one-cycle schedule's tail)
    levelled = history(*[1.0 / (e + 1) + 0.02 for e in range(17)], 0.0590, 0.0589, 0.0588)
    assert flags.not_converged({"ae": levelled}) == []
    rising = history(*[1.0 / (e + 1) + 0.02 for e in range(17)], 0.0590, 0.0570, 0.0550)  # 6.8% over the last two
    found = flags.not_converged({"ae": rising})
    assert ids(found) == ["not_converged"] and "6.8% lower than 2 epochs before" in found[0]["text"]


def test_not_converged_ignores_a_run_without_finite_losses():
    assert flags.not_converged({"ae": history(math.nan, math.nan), "vae": []}) == []


# --- validation spikes -------------------------------------------------------------------------

def test_best_at_first_epoch_fires_when_no_later_epoch_beats_the_first():
    found = flags.best_at_first_epoch({"vae": history(1704.0, 4305.0, 2958.0, 1811.0), "ae": history(3.0, 2.0, 1.0)})
    assert ids(found) == ["best_at_first_epoch"] and found[0]["models"] == ["vae"]
    assert "VAE at epoch 1 of 4" in found[0]["text"]
    assert flags.best_at_first_epoch({"vae": history(1.0, 2.0)}) == []  # one epoch after the first is too few
    assert flags.best_at_first_epoch({"vae": history(2.0, 3.0, 1.9)}) == []  # the last epoch beat it
    assert flags.best_at_first_epoch({"vae": history(1.0, float("nan"), float("nan"))}) == []  # no finite later epoch
    assert "best_at_first_epoch" in ids(flags.all_flags({"vae": history(1.0, 2.0, 3.0)}))


def test_a_spike_that_recovers_is_one_episode():
    # the VAE of the issue: a spike to 3.5e5 at epoch 3 after 2.9e4, back at epoch 4
    eps = flags.spike_episodes(history(4.0e4, 2.9e4, 3.5e5, 2.8e4, 2.7e4))
    assert eps == [{"epoch": 3, "peak": 3.5e5, "peak_epoch": 3, "before": 2.9e4, "recovered_at": 4}]
    found = flags.validation_spikes({"vae": history(4.0e4, 2.9e4, 3.5e5, 2.8e4, 2.7e4)})
    assert ids(found) == ["validation_spikes"] and "3.50e+05 at epoch 3" in found[0]["text"]
    assert "back by epoch 4" in found[0]["text"]


def test_consecutive_spike_epochs_form_one_episode_with_its_peak():
    eps = flags.spike_episodes(history(10.0, 5.0, 20.0, 40.0, 15.0, 4.0))
    assert len(eps) == 1 and eps[0]["epoch"] == 3 and eps[0]["peak_epoch"] == 4 and eps[0]["peak"] == 40.0
    assert eps[0]["recovered_at"] == 5  # 15 is at 3 x 5: back


def test_a_spike_at_the_end_has_not_recovered():
    eps = flags.spike_episodes(history(10.0, 5.0, 4.0, 13.0))
    assert eps[0]["recovered_at"] is None
    assert "not back by the last epoch" in flags.validation_spikes({"ae": history(10.0, 5.0, 4.0, 13.0)})[0]["text"]


@pytest.mark.parametrize("losses", [
    (100.0, 5.0, 4.0),  # a high first epoch is no spike: nothing came before it
    (10.0, 5.0, 15.0, 4.0),  # exactly 3x the best before it is not above it
    (10.0, 5.0, math.nan, 4.0),  # a non-finite epoch is divergence, another check
    (1.0, 2.0, 2.9, 2.5),  # a slow rise stays under 3x
])
def test_no_spike(losses):
    assert flags.spike_episodes(history(*losses)) == []
    assert flags.validation_spikes({"ae": history(*losses)}) == []


def test_spikes_of_a_negative_loss_are_measured_from_its_magnitude():
    # a Gaussian-likelihood VAE's loss can be negative: the threshold is m + 2|m|
    assert flags.spike_episodes(history(-10.0, 5.0)) == []  # -10 + 20 = 10
    assert flags.spike_episodes(history(-10.0, 11.0, -12.0))[0]["recovered_at"] == 3


def test_the_factor_moves_the_threshold():
    assert flags.spike_episodes(history(10.0, 25.0), factor=2.0) and not flags.spike_episodes(history(10.0, 25.0))


# --- diverged ----------------------------------------------------------------------------------

def test_diverged_follows_the_training_metrics():
    assert ids(flags.diverged({"ae": {"diverged": True}, "vae": {"diverged": False}})) == ["diverged"]
    assert flags.diverged({"ae": {"diverged": False}, "vae": {}}) == []


# --- collapsed latent code ---------------------------------------------------------------------

def test_codes_on_one_line_have_collapsed_and_spread_codes_have_not():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(60, 1))
    line = t @ rng.normal(size=(1, 32)) + 0.001 * rng.normal(size=(60, 32))  # every unit varies, along one direction
    spread = rng.normal(size=(60, 32))
    s_line, s_spread = code_statistics(line), code_statistics(spread)
    assert s_line["effective_dims"] < 1.1 and s_line["pc1"] > 0.99 and s_line["active_units"] is None
    assert s_spread["effective_dims"] > 10
    found = flags.collapsed_latent({"ae": s_line, "vae": s_spread})
    assert ids(found) == ["collapsed_latent"] and found[0]["models"] == ["ae"] and found[0]["fold"]
    assert "1.0 effective directions of 32" in found[0]["text"]
    assert flags.collapsed_latent({"vae": s_spread}) == []


def test_a_vae_whose_mean_codes_do_not_vary_has_collapsed_onto_its_prior():
    rng = np.random.default_rng(1)
    quiet = 0.01 * rng.normal(size=(50, 16))  # spread in every direction, but variance 1e-4 per unit
    s = code_statistics(quiet, prior_scaled=True)
    assert s["effective_dims"] > 5 and s["active_units"] == 0
    found = flags.collapsed_latent({"vae": s})
    assert found and "0 of its 16 code units" in found[0]["text"]
    lively = code_statistics(rng.normal(size=(50, 16)), prior_scaled=True)
    assert lively["active_units"] == 16 and flags.collapsed_latent({"vae": lively}) == []


def test_code_statistics_of_constant_codes():
    s = code_statistics(np.ones((10, 4)), prior_scaled=True)
    assert s["effective_dims"] == 0.0 and s["active_units"] == 0
    assert flags.collapsed_latent({"ae": s})


# --- sweep too small ---------------------------------------------------------------------------

def sweep(complete, values):
    return {"states": {"complete": complete}, "importances": {"values": values}}


def test_a_three_trial_sweep_with_equal_importances_is_too_small():
    found = flags.sweep_too_small({"ae": sweep(3, {"train.lr": 0.5, "train.batch_size": 0.5})})
    assert ids(found) == ["sweep_too_small"] and found[0]["fold"]
    assert "3 complete trials" in found[0]["text"] and "0.50 / 0.50" in found[0]["text"]


@pytest.mark.parametrize("complete, values, fires", [
    (17, {"train.lr": 0.7, "train.batch_size": 0.3}, False),  # the study's AE sweep, ranked
    (61, {"train.lr": 1.0}, False),  # one searched parameter holds all the importance: fine
    (9, {"train.lr": 0.7, "train.batch_size": 0.3}, True),  # one trial short
    (20, {"train.lr": 0.5, "train.batch_size": 0.49}, True),  # enough trials, nothing told apart
    (20, {}, True),  # importances not computed
    (20, {"train.lr": math.nan, "train.batch_size": 0.5}, True),
])
def test_sweep_size_and_importances(complete, values, fires):
    assert bool(flags.sweep_too_small({"ae": sweep(complete, values)})) == fires


# --- tumour scores an untrained network reaches ------------------------------------------------

def test_untrained_anomaly_names_the_scores_within_the_margin():
    trained = {"ae": {"mse": 0.62, "ssim": 0.90, "p99": 0.80}, "vae": {"mse": 0.95, "ssim": 0.91}}
    untrained = {"ae": {"mse": 0.50, "ssim": 0.88, "p99": 0.83}, "vae": {"mse": 0.55, "ssim": 0.60}}
    found = flags.untrained_anomaly(trained, untrained)
    assert ids(found) == ["untrained_anomaly"] and found[0]["models"] == ["ae"] and not found[0]["fold"]
    text = found[0]["text"]
    assert "ssim 0.90 vs 0.88" in text and "p99 0.80 vs 0.83" in text and "mse 0.62" not in text


def test_untrained_anomaly_is_quiet_when_training_adds_more_than_the_margin_or_a_value_is_missing():
    assert flags.untrained_anomaly({"ae": {"ssim": 0.90}}, {"ae": {"ssim": 0.849}}) == []
    assert flags.untrained_anomaly({"ae": {"ssim": 0.90}}, {"ae": {"ssim": math.nan}}) == []
    assert flags.untrained_anomaly({"ae": {"ssim": 0.90}}, {}) == []
    assert flags.untrained_anomaly({"ae": {"ssim": 0.90}}, {"ae": {"ssim": 0.85}}, margin=0.05)  # at the margin


def test_docstring_examples_run():
    import brainae.report.readme as readme

    for module in (flags, readme):
        assert doctest.testmod(module).failed == 0, module.__name__


# --- the box: feeding the checks from a study, pinning them to sections ------------------------

def tiny_study():
    ev = {"n": 30, "psnr": {"mean": 20.0, "ci95": [19.5, 20.5]}, "ssim": {"mean": 0.6, "ci95": [0.58, 0.62]}}
    return SimpleNamespace(
        preset="quick", title="t", configs={"ae": {"train": {"epochs": 8}}},
        data_summary={"description": "phantom", "n": 100, "image_shape": [32, 32],
                      "counts": {"train": {"a": 60}, "val": {"a": 20}, "test": {"a": 20}}},
        histories={"ae": history(3.0, 2.0, 1.0)}, train_results={"ae": {"epochs": 3, "best_epoch": 3}},
        eval_results={"ae": ev}, started=None, timing={},
        extras={"latent": {"models": {"ae": {"spread": {"effective_dims": 1.0, "pc1": 1.0, "dim": 8,
                                                         "active_units": None}}}},
                "sweeps": {"ae": {"n_trials": 3, "states": {"complete": 3}, "epochs": {"budget": 3},
                                  "importances": {"values": {"a": 0.5, "b": 0.5}}, "applied": False}},
                "anomaly": {"ae": {"image_level": {"ssim": {"auroc": 0.9}}, "untrained": {"ssim": 0.88}}}},
    )


def test_study_flags_read_what_the_sections_left_and_mark_their_sections():
    study = tiny_study()
    found = study_flags(study)
    assert ids(found) == ["not_converged", "collapsed_latent", "sweep_too_small", "untrained_anomaly"]
    sections = [Section(i, i.title()) for i in ("training", "latent", "sweeps", "anomaly", "data")]
    mark_sections(sections, found)
    by = {s.id: s for s in sections}
    assert by["latent"].folded and by["sweeps"].folded and not by["training"].folded and not by["anomaly"].folded
    assert len(by["training"].warnings) == 1 and by["data"].warnings == [] and not by["data"].folded
    box = readme_section(study, found, {s.id: s.title for s in sections})
    assert box.id == "readme" and box.context["flags"] == found
    assert box.context["epochs"] == {"ae": {"run": 3, "asked": 8}}
    assert box.context["sweeps"]["ae"] == {"trials": 3, "complete": 3, "budget": 3, "applied": False}


def test_a_study_without_optional_parts_gets_the_training_checks_only():
    study = tiny_study()
    study.extras = {}
    study.histories = {"ae": history(3.0, 1.0, 2.0)}
    assert study_flags(study) == []


def test_preset_note_is_the_first_comment_line_of_the_preset(tmp_path, monkeypatch):
    import brainae.report.readme as readme

    (tmp_path / "a.yaml").write_text("# Trades speed for quality.\n# more\ntrain: {epochs: 8}\n")
    (tmp_path / "b.yaml").write_text("train: {epochs: 8}  # not a note\n# a comment about a setting\n")
    monkeypatch.setattr(readme, "PRESET_DIR", tmp_path)
    assert preset_note("a") == "Trades speed for quality." and preset_note("b") == "" and preset_note("c") == ""
