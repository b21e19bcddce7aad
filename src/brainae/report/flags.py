"""Automatic checks for the report's "Read me first" box, each a pure function: histories, summaries
and numbers in, a list of flags out (empty when the check finds nothing).

A flag is a dict:
    id       which check fired
    section  the report section it concerns (that section shows ``warning`` at its top)
    fold     whether that section is folded away, since it would mislead at a glance
    models   the models concerned
    title    a few words naming the problem
    text     one sentence for the box: what the result means and what to do
    warning  a short line for the section itself

The thresholds are module constants, so a report states them and a test can move them.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

STILL_IMPROVING = 0.01  # the last tenth of the epochs (at least one) lowered the best validation loss by more than 1%
SPIKE_FACTOR = 3.0  # a validation loss above 3x the lowest one before it is a spike
MIN_EPOCHS_AFTER_FIRST = 2  # epochs after the first that must all fail to beat it for best_at_first_epoch
MIN_TRIALS = 10  # complete trials below which a sweep cannot rank parameters
EQUAL_IMPORTANCE = 0.02  # importances this close to each other rank nothing (two parameters at 0.5 / 0.5)
MIN_EFFECTIVE_DIMS = 2.0  # codes spread along fewer effective directions have collapsed
UNTRAINED_MARGIN = 0.05  # AUROC a trained model must gain over its untrained twin to credit training


def _flag(id: str, section: str, models: Iterable[str], title: str, text: str, warning: str,
          fold: bool = False) -> dict:
    return {"id": id, "section": section, "fold": fold, "models": list(models), "title": title, "text": text,
            "warning": warning}


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _names(models: Iterable[str]) -> str:
    m = [x.upper() for x in models]
    return m[0] if len(m) == 1 else ", ".join(m[:-1]) + " and " + m[-1]


def _g(v: float) -> str:
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


# --- training ----------------------------------------------------------------------------------

def not_converged(histories: dict[str, list[dict]]) -> list[dict]:
    """Fires for models still improving at the end: the lowest finite validation loss is at the last epoch,
    and the last tenth of the epochs (at least one) lowered it by more than ``STILL_IMPROVING``.

    The second condition spares a run whose schedule anneals the learning rate (onecycle, cosine): it
    improves at every epoch to the end by a hair, which is convergence, not a run stopped early.

    Example:
        >>> rows = [{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.0}]
        >>> [f["models"] for f in not_converged({"ae": rows})]
        [['ae']]
    """
    still = {}
    for m, rows in histories.items():
        finite = [(r["epoch"], r["val_loss"]) for r in rows if _finite(r.get("val_loss"))]
        if not finite or min(finite, key=lambda t: t[1])[0] != rows[-1]["epoch"]:
            continue
        recent = max(1, len(finite) // 10)
        if len(finite) > recent:
            before, last = min(v for _, v in finite[:-recent]), finite[-1][1]
            gain = (before - last) / abs(before) if before else math.inf
            if gain <= STILL_IMPROVING:
                continue
        else:
            gain = math.inf
        still[m] = (int(rows[-1]["epoch"]), recent, gain)
    if not still:
        return []
    where = "; ".join(f"{m.upper()} at epoch {e} of {e}" + (f", {g:.1%} lower than {k} epoch{'s' * (k > 1)} before"
                                                           if math.isfinite(g) else "")
                      for m, (e, k, g) in still.items())
    return [_flag("not_converged", "training", still, "Not converged.",
                  f"The best validation loss is at the last epoch ({where}): still improving, so every result below "
                  "shows a model stopped early, not what the architecture can do; train longer (--epochs, or "
                  "--preset seed).",
                  f"{_names(still)} still improving at the last epoch: train longer before reading these curves "
                  "as final.")]


def best_at_first_epoch(histories: dict[str, list[dict]], min_epochs: int = MIN_EPOCHS_AFTER_FIRST) -> list[dict]:
    """Fires for models whose lowest finite validation loss is at their first epoch although at least
    ``min_epochs`` epochs followed: the best checkpoint, which every result uses, is one epoch of training.

    Example:
        >>> rows = [{"epoch": e, "val_loss": v} for e, v in enumerate([1700.0, 4300.0, 2900.0, 1800.0], 1)]
        >>> best_at_first_epoch({"vae": rows})[0]["models"]
        ['vae']
    """
    models = {}
    for m, rows in histories.items():
        finite = [(int(r["epoch"]), r["val_loss"]) for r in rows if _finite(r.get("val_loss"))]
        if len(finite) > min_epochs and min(finite, key=lambda t: t[1])[0] == finite[0][0]:
            models[m] = (finite[0][0], finite[-1][0])
    if not models:
        return []
    where = "; ".join(f"{m.upper()} at epoch {first} of {last}" for m, (first, last) in models.items())
    return [_flag("best_at_first_epoch", "training", models, "Best at the first epoch.",
                  f"The validation loss never went below its first epoch's ({where}), so every result below is a "
                  "model trained for one epoch: training got worse, not better (a spike at the learning rate's "
                  "peak, or a rate too high); lower --lr or use --schedule cosine, and train again.",
                  f"{_names(models)}: the best checkpoint is the first epoch's (see Read me first).")]


def spike_episodes(rows: list[dict], factor: float = SPIKE_FACTOR) -> list[dict]:
    """Episodes in which the validation loss jumps above ``factor`` times its lowest earlier value.

    An epoch (not the first) is in a spike when its validation loss v exceeds the threshold
    t = m + (factor - 1) |m|, with m the lowest finite validation loss of the epochs before it
    (t = factor m for a positive loss; the |m| keeps the rule meaningful for a loss that can be
    negative). Consecutive spike epochs form one episode: {"epoch" (first), "peak", "peak_epoch",
    "before" (m), "recovered_at" (first later epoch at or below t, or None)}. Non-finite losses are
    skipped here (divergence is its own check).

    Example:
        >>> rows = [{"epoch": e, "val_loss": v} for e, v in enumerate([10.0, 5.0, 40.0, 4.0], 1)]
        >>> spike_episodes(rows)
        [{'epoch': 3, 'peak': 40.0, 'peak_epoch': 3, 'before': 5.0, 'recovered_at': 4}]
    """
    episodes, low, current = [], None, None
    for r in rows:
        v = r.get("val_loss")
        if not _finite(v):
            continue
        e = int(r["epoch"])
        if low is not None and v > low + (factor - 1) * abs(low):
            if current is None:
                current = {"epoch": e, "peak": float(v), "peak_epoch": e, "before": float(low), "recovered_at": None}
            elif v > current["peak"]:
                current["peak"], current["peak_epoch"] = float(v), e
        elif current is not None:
            current["recovered_at"] = e
            episodes.append(current)
            current = None
        low = v if low is None else min(low, v)
    if current is not None:
        episodes.append(current)
    return episodes


def validation_spikes(histories: dict[str, list[dict]], factor: float = SPIKE_FACTOR) -> list[dict]:
    """Fires for models with at least one :func:`spike_episodes` episode.

    Example:
        >>> rows = [{"epoch": e, "val_loss": v} for e, v in enumerate([10.0, 5.0, 40.0, 4.0], 1)]
        >>> validation_spikes({"vae": rows})[0]["models"]
        ['vae']
    """
    parts, models = [], []
    for m, rows in histories.items():
        eps = spike_episodes(rows, factor)
        if not eps:
            continue
        models.append(m)
        e = max(eps, key=lambda x: x["peak"] / max(abs(x["before"]), 1e-12))
        back = f"back by epoch {e['recovered_at']}" if e["recovered_at"] else "not back by the last epoch"
        more = f" ({len(eps)} episodes)" if len(eps) > 1 else ""
        parts.append(f"{m.upper()} to {_g(e['peak'])} at epoch {e['peak_epoch']}, from a best of {_g(e['before'])} "
                     f"before it, {back}{more}")
    if not models:
        return []
    return [_flag("validation_spikes", "training", models, "Validation spikes.",
                  f"The validation loss jumped above {factor:g}x its lowest earlier value ({'; '.join(parts)}): "
                  "training is unstable at this learning rate; the results use the best checkpoint, not the spike, "
                  "but lower --lr (or use --schedule cosine) if it recurs.",
                  f"{_names(models)}: the validation loss spiked during training (see Read me first).")]


def diverged(train_results: dict[str, dict]) -> list[dict]:
    """Fires for models whose training stopped on a non-finite loss (``diverged`` in their metrics)."""
    models = [m for m, r in train_results.items() if r.get("diverged")]
    if not models:
        return []
    return [_flag("diverged", "training", models, "Diverged.",
                  f"{_names(models)} hit a non-finite loss during training, so its results come from the last good "
                  "checkpoint; lower --lr or use --precision 32.",
                  f"{_names(models)} diverged during training.")]


# --- held-out comparison -----------------------------------------------------------------------

def below_linear(results: dict[str, dict], pca: Optional[dict]) -> list[dict]:
    """Fires for bottleneck models whose mean test PSNR is not above that of the PCA baseline (the top
    principal directions of the training images, as many as the code has numbers, on the same split).

    results: model -> ``evaluate`` result; pca: ``brainae.evaluation.baselines.pca_baseline``'s row.
    Models that bypass their bottleneck are left out (they are not compressing), and so are variational
    ones: a VAE gives up reconstruction for a code it can sample from, so a lower PSNR is its design.

    Example:
        >>> row = lambda db: {"psnr": {"mean": db}, "latent_dim": 512}
        >>> [f["models"] for f in below_linear({"ae": row(24.2), "resae": row(26.0)}, row(24.6))]
        [['ae']]
    """
    if not pca or not _finite(pca.get("psnr", {}).get("mean")):
        return []
    ref = pca["psnr"]["mean"]
    # a model is judged only against a PCA code no longer than its own
    below = {m: r["psnr"]["mean"] for m, r in results.items()
             if not (r.get("bypasses_bottleneck") or r.get("variational")) and r.get("latent_dim", 0) >= pca["latent_dim"]
             and _finite(r.get("psnr", {}).get("mean")) and r["psnr"]["mean"] <= ref}
    if not below:
        return []
    parts = ", ".join(f"{m.upper()} {v:.2f} dB" for m, v in below.items())
    return [_flag("below_linear", "comparison", below, "No better than a linear code.",
                  f"On the test split {parts} against {ref:.2f} dB for PCA with {pca['latent_dim']} components fitted "
                  "on the training images (no training at all): the network has not learnt more than a linear "
                  "projection of that size; train longer (--epochs, --preset seed) or change its architecture before "
                  "crediting its reconstructions.",
                  f"{_names(below)} reconstruct{'s' * (len(below) == 1)} the test images no better than PCA of the "
                  "same code size (the PCA row).")]


# --- latent space ------------------------------------------------------------------------------

def collapsed_latent(stats: dict[str, dict], min_dims: float = MIN_EFFECTIVE_DIMS) -> list[dict]:
    """Fires for models whose test codes use fewer than ``min_dims`` effective directions, or (a VAE)
    have fewer than ``min_dims`` active units.

    stats: model -> ``brainae.visualization.latent.code_statistics`` of its test codes
    (effective_dims, pc1, dim, active_units or None).

    Example:
        >>> collapsed_latent({"ae": {"effective_dims": 1.03, "pc1": 0.99, "dim": 512, "active_units": None}})[0]["fold"]
        True
    """
    parts, models = [], []
    for m, s in stats.items():
        why = []
        if s["effective_dims"] < min_dims:
            why.append(f"its test codes vary along {s['effective_dims']:.1f} effective directions of {s['dim']} "
                       f"(PC1 holds {s['pc1']:.0%} of the variance)")
        if s.get("active_units") is not None and s["active_units"] < min_dims:
            why.append(f"{s['active_units']} of its {s['dim']} code units vary over the test images (variance above "
                       "0.01), so its posterior sits on the prior")
        if why:
            models.append(m)
            parts.append(f"{m.upper()}: {' and '.join(why)}")
    if not models:
        return []
    return [_flag("collapsed_latent", "latent", models, "Collapsed latent code.",
                  f"{'; '.join(parts)}: the code tells images apart by little more than one number (overall brightness "
                  "or size), so the projections, class distances and traversals show an untrained code, not anatomy; "
                  "train longer before reading the latent space.",
                  f"{_names(models)}: collapsed code (see Read me first); these figures show an untrained code, not a "
                  "learnt anatomy.", fold=True)]


# --- hyperparameter search ---------------------------------------------------------------------

def degenerate_importances(values: dict[str, float], tol: float = EQUAL_IMPORTANCE) -> bool:
    """True when importances rank nothing: none computed, a non-finite one, or all within ``tol``
    of each other (two parameters at 0.5 / 0.5). A single searched parameter is not degenerate.

    Example:
        >>> degenerate_importances({"lr": 0.5, "batch": 0.5}), degenerate_importances({"lr": 0.8, "batch": 0.2})
        (True, False)
    """
    v = list(values.values())
    if not v or not all(_finite(x) for x in v):
        return True
    return len(v) > 1 and max(v) - min(v) <= tol


def sweep_too_small(sweeps: dict[str, dict], min_trials: int = MIN_TRIALS) -> list[dict]:
    """Fires for sweeps with fewer than ``min_trials`` complete trials or :func:`degenerate_importances`.

    sweeps: model -> sweep.json content (``states``, ``importances``, ``space``).

    Example:
        >>> s = {"states": {"complete": 3}, "importances": {"values": {"lr": 0.5, "bs": 0.5}}}
        >>> sweep_too_small({"ae": s})[0]["models"]
        ['ae']
    """
    parts, models = [], []
    for m, s in sweeps.items():
        complete = int((s.get("states") or {}).get("complete", 0))
        values = (s.get("importances") or {}).get("values") or {}
        few, flat = complete < min_trials, degenerate_importances(values)
        if not (few or flat):
            continue
        models.append(m)
        why = [f"{complete} complete trials"] if few else []
        if flat:
            why.append("importances " + (" / ".join(f"{v:.2f}" for v in values.values()) if values else "not computed"))
        parts.append(f"{m.upper()}: {', '.join(why)}")
    if not models:
        return []
    return [_flag("sweep_too_small", "sweeps", models, "Sweep too small to rank parameters.",
                  f"{'; '.join(parts)} (at least {min_trials} complete trials and distinct importances are needed): "
                  "the search figures and the best configuration are a demonstration, not a finding; run --preset seed "
                  "for the study's 17 AE and 61 VAE trials.",
                  "Too few trials to rank parameters or choose a configuration: a demonstration of the search only.",
                  fold=True)]


# --- tumour detection --------------------------------------------------------------------------

def untrained_anomaly(trained: dict[str, dict[str, float]], untrained: dict[str, dict[str, float]],
                      margin: float = UNTRAINED_MARGIN) -> list[dict]:
    """Fires for models with a score whose AUROC is at most ``margin`` above (or below) that of the
    same network with untrained weights on the same test images.

    trained, untrained: model -> score name -> image-level AUROC (NaN or missing scores are ignored).

    Example:
        >>> untrained_anomaly({"ae": {"ssim": 0.90, "mse": 0.70}}, {"ae": {"ssim": 0.88, "mse": 0.52}})[0]["models"]
        ['ae']
    """
    parts, models = [], []
    for m, scores in trained.items():
        base = untrained.get(m) or {}
        # 1e-9: a gain of exactly the margin (0.90 over 0.85) counts as within it despite rounding
        close = [(k, v, base[k]) for k, v in scores.items()
                 if _finite(v) and _finite(base.get(k)) and v - base[k] <= margin + 1e-9]
        if not close:
            continue
        models.append(m)
        parts.append(f"{m.upper()} " + ", ".join(f"{k} {v:.2f} vs {u:.2f}" for k, v, u in close))
    if not models:
        return []
    return [_flag("untrained_anomaly", "anomaly", models, "Tumour scores an untrained network reaches.",
                  f"The same network with random weights does as well on some scores, or within {margin:g} AUROC "
                  f"({'; '.join(parts)}: trained vs untrained), so they measure the images (a bright lesion is far "
                  "from any blurry output), not what the model learnt; train longer, on healthy images "
                  "(--normal-only), before using them.",
                  "Some AUROCs below are reached by an untrained network of the same configuration (see the "
                  "untrained column): they do not show what the model learnt.")]


def all_flags(histories: dict[str, list[dict]], train_results: Optional[dict[str, dict]] = None,
              latent: Optional[dict[str, dict]] = None, sweeps: Optional[dict[str, dict]] = None,
              anomaly: Optional[tuple[dict, dict]] = None, linear: Optional[tuple[dict, Optional[dict]]] = None) -> list[dict]:
    """Every check on what a study produced; parts it did not produce (None) are skipped.

    linear: (model -> test result, the PCA baseline's row) for :func:`below_linear`.
    """
    flags = (not_converged(histories) + best_at_first_epoch(histories) + validation_spikes(histories)
             + diverged(train_results or {}))
    if linear:
        flags += below_linear(*linear)
    if latent:
        flags += collapsed_latent(latent)
    if sweeps:
        flags += sweep_too_small(sweeps)
    if anomaly:
        flags += untrained_anomaly(*anomaly)
    return flags
