"""Training options of every model: losses, augmentation, blind noise, optimisers, schedules, early stopping, EMA."""
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from brainae.config import build_config
from brainae.data.noise import NoiseRange, parse_noise
from brainae.errors import BrainaeError
from brainae.models.output import ModelOutput
from brainae.training.augment import Augment, parse_augment
from brainae.training.losses import MS_SSIM_WEIGHTS, ms_ssim_scales, parse_loss
from brainae.training.train import train


def _out(recon: torch.Tensor, logits: torch.Tensor | None = None) -> ModelOutput:
    return ModelOutput(recon=recon, z=recon.flatten(1), logits=logits)


def _smooth_pair(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((size, size)), 2)
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(a + 0.08 * rng.standard_normal(a.shape), 0, 1)
    return a.astype(np.float32), b.astype(np.float32)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)[None, None]


def test_pixel_losses_on_a_known_pair():
    x = torch.full((2, 1, 16, 16), 0.5)
    y = x + 0.1
    assert float(parse_loss("mse")(_out(y), x)) == pytest.approx(0.01, rel=1e-5)
    assert float(parse_loss("l1")(_out(y), x)) == pytest.approx(0.1, rel=1e-5)
    assert float(parse_loss("0.5*l1+2*mse")(_out(y), x)) == pytest.approx(0.5 * 0.1 + 2 * 0.01, rel=1e-5)
    # BCE of p = sigmoid(0) = 0.5 against t = 0.25: -(t log p + (1 - t) log(1 - p)) = log 2
    t = torch.full((1, 1, 8, 8), 0.25)
    logits = torch.zeros_like(t)
    assert float(parse_loss("bce")(_out(torch.sigmoid(logits), logits), t)) == pytest.approx(np.log(2), rel=1e-5)
    assert parse_loss("") is None  # the model's own loss


def test_ssim_loss_matches_scikit_image():
    a, b = _smooth_pair()
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert float(parse_loss("ssim")(_out(_t(b)), _t(a))) == pytest.approx(1 - ref, abs=5e-3)  # window edges differ slightly
    assert float(parse_loss("ssim")(_out(_t(a)), _t(a))) == pytest.approx(0.0, abs=1e-6)


def _ssim_terms(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(SSIM, contrast-structure) with an 11-wide Gaussian window (sigma 1.5), borders cropped: written out by hand."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    f = lambda im: gaussian_filter(im.astype(np.float64), 1.5, truncate=5 / 1.5, mode="reflect")
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    ss = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1) * cs
    crop = (slice(5, -5), slice(5, -5))
    return float(ss[crop].mean()), float(cs[crop].mean())


