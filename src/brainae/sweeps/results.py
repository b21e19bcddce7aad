"""sweep.json from a study: every trial with its state, epochs, seconds and reason; the best trial;
parameter importances; and the best trial's run folder copied to DIR/best."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import TrialState

from brainae.sweeps.study import SweepOptions, redact, retried_by, storage_url
from brainae.sweeps.space import Space, epochs_on_grid


def decode_params(space: Space, raw: dict) -> dict:
    by_key = {p.key: p for p in space.params}
    return {k: (json.loads(v) if k in by_key and by_key[k].has_lists() else v) for k, v in raw.items()}


def summarise(study: optuna.Study, opts: SweepOptions) -> dict:
    """sweep.json: the space, the best trial and every trial with its state, epochs and reason."""
    trials = []
    frozen = study.get_trials(deepcopy=False)
    retries = retried_by(frozen)
    for t in frozen:
        reason = t.user_attrs.get("reason") or t.system_attrs.get("fail_reason")
        if t.number in retries:
            cause = t.user_attrs.get("lost") or "its worker stopped sending heartbeats"
            reason = f"{cause}; retried as trial {retries[t.number]}"
        elif t.user_attrs.get("lost"):  # its retry was used up
            reason = t.user_attrs["lost"]
        trials.append({
            "number": t.number, "state": t.state.name.lower(), "params": decode_params(opts.space, t.params),
            "value": t.value, "epochs_run": t.user_attrs.get("epochs_run"), "max_epochs": t.user_attrs.get("max_epochs"),
            "best_epoch": t.user_attrs.get("best_epoch"), "seconds": t.user_attrs.get("seconds"),
            "reason": reason, "retry_of": (t.system_attrs.get("retry_history") or [None])[-1],
            "run_dir": t.user_attrs.get("run_dir"), "duplicate_of": t.user_attrs.get("duplicate_of"),
            "intermediate": {int(k): v for k, v in sorted(t.intermediate_values.items())},
        })
    counts = {s: sum(t["state"] == s for t in trials) for s in ("complete", "pruned", "fail", "running", "waiting")}
    # what pruning saved: trials that trained and completed or were pruned (failed and reused ones aside)
    ran = [t for t in trials if t["state"] in ("complete", "pruned") and t["max_epochs"]
           and t["epochs_run"] is not None and t["duplicate_of"] is None]
    epochs = {"budget": sum(t["max_epochs"] for t in ran), "run": sum(t["epochs_run"] for t in ran)}
    epochs["saved"] = epochs["budget"] - epochs["run"]
    epochs["failed_trials_run"] = sum(t["epochs_run"] or 0 for t in trials if t["state"] == "fail")
    epochs["reused_trials"] = sum(t["duplicate_of"] is not None for t in trials)
    best = None
    complete = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    if complete:
        b = min(complete, key=lambda t: t["value"])
        best = {"number": b["number"], "value": b["value"], "params": b["params"], "best_epoch": b["best_epoch"],
                "epochs": epochs_on_grid(b["best_epoch"], opts.space.epochs), "run_dir": b["run_dir"]}
    return {
        "model": opts.model, "study": opts.name, "storage": redact(storage_url(opts.storage, opts.out)),
        "objective": "lowest validation loss of the trial, per pixel (AE: MSE; VAE: (BCE + KL) / pixels)",
        "space": {"name": opts.space.name, "fingerprint": opts.space.fingerprint(), "table": opts.space.table(),
                  "epochs": opts.space.epochs},
        "sampler": opts.sampler, "pruner": opts.pruner, "n_trials": len(trials), "states": counts,
        "epochs": epochs, "best": best, "importances": importances(study), "trials": trials,
    }


def importances(study: optuna.Study) -> dict:
    """Parameter importances: fANOVA when scikit-learn is installed, else PED-ANOVA (no extra package)."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return {"method": None, "values": {}, "note": "fewer than 2 complete trials"}
    try:
        import sklearn  # noqa: F401

        evaluator, method = FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:
        evaluator, method = PedAnovaImportanceEvaluator(), "PED-ANOVA (scikit-learn not installed, so no fANOVA)"
    try:
        values = get_param_importances(study, evaluator=evaluator)
    except Exception as e:  # e.g. every complete trial has the same parameters
        return {"method": method, "values": {}, "note": f"{type(e).__name__}: {str(e)[:150]}"}
    return {"method": method, "values": {k: float(v) for k, v in values.items()}, "note": ""}


def drop_weights(trial_dir: Path) -> None:
    """Remove a trial's checkpoints and slim weights; its config, history and metrics stay."""
    for name in ("checkpoints", "weights"):
        shutil.rmtree(trial_dir / name, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    """Checkpoints and weights as hard links (no second copy on disk: they are only ever replaced whole, by
    a rename, never written in place); every other file, and any file where links fail, copied."""
    if Path(src).suffix in (".ckpt", ".safetensors"):
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or one without hard links
            pass
    shutil.copy2(src, dst)


def copy_best(summary: dict, out: Path) -> Optional[str]:
    """Copy the best trial's run folder (with its checkpoints, plus slim weights) to DIR/best, replacing an older copy."""
    best = summary.get("best")
    if not best or not best.get("run_dir"):
        return None
    src = Path(best["run_dir"])
    if not (src / "checkpoints").is_dir():
        return None  # run on another machine, or its checkpoints were removed
    tmp, dest = out / ".best.tmp", out / "best"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=_link_or_copy)
    from brainae.training.run import run_config, write_best_weights  # here: it brings torch, which the rest needs not

    write_best_weights(tmp, run_config(tmp))  # the trials skip them (see objective)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    for d in (out / "trials").glob("*/checkpoints"):  # only the best trial keeps checkpoints and weights
        if d.parent != src:
            drop_weights(d.parent)
    return str(dest)
