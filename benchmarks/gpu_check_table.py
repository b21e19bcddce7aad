"""The one table gpu_check.sh prints, from the files its steps left in OUT_DIR (a step that failed or was
cut at the time budget leaves a row that says so).

    python benchmarks/gpu_check_table.py OUT_DIR EPOCHS STUDY_SECONDS
"""
from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path


def read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def trial_states(db: Path) -> dict[str, int]:
    """Finished and running trials in a sweep's Optuna database (the study may have been cut mid-sweep)."""
    if not db.is_file():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return {state.lower(): n for state, n in con.execute("SELECT state, COUNT(*) FROM trials GROUP BY state")}


def rows(out: Path, epochs: int, study_seconds: float) -> list[tuple[str, str]]:
    rows = []
    profile = next(iter(sorted(out.glob("gpu_profile_*.json"))), None)
    if profile:
        p = json.loads(profile.read_text())
        for name, r in p.items():
            if isinstance(r, dict) and "overrides" in r:
                rows.append((f"profile: {name}", r.get("error") or f"{r['later_epoch_seconds']} s/epoch "
                             f"(first {r['first_epoch_seconds']} s), val loss {r['best_val_loss']:.5f}"))
        rows.append(("bare step (ms)", ", ".join(f"{k.removesuffix('_ms')} {v}" for k, v in p["floor"].items())))
    tp = next(iter(sorted(out.glob("train_throughput_*.json"))), None)
    if tp:
        for k, v in json.loads(tp.read_text())["training"].items():
            rows.append((f"throughput: {k}", f"{v['images_per_second']} img/s ({v['precision']})"
                         + (f", {v['speedup_vs_plain']}x plain" if "speedup_vs_plain" in v else "")))
    for model in ("ae", "vae"):
        m = read(out / f"recipe_{model}" / "metrics.json")
        rows.append((f"study {model.upper()} recipe, {epochs} epochs",
                     f"{m['seconds']} s ({m['seconds_per_epoch']} s/epoch), best val PSNR {m['best_val_psnr']:.2f} dB"
                     if m else "did not finish (see its log)"))
    summary = read(out / "study" / "summary.json")
    if summary:
        rows.append(("whole study (search, training, report)", f"{study_seconds:.0f} s; {json.dumps(summary.get('seconds', {}))}"))
    else:
        states = {m: trial_states(out / "study" / "sweeps" / m / "sweep.db") for m in ("ae", "vae")}
        done = {m: s.get("complete", 0) + s.get("pruned", 0) for m, s in states.items()}
        rows.append(("whole study: cut at the budget", f"{study_seconds:.0f} s: AE {done['ae']}/17, VAE {done['vae']}/61 "
                     f"trials finished ({states})"))
    return rows


def main(out: str, epochs: str, study_seconds: str) -> None:
    table = rows(Path(out), int(epochs), float(study_seconds))
    width = max(len(a) for a, _ in table)
    print("\n".join(f"{a:<{width}}  {b}" for a, b in table))


if __name__ == "__main__":
    main(*sys.argv[1:4])
