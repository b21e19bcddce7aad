"""Benchmark: the README's main job, `brainae study --out DIR` on the embedded phantom, timed end to end.

Records the wall time, the split (by group), and each model's test PSNR / SSIM with their intervals,
from the run's own summary.json. Results go to benchmarks/results/main_job_cpu.{json,md}.

    python benchmarks/main_job.py
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from brainae.data.grouping import describe
from brainae.io import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_real import machine  # noqa: E402

COMMAND = ["brainae", "study", "--out", "DIR"]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "study"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "brainae.cli", *COMMAND[1:-1], str(out), "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        summary = json.loads((out / "summary.json").read_text())
        report_mb = (out / "report.html").stat().st_size / 1e6
    res = {"machine": machine(), "command": " ".join(COMMAND) + " (timed by python benchmarks/main_job.py)",
           "data": summary["data"]["description"], "seconds": round(seconds, 1), "report_mb": round(report_mb, 2),
           "split": describe(summary["data"]["grouping"]),
           "models": {m: {k: r["test"][k] for k in ("n", "ci_unit", "psnr", "ssim")} | {"epochs": r["train"]["epochs"]}
                      for m, r in summary["models"].items()}}
    write_json(ROOT / "benchmarks" / "results" / "main_job_cpu.json", res)
    lines = [f"# The main job: `{' '.join(COMMAND)}`", "", f"Machine: {res['machine']}. Wall time {seconds / 60:.0f} min "
             f"{seconds % 60:.0f} s; report {res['report_mb']} MB. Data: {res['data']}; {res['split']}.", "",
             "| model | epochs | n test | PSNR (dB) | SSIM |", "| --- | --- | --- | --- | --- |"]
    for m, r in res["models"].items():
        p, s = r["psnr"], r["ssim"]
        lines.append(f"| {m} | {r['epochs']} | {r['n']} | {p['mean']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}] | "
                     f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] |")
    (ROOT / "benchmarks" / "results" / "main_job_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
