"""Benchmark: the README's main job, `brainae study --out DIR` on the embedded phantom, timed end to end.

Runs it twice in fresh processes and records: the wall time of each, where the time went (sweeps, each
model, the report's analyses), the report's size, the split (by group), each model's test PSNR / SSIM
with their intervals and best epoch, the report's "Read me first" flags, and whether the two runs gave
identical metrics (same seed, same numbers). Results go to benchmarks/results/main_job_<tag>.{json,md}.

    python benchmarks/main_job.py [--keep DIR] [--tag cpu]   # --keep: also keep the first run's folder (README figure)
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from brainae.data.grouping import describe
from brainae.io import write_json
from brainae.study import comparable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_real import command_line, machine  # noqa: E402

COMMAND = ["brainae", "study", "--out", "DIR"]


def run_once(out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "brainae.cli", *COMMAND[1:-1], str(out), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((out / "summary.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="copy the first run's study folder here")
    ap.add_argument("--tag", default="cpu", help="result files: results/main_job_<tag>.{json,md}")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "first", Path(tmp) / "second"
        seconds, summary = run_once(first)
        seconds_again, summary_again = run_once(second)
        report_mb = (first / "report.html").stat().st_size / 1e6
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(first, args.keep)
    identical = (all(comparable(summary["models"][m]) == comparable(summary_again["models"][m]) for m in summary["models"])
                 and comparable(summary.get("baselines")) == comparable(summary_again.get("baselines")))
    split = summary["seconds"]
    res = {"machine": machine(), "command": f"{' '.join(COMMAND)} (timed by {command_line('main_job.py').strip()})",
           "data": summary["data"]["description"], "seconds": round(seconds, 1),
           "seconds_second_run": round(seconds_again, 1),
           "seconds_inside": {"sweeps": split["sweeps"], **split["models"], "report": split["report"]},
           "identical_metrics_second_run": identical, "report_mb": round(report_mb, 2),
           "split": describe(summary["data"]["grouping"]),
           "flags": {f["id"]: f["models"] for f in summary.get("flags", [])},
           "models": {m: {k: r["test"][k] for k in ("n", "ci_unit", "psnr", "ssim")}
                      | {"epochs": r["train"]["epochs"], "best_epoch": r["train"]["best_epoch"]}
                      for m, r in summary["models"].items()},
           # the report's linear baseline: PCA with as many components as the codes, no training
           "baselines": {b: {k: r[k] for k in ("n", "latent_dim", "psnr", "ssim")} for b, r in summary.get("baselines", {}).items()}}
    write_json(ROOT / "benchmarks" / "results" / f"main_job_{args.tag}.json", res)
    inside = ", ".join(f"{k} {v:.0f} s" for k, v in res["seconds_inside"].items())
    lines = [f"# The main job: `{' '.join(COMMAND)}`", "",
             f"Machine: {res['machine']}. Wall time {int(seconds // 60)} min {seconds % 60:.0f} s ({inside}); "
             f"a second run took {int(seconds_again // 60)} min {seconds_again % 60:.0f} s and gave "
             f"{'identical' if identical else 'DIFFERENT'} metrics. Report {res['report_mb']} MB. "
             f"Data: {res['data']}; {res['split']}.", "",
             "| model | epochs | best epoch | n test | PSNR (dB) | SSIM |", "| --- | --- | --- | --- | --- | --- |"]
    def scores(r: dict) -> str:
        p, s = r["psnr"], r["ssim"]
        return (f"{r['n']} | {p['mean']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}] | "
                f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] |")

    lines += [f"| {m} | {r['epochs']} | {r['best_epoch']} | {scores(r)}" for m, r in res["models"].items()]
    lines += [f"| {b} ({r['latent_dim']} components, no training) | - | - | {scores(r)}" for b, r in res["baselines"].items()]
    flags = "; ".join(f"{k} ({', '.join(v)})" for k, v in res["flags"].items()) or "none"
    lines += ["", f"Read-me-first flags in the report: {flags}."]
    (ROOT / "benchmarks" / "results" / f"main_job_{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
