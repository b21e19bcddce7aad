"""Denoising benchmark: trained autoencoders against classical denoisers on the same noisy images.

For every noise level, each test image is corrupted once (seeded), and every method denoises that
same noisy image. Per method and level: PSNR and SSIM against the clean image (mean with a 95%
bootstrap interval), PSNR inside the tumour masks where the data has them (does the method erase
tumours?), and images per second.

Classical denoisers are registered under kind "denoiser" as ``fn(noisy (H, W) float, sigma) -> (H, W)``.
Their parameters follow the known noise level sigma (the same information the autoencoder's training
noise carries, so the comparison is fair); the factors were chosen on six 128x128 phantom slices at
sigma 0.1-0.3:

    nlm        skimage denoise_nl_means, h = 0.6 sigma, patch 5, distance 6, fast mode
    tv         skimage denoise_tv_chambolle, weight = 0.5 sigma
    wavelet    skimage denoise_wavelet, sym4, BayesShrink, soft, sigma given, 2+ levels, averaged over
               4 one-pixel shifts (cycle spinning); needs PyWavelets
    bilateral  skimage denoise_bilateral, sigma_color = sigma, sigma_spatial = 1.5
    median     scipy median filter, 3x3 below sigma 0.25, else 5x5
    bm3d       bm3d.bm3d(sigma_psd = sigma), from the optional ``bm3d`` package (pip install brainae[bm3d]:
               free for non-commercial use only, ships a closed binary); skipped with a note when absent

For Gaussian and Rician noise sigma is the level; for Poisson and salt-and-pepper it is estimated
per image (skimage estimate_sigma).
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from brainae.data.noise import Noise, parse_noise_levels
from brainae.data.types import ImageSet, require_one_channel
from brainae.errors import BrainaeError
from brainae.evaluation.metrics import per_image_metrics, summarize
from brainae.registry import get, load_entry_points, register
from brainae.training.precision import reconstructions

DEFAULT_BASELINES = ("nlm", "tv", "wavelet", "bilateral", "median", "bm3d")
NOTES: dict[str, str] = {}  # denoiser -> why it cannot run here (filled by availability checks)


@register("denoiser", "nlm")
def nlm(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(noisy, h=0.6 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6)


@register("denoiser", "tv")
def tv(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(noisy, weight=0.5 * sigma)


@register("denoiser", "wavelet")
def wavelet(noisy: np.ndarray, sigma: float) -> np.ndarray:
    import pywt
    from skimage.restoration import denoise_wavelet

    # skimage's defaults (Haar, max levels - 3) leave blocky artefacts, and with sym4 they keep a
    # single level at 128 px, too few for sigma >= 0.2. Two levels below the maximum, at least two,
    # did best on real training images at 64-256 px.
    top = pywt.dwtn_max_level(noisy.shape, "sym4")
    levels = max(1, min(top, max(2, top - 2)))
    out = np.zeros_like(noisy)
    for shift in ((0, 0), (0, 1), (1, 0), (1, 1)):  # cycle spinning: averaging shifted copies hides the wavelet grid
        den = denoise_wavelet(np.roll(noisy, shift, (0, 1)), sigma=sigma, wavelet="sym4", wavelet_levels=levels,
                              method="BayesShrink", mode="soft")
        out += np.roll(den, (-shift[0], -shift[1]), (0, 1))
    return out / 4


@register("denoiser", "bilateral")
def bilateral(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_bilateral

    return denoise_bilateral(noisy, sigma_color=sigma, sigma_spatial=1.5)


@register("denoiser", "median")
def median(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(noisy, size=3 if sigma < 0.25 else 5)


@register("denoiser", "bm3d")
def bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    return importlib.import_module("bm3d").bm3d(noisy, sigma_psd=sigma)


_NEEDS = {"bm3d": ("bm3d", "optional package bm3d not installed (pip install 'brainae[bm3d]'; free for "
                            "non-commercial use only, closed binary)"),
          "wavelet": ("pywt", "PyWavelets not installed (pip install PyWavelets)")}


def available_baselines(requested: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(baselines that can run here, {skipped baseline: why}); unknown names raise BrainaeError.

    Example:
        >>> run, skipped = available_baselines(["tv", "median"])
        >>> run, skipped
        (['tv', 'median'], {})
    """
    run, skipped = [], {}
    for name in requested:
        get("denoiser", name)  # unknown -> one-line error with the choices
        module, note = _NEEDS.get(name, (None, ""))
        if module is not None:
            try:
                importlib.import_module(module)
            except ImportError:
                skipped[name] = note
                continue
        run.append(name)
    return run, skipped


def parse_baselines(text: str) -> list[str]:
    """``"nlm,tv"`` -> ["nlm", "tv"]; ``""`` or ``"none"`` -> []."""
    if not text or text.strip() == "none":
        return []
    return [b.strip() for b in text.split(",") if b.strip()]


def _sigma_for(noise: Noise, noisy: np.ndarray) -> float:
    if noise.kind in ("gaussian", "rician"):
        return noise.level
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(noisy))


