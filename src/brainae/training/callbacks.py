"""What a run reports while it trains: history.csv (one row per epoch, safe to resume), a line per epoch
or a progress bar on stderr, and optionally one of Lightning's loggers (TensorBoard, MLflow, W&B)."""
from __future__ import annotations

import contextlib
import copy
import csv
import importlib.util
import io
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from brainae.errors import BrainaeError
from brainae.io import atomic_write_text
from brainae.progress import format_epoch, line, verbose

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_mse", "val_psnr", "seconds", "lr"]


def read_history(path: str | Path) -> list[dict]:
    """Rows of a history.csv as dicts of floats (missing values become NaN)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()} for row in csv.DictReader(f)]


class HistoryCSV(L.Callback):
    """Rewrites ``history.csv`` atomically after every epoch; on resume, later rows are replaced.

    echo: also print the row as one line on stderr (``progress.format_epoch``), for logs where no
    progress bar is drawn.
    """

    def __init__(self, path: str | Path, echo: bool = False) -> None:
        self.path = Path(path)
        self.echo = echo
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
        if self.echo:
            line(format_epoch(row, trainer.max_epochs))


CHECKPOINT_SPACING_S = 30.0  # the GPU fast path's checkpoint spacing (train.py)


def _copy(obj):
    """A checkpoint dict whose tensors are copies: training goes on changing the originals in place."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        out = copy.copy(obj)  # keeps the mapping's own type (OrderedDict, defaultdict)
        for k, v in obj.items():
            out[k] = _copy(v)
        return out
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(_copy(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(v) for v in obj)
    return obj


class SpacedCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, writing its file at most every ``min_interval`` seconds (0: every save).

    A save that falls due sooner is copied in memory (on the GPU, where the weights are: a fraction of
    a millisecond) and written at the next save that may write, when training ends, or when it stops
    on an error or Ctrl-C. The file is the one an immediate save would have written, only later: a kill
    -9 loses at most ``min_interval`` seconds of training.
    """

    def __init__(self, *args, min_interval: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.min_interval = min_interval
        self._written_at = -math.inf
        self._pending: Optional[tuple[str, dict]] = None

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if time.monotonic() - self._written_at >= self.min_interval:
            self._pending = None
            super()._save_checkpoint(trainer, filepath)
            self._written_at = time.monotonic()
            return
        self._pending = (filepath, _copy(trainer._checkpoint_connector.dump_checkpoint(self.save_weights_only)))
        self._last_global_step_saved = trainer.global_step  # what ModelCheckpoint's own save records
        self._last_checkpoint_saved = filepath

    def _write_pending(self, trainer: L.Trainer) -> None:
        if self._pending is not None:
            filepath, checkpoint = self._pending
            self._pending = None
            trainer.strategy.save_checkpoint(checkpoint, filepath)
            self._written_at = time.monotonic()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_pending(trainer)
        super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        try:
            self._write_pending(trainer)
        except OSError:
            pass  # the error being raised (a full disk, say) is the one to report; the earlier files stay whole


def _on_stderr(make):
    with contextlib.redirect_stdout(sys.stderr):  # Lightning's bars read sys.stdout when they are made
        return make()


class StderrProgressBar(TQDMProgressBar):
    """Lightning's tqdm bars, drawn on stderr: Lightning draws them on stdout, among the results."""

    def init_sanity_tqdm(self):
        return _on_stderr(super().init_sanity_tqdm)

    def init_train_tqdm(self):
        return _on_stderr(super().init_train_tqdm)

    def init_validation_tqdm(self):
        return _on_stderr(super().init_validation_tqdm)


# train.logger -> modules of which one must be importable (Lightning's TensorBoardLogger takes either)
LOGGER_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",), "wandb": ("wandb",)}


def check_logger(name: str) -> None:
    """Fail before any work when ``train.logger`` names a logger whose package is not installed."""
    modules = LOGGER_MODULES.get(name, ())
    if modules and not any(importlib.util.find_spec(m) for m in modules):
        raise BrainaeError(f"--logger {name} needs the {modules[0]} package, which is not installed; "
                           f"pip install 'brainae[{name}]' (or choose --logger csv)")


def make_logger(name: str, out: Path):
    """Lightning's logger for ``train.logger``, writing inside the run folder ``out``; False for csv.

    csv: history.csv alone (HistoryCSV writes it whatever the logger, as the report reads it).
    tensorboard: event files in out/tensorboard (``tensorboard --logdir out``).
    mlflow: a SQLite store, out/mlflow.db (``mlflow ui --backend-store-uri sqlite:///out/mlflow.db``),
        or the server MLFLOW_TRACKING_URI names.
    wandb: offline unless WANDB_MODE says otherwise, in $WANDB_DIR/wandb (default out/wandb); upload
        later with ``wandb sync``. The same conventions as ``brainae sweep --wandb``.
    """
    check_logger(name)  # train() checked before loading data; this keeps the function safe to call alone
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        # no version_N sub-folders: a resumed run appends its event files beside the first ones
        return TensorBoardLogger(save_dir=out, name="", version="tensorboard", default_hp_metric=False)
    if name == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        if not verbose():  # its table creation and "experiment not found, creating it" notes
            os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow sets its level when imported
            logging.getLogger("mlflow").setLevel(logging.WARNING)  # where it was imported before
            logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)
        if os.environ.get("MLFLOW_TRACKING_URI"):  # the user's own server or store
            return MLFlowLogger(experiment_name="brainae", run_name=out.name)
        # SQLite, not MLflow's plain-file store: MLflow 3.17 refuses that one unless MLFLOW_ALLOW_FILE_STORE is set
        return MLFlowLogger(experiment_name="brainae", run_name=out.name,
                            tracking_uri=f"sqlite:///{(out / 'mlflow.db').resolve()}",
                            artifact_location=str((out / "mlartifacts").resolve()))
    if name == "wandb":
        import wandb
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(project="brainae", name=out.name, save_dir=os.environ.get("WANDB_DIR") or str(out),
                           mode=os.environ.get("WANDB_MODE", "offline"),
                           # console off: wandb would capture our stderr; its banner and summary only with --verbose
                           settings=wandb.Settings(console="off", silent=not verbose()))
    return False


def finish_logger(logger) -> None:
    """End a W&B run: wandb keeps one run per process open, and the study trains several runs in one."""
    from lightning.pytorch.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        wandb.finish()