def test_ms_ssim_loss_matches_a_hand_written_three_scale_reference():
    a, b = _smooth_pair(128, seed=1)
    w = np.array(MS_SSIM_WEIGHTS[:3]) / sum(MS_SSIM_WEIGHTS[:3])
    value, x, y = 1.0, a, b
    for i in range(3):
        ss, cs = _ssim_terms(x, y)
        value *= (ss if i == 2 else cs) ** w[i]
        x = x.reshape(x.shape[0] // 2, 2, -1, 2).mean((1, 3))  # 2x2 average pooling
        y = y.reshape(y.shape[0] // 2, 2, -1, 2).mean((1, 3))
    assert ms_ssim_scales(128) == 3 and ms_ssim_scales(32) == 2 and ms_ssim_scales(16) == 1
    assert float(parse_loss("ms_ssim")(_out(_t(b)), _t(a))) == pytest.approx(1 - value, abs=5e-3)
    mixed = float(parse_loss("mixed")(_out(_t(b)), _t(a)))
    expect = 0.16 * float(np.abs(a - b).mean()) + 0.84 * float(parse_loss("ms_ssim")(_out(_t(b)), _t(a)))
    assert mixed == pytest.approx(expect, rel=1e-5)


def test_psnr_loss_weighs_every_image_alike_in_decibels():
    x = torch.full((2, 1, 16, 16), 0.5)
    y = x.clone()
    y[0] += 0.1  # MSE 1e-2: 20 dB
    y[1] += 0.01  # MSE 1e-4: 40 dB
    assert float(parse_loss("psnr")(_out(y), x)) == pytest.approx(-30.0, abs=1e-3)
    # MSE over the batch would be ruled by the first image: 10 log10(mean MSE) = -16.98 dB, not -30
    assert float(parse_loss("mse")(_out(y), x)) == pytest.approx((1e-2 + 1e-4) / 2, rel=1e-4)


def test_a_variational_model_refuses_the_psnr_loss(tmp_path):
    from brainae.training.module import AutoencoderModule

    cfg = build_config("vae", preset="quick", overrides=["train.loss=psnr", "model.latent_dim=16"])
    with pytest.raises(BrainaeError, match="train.loss.*per-pixel"):
        AutoencoderModule.from_config(cfg)
    AutoencoderModule.from_config(build_config("ae", preset="quick", overrides=["train.loss=psnr"]))


def test_losses_have_gradients():
    a, b = _smooth_pair(64)
    for spec in ("ssim", "ms_ssim", "mixed", "l1", "psnr"):
        recon = _t(b).clone().requires_grad_(True)
        parse_loss(spec)(_out(recon), _t(a)).backward()
        assert torch.isfinite(recon.grad).all() and recon.grad.abs().sum() > 0, spec


@pytest.mark.parametrize("spec", ["nope", "0.5*nope", "x*l1", "l1+"])
def test_bad_loss_specs(spec):
    with pytest.raises(BrainaeError, match="train.loss"):
        parse_loss(spec)
    with pytest.raises(BrainaeError, match="train.loss"):
        build_config("ae", overrides=[f"train.loss={spec}"])


def test_augmentation_is_reproducible_under_a_seed_and_changes_images():
    x = torch.from_numpy(np.stack([_smooth_pair(32, seed=s)[0] for s in range(8)]))[:, None]
    first = Augment("all", seed=3)(x)
    again = Augment("all", seed=3)(x)
    other = Augment("all", seed=4)(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, x) and first.shape == x.shape
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    # a flip alone mirrors: every image is itself or its mirror image
    flipped = Augment("flip", seed=0)(x)
    for i in range(len(x)):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    assert parse_augment("all") == ("flip", "affine", "intensity") and parse_augment("") == ()
    with pytest.raises(BrainaeError, match="train.augment"):
        build_config("ae", overrides=["train.augment=rotate"])


def test_blind_noise_range_draws_one_level_per_image():
    noise = parse_noise("gaussian:0.05-0.3")
    assert isinstance(noise, NoiseRange) and noise.spec == "gaussian:0.05-0.3"
    x = torch.full((400, 1, 32, 32), 0.5)
    std = (noise(x, generator=0) - x).flatten(1).std(1)
    assert float(std.min()) > 0.04 and float(std.max()) < 0.31  # within the range (clipping barely matters at 0.5)
    assert float(std.max() - std.min()) > 0.15  # and spread across it
    with pytest.raises(BrainaeError, match="LOW < HIGH"):
        parse_noise("gaussian:0.3-0.1")


def _tiny(tmp_path, name, **sets):
    overrides = ["data.image_size=32", "model.channels=[8,16]", "model.latent_dim=16"]
    overrides += [f"{k}={v}" for k, v in sets.items()]
    cfg = build_config(name, data="phantom:48", epochs=3, batch_size=8, overrides=overrides)
    cfg.train.progress = False
    return cfg


def test_optimizer_schedule_and_ema_train(tmp_path):
    cfg = _tiny(tmp_path, "ae", **{"train.optimizer": "adamw", "train.schedule": "onecycle", "train.ema": 0.9,
                                   "train.augment": "all", "train.loss": "mixed", "train.weight_decay": 0.01})
    result = train(cfg, tmp_path / "run")
    assert result["epochs"] == 3 and np.isfinite(result["best_val_loss"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    # the EMA callback stores the averaged weights as the model and keeps the raw ones beside them
    assert "current_model_state" in ckpt
    key = next(k for k in ckpt["state_dict"] if k.endswith("weight"))
    assert not torch.equal(ckpt["state_dict"][key], ckpt["current_model_state"][key])
    sched = ckpt["lr_schedulers"][0]
    assert sched["_step_count"] > 1 and sched["total_steps"] == sched["_step_count"] - 1
    # best.ckpt too holds the averaged weights (a weights-only save would skip the callback that puts them there)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    assert "current_model_state" in best


def test_early_stopping_stops_before_the_budget(tmp_path):
    # a learning rate this small cannot improve the validation loss by much; patience 1 ends the run early
    cfg = _tiny(tmp_path, "ae", **{"train.early_stopping": 1, "train.lr": 1e-9})
    cfg.train.epochs = 10
    assert train(cfg, tmp_path / "run")["epochs"] < 10


def test_float_keys_accept_yaml_exponents_and_reject_words():
    # YAML 1.1 reads 1e-4 (without a dot) as a string; a learning rate written that way must still work
    assert build_config("ae", overrides=["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)
    with pytest.raises(BrainaeError, match="train.lr"):
        build_config("ae", overrides=["train.lr=fast"])


def test_cli_flags_reach_the_config():
    from brainae.cli import _flat, build_parser

    args = build_parser().parse_args([
        "train", "--model", "skipae", "--skips", "0,1", "--loss", "mixed", "--augment", "flip,intensity",
        "--optimizer", "adamw", "--schedule", "cosine", "--early-stopping", "3", "--ema", "0.99",
        "--residual-output", "--noise", "gaussian:0.05-0.3", "--out", "x"])
    cfg = build_config(args.model, args.preset, None, [], **_flat(args))
    m, t = cfg.model, cfg.train
    assert (m.skips, m.residual_output) == ([0, 1], True)
    assert (t.loss, t.augment, t.optimizer, t.schedule, t.early_stopping, t.ema, t.noise) == (
        "mixed", "flip,intensity", "adamw", "cosine", 3, 0.99, "gaussian:0.05-0.3")
    with pytest.raises(BrainaeError, match="model.skips"):
        build_config("ae", overrides=["model.skips=[7]"])


def test_every_registered_model_is_in_the_help(capsys):
    from brainae.cli import main
    from brainae.models import model_names

    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in model_names())
    for flag in ("--skips", "--residual-output", "--loss", "--augment", "--optimizer", "--schedule",
                 "--early-stopping", "--ema"):
        assert flag in text
    main(["models"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in model_names())
