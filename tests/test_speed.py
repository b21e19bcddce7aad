"""The fast paths: they must give the losses and scores of the plain float32 path.

brainae trains with channels-last batches gathered from device-resident tensors, a fused Adam and,
where the hardware computes bf16 natively, bf16 autocast. Here a plain PyTorch loop with the same
initial weights and the same batches is the reference: float32 must match it within 0.1% (rounding),
bf16 within 2% of the loss per epoch (0.4% measured); bf16 inference must score within 0.05 dB PSNR of float32.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from brainae.config import build_config
from brainae.data.load import load_data
from brainae.evaluation.evaluate import evaluate
from brainae.models import build_model
from brainae.sweeps.runner import worker_count
from brainae.sweeps.space import load_space
from brainae.sweeps.study import SweepOptions
from brainae.training import precision
from brainae.training.callbacks import read_history
from brainae.training.loader import ResidentLoader
from brainae.training.train import train

NATIVE_BF16 = precision.cpu_has_native_bf16()


def tiny_config(prec: str, epochs: int = 3):
    cfg = build_config("ae", preset="quick", data="phantom:160", image_size=32, epochs=epochs, precision=prec,
                       accelerator="cpu", overrides=["model.channels=[8,16,32]", "model.latent_dim=32", "train.batch_size=8",
                                  "train.schedule=none"])  # the plain loop's constant learning rate
    cfg.train.progress = False
    return cfg


def plain_epoch_losses(cfg, ds) -> list[float]:
    """The reference: float32, a bare loop over the batches ResidentLoader draws, non-fused Adam."""
    torch.manual_seed(cfg.train.seed)  # what seed_everything does before the module builds its network
    model = build_model(cfg.model, cfg.data.image_size).to(memory_format=torch.contiguous_format)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, foreach=False)
    rows = np.flatnonzero(ds.splits == "train")
    loader = ResidentLoader(ds.images, ds.labels, rows, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed,
                            drop_last=len(rows) % cfg.train.batch_size == 1)
    losses = []
    for epoch in range(cfg.train.epochs):
        loader.sampler.set_epoch(epoch)
        total, n = 0.0, 0
        model.train()
        for x, _ in loader:
            x = x.float() / 255.0
            loss = F.mse_loss(model(x).recon, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(x), n + len(x)
        losses.append(total / n)
    return losses


@pytest.mark.parametrize("prec, rtol", [("32", 1e-3), ("bf16-mixed", 2e-2)])
def test_training_fast_path_matches_a_plain_float32_loop(tmp_path, prec, rtol):
    if prec == "bf16-mixed" and not NATIVE_BF16:
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX); auto trains in float32 here")
    cfg = tiny_config(prec)
    ds = load_data(cfg.data, progress=False)
    reference = plain_epoch_losses(cfg, ds)
    train(cfg, tmp_path / "run", data=ds)
    ours = [r["train_loss"] for r in read_history(tmp_path / "run" / "history.csv")]
    assert reference[-1] < reference[0] * 0.9  # it learns, so a match is not two flat lines
    np.testing.assert_allclose(ours, reference, rtol=rtol)


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16-mixed"
    assert precision.resolve_precision("32", "cpu") == "32"  # an explicit choice is kept
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", "auto") == "32"  # emulated bf16 is slower than float32
    assert precision.resolve_precision("auto", "mps") == "32"


def test_config_records_the_resolved_precision(tmp_path):
    cfg = tiny_config("auto", epochs=1)
    train(cfg, tmp_path / "run")
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert f"precision: {'bf16-mixed' if NATIVE_BF16 else '32'}" in saved.replace("'", "")


def test_resident_loader_visits_every_row_once_per_epoch_in_a_seeded_order():
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1)
    rows = np.arange(0, 20, 2)  # a split: the even rows
    loader = ResidentLoader(images, np.arange(20), rows, batch_size=4, shuffle=True, seed=3)
    first = torch.cat([x.flatten() for x, _ in loader])
    assert sorted(first.tolist()) == rows.tolist() and len(loader) == 3
    assert torch.equal(first, torch.cat([x.flatten() for x, _ in loader]))  # same epoch, same order
    loader.sampler.set_epoch(1)
    second = torch.cat([x.flatten() for x, _ in loader])
    assert sorted(second.tolist()) == rows.tolist() and not torch.equal(first, second)
    for x, y in loader:  # labels travel with their images, which arrive as (B, 1, H, W)
        assert x.shape[1:] == (1, 1, 1) and torch.equal(x.flatten().long(), y)
    dropped = ResidentLoader(images, np.arange(20), rows[:9], batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(x) for x, _ in dropped] == [4, 4]


def test_training_reads_a_memory_mapped_cache_without_copying_it(tmp_path, monkeypatch):
    """The second load maps the cache file; the loader gathers batches from that map, not from a copy."""
    from brainae.training import train as train_module

    folder = tmp_path / "data"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40), dtype=np.uint8)).save(folder / c / f"{i}.png")
    cfg = build_config("ae", preset="quick", data=str(folder), image_size=32, epochs=1,
                       overrides=["model.channels=[8,16]", "model.latent_dim=8", "data.limit=0"])
    load_data(cfg.data, progress=False)
    ds = load_data(cfg.data, progress=False)
    assert isinstance(ds.images, np.memmap)
    seen = []
    real_loaders = train_module.loaders

    def spy(ds, *a, **k):
        out = real_loaders(ds, *a, **k)
        seen.append(out[0].images)
        return out

    monkeypatch.setattr(train_module, "loaders", spy)
    cfg.train.progress = False
    train(cfg, tmp_path / "run", data=ds)
    assert seen and seen[0] is ds.images  # batches come from the mapped file itself


@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bf16: inference runs in float32 here")
def test_bf16_inference_scores_like_float32(tmp_path, monkeypatch):
    cfg = tiny_config("32", epochs=4)
    train(cfg, tmp_path / "run")
    monkeypatch.setenv("BRAINAE_INFERENCE_PRECISION", "32")
    exact = evaluate(tmp_path / "run", split="val", progress=False)
    monkeypatch.delenv("BRAINAE_INFERENCE_PRECISION")
    fast = evaluate(tmp_path / "run", split="val", progress=False)
    assert exact["psnr"]["mean"] > 12  # a trained model, not noise
    assert abs(fast["psnr"]["mean"] - exact["psnr"]["mean"]) < 0.05
    assert abs(fast["ssim"]["mean"] - exact["ssim"]["mean"]) < 0.005


def test_a_bad_inference_precision_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("BRAINAE_INFERENCE_PRECISION", "fp8")
    with pytest.raises(Exception, match="BRAINAE_INFERENCE_PRECISION is 'fp8'"):
        precision.inference_precision(torch.device("cpu"))


def test_trials_per_device_gives_k_workers_per_gpu(monkeypatch, tmp_path):
    import brainae.sweeps.runner as runner

    cfg = build_config("ae", preset="quick", data="phantom:60")
    opts = SweepOptions(model="ae", out=tmp_path, space=load_space("seed", "ae"), workers=1, trials_per_device=3)
    monkeypatch.setattr(runner, "visible_gpus", lambda cfg: ["0", "1"])
    assert worker_count(cfg, opts) == 6
    monkeypatch.setattr(runner, "visible_gpus", lambda cfg: [])
    assert worker_count(cfg, opts) == 3  # no GPU: K workers sharing the CPU
    opts.trials_per_device = 0
    assert worker_count(cfg, opts) == 1  # --workers decides


def test_throughput_summary_leaves_out_warm_up_windows():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import train_throughput

    def run(rates, loss):
        return {"rates": rates, "epoch_seconds": [1.0], "precision": "32", "peak_rss_mib": 100.0, "val_loss": loss}

    s = train_throughput.summarise({"plain": [run([1.0, 50.0, 52.0], 0.02)], "brainae": [run([1.0, 100.0, 110.0], 0.0201)]})
    assert s["plain"]["images_per_second"] == 51.0 and s["plain"]["windows"] == 2
    assert s["brainae"]["speedup_vs_plain"] == pytest.approx(105 / 51, abs=0.01)
    assert s["brainae"]["val_loss_vs_plain"] == pytest.approx(0.005, abs=1e-4)
    # round by round: each round's own medians, the runs paired in the order they ran
    s = train_throughput.summarise({"plain": [run([1.0, 50.0], 0.02), run([1.0, 40.0], 0.02)],
                                    "brainae": [run([1.0, 100.0], 0.02), run([1.0, 60.0], 0.02)]})
    assert s["brainae"]["speedup_per_round"] == [2.0, 1.5]


def test_conv_kernels_reads_onednn_lines_of_timed_steps_only():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import conv_kernels

    deconv = ("onednn_verbose,v1,primitive,exec,cpu,deconvolution,conv:any+jit_bf16:avx512_core_bf16,backward_weights,"
              "src:bf16::blocked:acdb::f0,attr-scratchpad:user,alg:deconvolution_direct,"
              "mb16_ic512oc256_ih4oh8kh4sh2dh0ph1_iw4ow8kw4sw2dw0pw1,{ms}")
    matmul = "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src:bf16,,,16x8192:8192x512,1.5"
    lines = ["precision bf16"]
    for step in range(conv_kernels.WARMUP + 2):
        lines += [f"step {step}", deconv.format(ms=100.0 if step < conv_kernels.WARMUP else 2.0 + step), matmul,
                  "onednn_verbose,v1,primitive,exec,cpu,reorder,simple:any,undef,src:f32,,,512x256,0.1",
                  f"seconds {0.1 if step >= conv_kernels.WARMUP else 9.0}"]
    prims, seconds, precision = conv_kernels.parse(lines)
    assert precision == "bf16" and seconds == [0.1, 0.1]
    key = ("deconvolution", "backward_weights", "jit_bf16:avx512_core_bf16", "mb16_ic512oc256_ih4oh8kh4sh2dh0ph1_iw4ow8kw4sw2dw0pw1")
    assert sorted(prims) == sorted([key, ("matmul", "undef", "brg_matmul:avx512_core_bf16", "16x8192:8192x512")])
    assert prims[key] == [2.0 + conv_kernels.WARMUP, 3.0 + conv_kernels.WARMUP]  # warm-up steps left out
    # a transposed convolution's work is per input pixel: 16 images x 4x4 inputs x 512 x 256 channels x 4x4 taps
    assert conv_kernels.gflop("deconvolution", key[3]) == pytest.approx(2 * 16 * 16 * 512 * 256 * 16 / 1e9)
    assert conv_kernels.gflop("convolution", "mb16_ic256oc512_ih8oh4kh3sh2dh0ph1_iw8ow4kw3sw2dw0pw1") == \
        pytest.approx(2 * 16 * 16 * 256 * 512 * 9 / 1e9)
    assert conv_kernels.gflop("matmul", "16x8192:8192x512") == pytest.approx(2 * 16 * 8192 * 512 / 1e9)


@pytest.mark.slow
def test_compiled_training_matches_eager_and_keeps_checkpoint_keys(tmp_path):
    """--compile (about 30 s of compiling here) trains the same network: same losses, loadable checkpoints."""
    from brainae.training.run import load_run

    losses = {}
    for compiled in (False, True):
        cfg = tiny_config("32", epochs=2)
        cfg.train.compile = compiled
        train(cfg, tmp_path / str(compiled))
        losses[compiled] = [r["train_loss"] for r in read_history(tmp_path / str(compiled) / "history.csv")]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-2)
    model, cfg = load_run(tmp_path / "True")
    assert cfg.train.compile and not any("_orig_mod" in k for k in model.state_dict())


def test_throughput_inference_runs_merge_to_their_median_and_range():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import train_throughput

    def run(rate):
        return {"images": 8, "networks": {"net": {"32": {"precision": "32", "anomaly_images_per_second": rate}}}}

    merged = train_throughput.merge_inference([run(300.0), run(420.0), run(400.0)])
    row = merged["networks"]["net"]["32"]
    assert merged["rounds"] == 3 and merged["images"] == 8
    assert row["anomaly_images_per_second"] == 400.0 and row["anomaly_per_round"] == [300.0, 420.0, 400.0]


def test_throughput_reference_runs_torchs_own_convs():
    """The plain loop is the study's code: brainae's Conv and ConvTranspose (faster CPU training paths) are
    made nn.Conv2d and nn.ConvTranspose2d again, with the same parameters and outputs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import train_throughput

    from brainae.config import ModelConfig
    from brainae.models import blocks, build_network

    torch.manual_seed(0)
    model = build_network(ModelConfig(name="ae", channels=[4, 8], latent_dim=8), 16).eval()  # stats stay put
    x = torch.rand(2, 1, 16, 16)
    before = model(x).recon
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = train_throughput.torch_layers(model)
    kinds = {type(m) for m in plain.modules()}
    assert {torch.nn.Conv2d, torch.nn.ConvTranspose2d} <= kinds and not {blocks.Conv, blocks.ConvTranspose} & kinds
    torch.testing.assert_close(plain(x).recon, before)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in state.items())