def network_denoiser(model: torch.nn.Module, batch_size: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """A batch denoiser ``(N, H, W) float in [0, 1] -> (N, H, W)`` from a trained network (its reconstruction)."""
    return lambda noisy: reconstructions(model, np.asarray(noisy, np.float32), batch_size)


def classical_denoiser(name: str, noise: Noise) -> Callable[[np.ndarray], np.ndarray]:
    """A batch denoiser that applies registered denoiser ``name`` image by image with sigma from ``noise``."""
    fn = get("denoiser", name)
    return lambda noisy: np.stack([fn(im.astype(np.float64), _sigma_for(noise, im)) for im in noisy])


def noisy_images(clean: np.ndarray, noise: Noise, seed: int, level_index: int) -> np.ndarray:
    """The noisy copies every method sees: seeded per (seed, level), independent of the methods run."""
    gen = torch.Generator().manual_seed(int(seed) * 1000 + level_index)
    return noise(torch.from_numpy(clean[:, None]), generator=gen).numpy()[:, 0]


def score(denoised: np.ndarray, clean: np.ndarray, masks: Optional[np.ndarray], seed: int = 0,
          groups: Optional[np.ndarray] = None) -> dict:
    """PSNR / SSIM summaries of ``denoised`` against ``clean`` (float (N, H, W)), and tumour-only PSNR;
    intervals resample ``groups`` (subjects, volumes, copies) where given."""
    m = per_image_metrics(torch.from_numpy(np.clip(denoised, 0, 1))[:, None].float(),
                          torch.from_numpy(clean)[:, None].float())
    result = {"psnr": summarize(m["psnr"], seed, groups), "ssim": summarize(m["ssim"], seed, groups), "tumor_psnr": None}
    if masks is not None and masks.any():
        has = masks.reshape(len(masks), -1).any(1)
        err = ((np.clip(denoised, 0, 1) - clean) ** 2)[has]
        mse = (err * masks[has]).reshape(has.sum(), -1).sum(1) / masks[has].reshape(has.sum(), -1).sum(1)
        result["tumor_psnr"] = {**summarize(-10 * np.log10(np.maximum(mse, 1e-10)), seed,
                                            None if groups is None else groups[has]), "n": int(has.sum())}
    return result


def denoise_benchmark(
    networks: dict[str, torch.nn.Module],
    data: ImageSet,
    noise: str | Sequence[Noise] = "gaussian:0.1,0.2,0.3",
    baselines: Sequence[str] = DEFAULT_BASELINES,
    seed: int = 0,
    keep: Optional[np.ndarray] = None,
    progress: Optional[Callable[[str], None]] = None,
    warmup: int = 64,
    min_seconds: float = 0.5,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict, dict]:
    """Every network and baseline on the same noisy images of ``data`` at every noise level.

    networks: name -> trained network in eval mode (its reconstruction is the denoised image).
    noise: a spec such as "gaussian:0.1,0.2,0.3", or parsed levels.
    keep: indices of images whose outputs are returned for figures.
    warmup: networks first denoise this many images untimed (one batch by default).
    min_seconds: networks denoise the images again until this much time has passed, and images/s is
        taken over every pass: one pass over a few dozen images takes a tenth of a second, too short
        to time reliably. Classical denoisers are timed on their one pass.
    clock: seconds, for the timing (tests give one that does not depend on the machine's load).
    Returns (result for denoise.json, {level spec: {"noisy": ..., method: images[keep]}}).

    Example:
        >>> result, _ = denoise_benchmark({}, test_set, "gaussian:0.2", ["tv"])  # doctest: +SKIP
        >>> result["results"]["gaussian:0.2"]["tv"]["psnr"]["mean"]  # doctest: +SKIP
    """
    levels = parse_noise_levels(noise) if isinstance(noise, str) else list(noise)
    run, skipped = available_baselines(baselines)
    clean = data.images.astype(np.float32) / 255.0
    keep = np.zeros(0, int) if keep is None else np.asarray(keep, int)
    methods: dict[str, Callable[[Noise], Callable]] = {"noisy": lambda nz: (lambda y: y)}
    for name, net in networks.items():
        methods[name] = lambda nz, net=net: network_denoiser(net)
    for name in run:
        methods[name] = lambda nz, name=name: classical_denoiser(name, nz)
    results, examples = {}, {}
    for li, nz in enumerate(levels):
        noisy = noisy_images(clean, nz, seed, li)
        results[nz.spec], examples[nz.spec] = {}, {"clean": clean[keep], "noisy": noisy[keep]}
        for name, make in methods.items():
            if progress:
                progress(f"{nz.spec}: {name}")
            fn = make(nz)
            if name in networks and warmup > 0:
                fn(noisy[:warmup])  # a first call pays one-off allocation costs: keep them out of images/s
            start = clock()
            out, passes = fn(noisy), 1
            while name in networks and clock() - start < min_seconds:
                fn(noisy)
                passes += 1
            seconds = (clock() - start) / passes
            r = score(out, clean, data.masks, seed, data.groups)
            r["seconds"] = round(seconds, 4)
            r["images_per_second"] = round(len(clean) / seconds, 2) if name != "noisy" and seconds > 0 else None
            results[nz.spec][name] = r
            examples[nz.spec][name] = np.clip(out[keep], 0, 1)
    result = {
        "n": int(len(clean)),
        "levels": [nz.spec for nz in levels],
        "methods": list(methods),
        "networks": list(networks),
        "baselines": run,
        "skipped": skipped,
        "seed": seed,
        "has_masks": data.masks is not None,
        "results": results,
    }
    return result, examples


def format_denoise_table(result: dict) -> str:
    """Plain text: one row per method, PSNR / SSIM per level, images per second."""
    levels = result["levels"]
    head = f"{'method':<12}" + "".join(f"{lv + ' PSNR':>22}{'SSIM':>8}" for lv in levels) + f"{'img/s':>10}"
    rows = [head, "-" * len(head)]
    for m in result["methods"]:
        cells = []
        for lv in levels:
            r = result["results"][lv][m]
            p = r["psnr"]
            cells.append(f"{p['mean']:>8.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}]{r['ssim']['mean']:>8.3f}")
        ips = [result["results"][lv][m]["images_per_second"] for lv in levels]
        speed = f"{np.mean(ips):>10.1f}" if all(v is not None for v in ips) else f"{'-':>10}"
        rows.append(f"{m:<12}" + "".join(cells) + speed)
    for name, why in result["skipped"].items():
        rows.append(f"skipped {name}: {why}")
    return "\n".join(rows)


def run_denoise(run_dirs: Sequence[str | Path], data: Optional[str] = None, noise: str = "gaussian:0.1,0.2,0.3",
                baselines: Sequence[str] = DEFAULT_BASELINES, out: Optional[str | Path] = None, limit: int = 0,
                seed: int = 0, n_examples: int = 6, progress: bool = True) -> dict:
    """``brainae denoise``: benchmark runs and baselines on the test split; writes denoise.json and figures.

    Example:
        >>> run_denoise(["runs/dae"], noise="gaussian:0.1,0.3", baselines=["tv"], out="den")  # doctest: +SKIP
    """
    from brainae.evaluation.evaluate import resolve_eval_data
    from brainae.io import atomic_write_bytes, write_json
    from brainae.training.run import load_run
    from brainae.visualization.denoise_anomaly import denoise_grid, psnr_vs_level
    from brainae.visualization.plots import figure_png

    if not run_dirs:
        raise BrainaeError("name at least one run folder to benchmark")
    parse_noise_levels(noise)  # a bad spec fails before anything loads
    loaded = [(Path(r), *load_run(r)) for r in run_dirs]
    sizes = {cfg.data.image_size for _, _, cfg in loaded}
    if len(sizes) > 1:
        raise BrainaeError(f"the runs were trained at different image sizes {sorted(sizes)}; benchmark them separately")
    networks = {}
    for path, model, cfg in loaded:
        name = path.name if path.name not in networks else f"{path.parent.name}/{path.name}"
        networks[name] = model
    cfg0 = loaded[0][2]
    ds = resolve_eval_data(cfg0, data, "test", progress)
    require_one_channel(ds, "denoise")
    if limit and limit < len(ds):
        ds = ds.subset(np.sort(np.random.default_rng(seed).choice(len(ds), limit, replace=False)))
    keep = _example_indices(ds, n_examples, seed)
    say = (lambda s: print(f"  {s}", flush=True)) if progress else None
    result, examples = denoise_benchmark(networks, ds, noise, baselines, seed, keep, say)
    result.update({"runs": [str(p) for p, _, _ in loaded], "data": data or cfg0.data.spec, "split": "test"})
    out_dir = Path(out) if out else loaded[0][0] / "denoise"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for lv, ex in examples.items():
        fname = f"denoise_examples_{lv.replace(':', '_')}.png"
        atomic_write_bytes(out_dir / fname, figure_png(denoise_grid(ex, lv)))
        figures[lv] = fname
    atomic_write_bytes(out_dir / "denoise_psnr.png", figure_png(psnr_vs_level(result)))
    result["figures"] = {"examples": figures, "psnr_vs_level": "denoise_psnr.png"}
    write_json(out_dir / "denoise.json", result)
    return {**result, "out_dir": str(out_dir)}


def _example_indices(ds: ImageSet, n: int, seed: int) -> np.ndarray:
    """Example images for figures: tumour images with masks first, so erased tumours show."""
    rng = np.random.default_rng(seed)
    if ds.masks is not None:
        has = np.flatnonzero(ds.masks.reshape(len(ds), -1).any(1))
        rest = np.setdiff1d(np.arange(len(ds)), has)
        order = np.concatenate([rng.permutation(has)[: (n + 1) // 2], rng.permutation(rest)])
    else:
        order = rng.permutation(len(ds))
    return np.sort(order[:n])


load_entry_points("brainae.denoisers")  # classical denoisers of installed plugins, registered with @register
