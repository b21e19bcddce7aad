"""``brainae layers`` and ``brainae latent`` on run folders: load the runs, pick the images, write.

Several runs (the AE and the VAE of a study) are shown side by side on the same test images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from brainae.data.examples import interpolation_pair, pick_examples, spread_over_classes
from brainae.data.types import ImageSet, require_one_channel
from brainae.errors import BrainaeError
from brainae.evaluation.evaluate import resolve_eval_data
from brainae.training.run import load_run
from brainae.visualization.latent import has_latent_space, write_latent
from brainae.visualization.layers import write_layers


def load_runs(run_dirs: Sequence[str | Path], data: Optional[str] = None, progress: bool = True):
    """(models, test split, first run's config): name -> network for each run (its model name, or
    ``name:folder`` when two runs share one), and the test split preprocessed as the first run was."""
    if not run_dirs:
        raise BrainaeError("give at least one RUN_DIR")
    models, cfgs = {}, []
    for run in run_dirs:
        model, cfg = load_run(run)
        key = cfg.model.name if cfg.model.name not in models else f"{cfg.model.name}:{Path(run).name}"
        models[key] = model
        cfgs.append(cfg)
    sizes = {c.data.image_size for c in cfgs}
    if len(sizes) > 1:
        raise BrainaeError(f"the runs were trained at different image sizes ({', '.join(map(str, sorted(sizes)))}); "
                           f"compare runs of one size")
    test = resolve_eval_data(cfgs[0], data, "test", progress)
    require_one_channel(test, "layers and latent")
    return models, test, cfgs[0]


def parse_pick(pick: str, ds: ImageSet, seed: int = 0) -> np.ndarray:
    """``CLASS:N,...`` -> indices of N seeded-random test images of each named class.

    Example:
        >>> parse_pick("tumor:2,no_tumor:1", test)  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for part in pick.split(","):
        name, _, count = part.strip().rpartition(":")
        if not name or not count.isdigit() or int(count) < 1:
            raise BrainaeError(f"--pick expects CLASS:N,... (e.g. tumor:3,no_tumor:2), got '{part.strip()}'")
        if name not in ds.classes:
            raise BrainaeError(f"--pick: unknown class '{name}' (choose from: {', '.join(ds.classes)})")
        pool = np.flatnonzero(ds.labels == ds.classes.index(name))
        if len(pool) == 0:
            raise BrainaeError(f"--pick: the test split has no '{name}' images")
        chosen += sorted(int(i) for i in rng.permutation(pool)[:int(count)])
    return np.array(chosen, dtype=int)


def run_layers(run_dirs: Sequence[str | Path], out_dir: Optional[str | Path] = None, data: Optional[str] = None,
               images: int = 5, pick: Optional[str] = None, progress: bool = True) -> dict:
    """Write the layer figures and ``layers.json`` for the runs (default ``RUN_DIR/layers``)."""
    models, test, cfg = load_runs(run_dirs, data, progress)
    if pick:
        idx = parse_pick(pick, test, cfg.data.seed)
    else:
        if images < 1:
            raise BrainaeError(f"--images must be at least 1, got {images}")
        idx = spread_over_classes(pick_examples(test.labels, n=images, seed=cfg.data.seed), test.labels, images)
    titles = [f"{test.classes[test.labels[i]]}\n#{i}" for i in idx]  # test index on a second line
    out = Path(out_dir) if out_dir else Path(run_dirs[0]) / "layers"
    result = write_layers(models, test.images[idx], out, titles, meta={"test_indices": idx.tolist()})
    return {**result, "out_dir": str(out)}


def run_latent(run_dirs: Sequence[str | Path], out_dir: Optional[str | Path] = None, data: Optional[str] = None,
               progress: bool = True) -> dict:
    """Write the latent figures and ``latent.json`` for the runs (default ``RUN_DIR/latent``)."""
    models, test, cfg = load_runs(run_dirs, data, progress)
    left_out = [m for m, net in models.items() if not has_latent_space(net)]
    models = {m: net for m, net in models.items() if m not in left_out}
    if not models:
        raise BrainaeError("none of the runs' models has a latent space that alone makes its output (a U-Net, skips "
                           "or a residual output bypass it), so there is nothing to show; pass a bottleneck model")
    if left_out:
        print(f"left out {', '.join(left_out)}: skips or a residual output bypass the code, so it has no latent space to show")
    examples = pick_examples(test.labels, n=8, seed=cfg.data.seed)
    out = Path(out_dir) if out_dir else Path(run_dirs[0]) / "latent"
    result = write_latent(models, test.images, test.labels, test.classes, out, interpolation_pair(examples, test.labels),
                          seed=cfg.data.seed, highlight=examples)
    return {**result, "out_dir": str(out)}