def test_an_emulated_half_precision_on_a_cpu_is_named_before_training(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    line = precision.emulated_precision_warning("bf16-mixed", "cpu")
    assert "bf16-mixed" in line and "AVX512-BF16" in line and "auto" in line
    assert "16-mixed" in precision.emulated_precision_warning("16-mixed", "auto")
    assert precision.emulated_precision_warning("32", "cpu") is None
    assert precision.emulated_precision_warning("bf16-mixed", "mps") is None
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.emulated_precision_warning("bf16-mixed", "cpu") is None  # native: nothing to say
    assert precision.emulated_precision_warning("16-mixed", "cpu") is not None  # bf16 is not fp16
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_fp16"}))
    assert precision.emulated_precision_warning("16-mixed", "cpu") is None
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset())
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.emulated_precision_warning("bf16-mixed", "cpu") is None  # no x86 flags: not judged
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert precision.emulated_precision_warning("bf16-mixed", "auto") is None  # auto runs on the GPU

    # the run says it on stderr (a stand-in line, since this CPU may have native bf16), and float32 says nothing
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from brainae.training import train as train_module
    monkeypatch.setattr(train_module, "emulated_precision_warning",
                        lambda p, a: f"{p} would be emulated" if p == "bf16-mixed" else None)
    train(tiny_config("bf16-mixed", epochs=1), tmp_path / "bf16")
    assert "brainae: warning: bf16-mixed would be emulated" in capsys.readouterr().err
    train(tiny_config("32", epochs=1), tmp_path / "fp32")
    assert "warning" not in capsys.readouterr().err


def test_vector_units_name_what_decides_the_precision():
    assert precision.vector_units({"avx2", "avx512f", "avx512_bf16"}) == "AVX512-BF16"
    assert precision.vector_units({"avx2", "avx512f", "amx_bf16", "avx512_bf16"}) == "AMX-BF16"
    assert precision.vector_units({"avx2", "avx512f"}) == "AVX-512, no native bf16"
    assert precision.vector_units({"fma", "avx2"}) == "AVX2, no native bf16"
    assert precision.vector_units({"sse2"}) == "no AVX2, no native bf16"
    assert precision.vector_units(set()) == ""  # no x86 flags (another system, ARM): nothing said rather than a guess


def test_verbose_version_says_what_auto_picks_on_this_machine(capsys, monkeypatch):
    from brainae.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert main(["-v", "--version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("brainae ") and lines[1].startswith(f"torch {torch.__version__}")
    assert "(AVX2, no native bf16)" in lines[2] and lines[2].endswith("--precision auto trains in 32 on it")
    assert lines[3] == "cuda: no GPU that torch can use"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert main(["--version", "--verbose"]) == 0
    assert "auto trains in bf16-mixed" in capsys.readouterr().out
