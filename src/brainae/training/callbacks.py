"""Per-epoch history written as CSV, one row per epoch, safe to resume."""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import lightning as L

from brainae.io import atomic_write_text

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_mse", "val_psnr", "seconds", "lr"]


def read_history(path: str | Path) -> list[dict]:
    """Rows of a history.csv as dicts of floats (missing values become NaN)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()} for row in csv.DictReader(f)]


class HistoryCSV(L.Callback):
    """Rewrites ``history.csv`` atomically after every epoch; on resume, later rows are replaced."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics

        def get(name: str) -> float:
            v = m.get(name)
            return float(v) if v is not None else math.nan

        epoch = trainer.current_epoch + 1
        row = {
            "epoch": epoch,
            "train_loss": get("train_loss_epoch"),
            "val_loss": get("val_loss"),
            "val_mse": get("val_mse"),
            "val_psnr": get("val_psnr"),
            "seconds": round(time.perf_counter() - self._start, 3),
            "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else math.nan,
        }
        rows = [r for r in read_history(self.path) if r["epoch"] < epoch] + [row]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (int(r[k]) if k == "epoch" else r[k]) for k in HISTORY_COLUMNS})
        atomic_write_text(self.path, buf.getvalue())
