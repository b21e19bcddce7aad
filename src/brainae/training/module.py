"""The one LightningModule: it trains any registered model through the model's own ``loss``."""
from __future__ import annotations

import sys

import lightning as L
import torch

from brainae.config import Config, from_dict, to_dict
from brainae.data.noise import batch_noise_seed, parse_noise
from brainae.models import build_model
from brainae.registry import resolve
from brainae.errors import BrainaeError
from brainae.training.augment import Augment
from brainae.training.graphs import GraphedStep
from brainae.training.losses import parse_loss


class AutoencoderModule(L.LightningModule):
    """Loss, metrics and optimiser around a plain network; the network never imports Lightning.

    Batches are ``(uint8 images (B, C, H, W), labels)``: converting to float after the transfer
    moves four times fewer bytes to the GPU. The float batch is stored channels-last, the layout of
    the weights (see ``brainae.models.build_model``), so oneDNN and cuDNN need no conversion.

    A non-finite training loss is noted on the device and its gradients zeroed there; the host reads
    the flag once per epoch. Checking ``float(loss)`` every step would make the host wait for the GPU
    at every step, which is most of the time of a small network's step.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.cfg: Config = from_dict(config)
        self.model = build_model(self.cfg.model, self.cfg.data.image_size)
        # a denoiser: train.noise, else the model's own default (dae); recorded in the checkpoint's config
        self.cfg.train.noise = self.cfg.train.noise or getattr(self.model, "default_noise", "")
        self.noise = parse_noise(self.cfg.train.noise) if self.cfg.train.noise else None
        self.recon_loss = parse_loss(self.cfg.train.loss)  # None: the model's own loss
        if resolve(self.cfg.model).variational and "psnr" in self.cfg.train.loss:
            raise BrainaeError("config key 'train.loss': psnr is not a per-pixel loss, which a variational model "
                               "scales against its KL term; use mse, l1, bce, ssim, ms_ssim or a mix of them")
        self.augment = Augment(self.cfg.train.augment, seed=self.cfg.train.seed)
        self.save_hyperparameters({"config": to_dict(self.cfg)})  # the resolved config lives in every checkpoint
        self.diverged_epoch: int | None = None  # the epoch whose training loss turned NaN / infinite
        self._bad_step: torch.Tensor | None = None  # on the device: did this step's loss turn non-finite?
        self._bad_epoch: torch.Tensor | None = None  # ... any step of this epoch?
        self._graphs = False  # train.compile on a GPU: steps run as CUDA graphs
        self._chunk_batch = 0  # > 0: Lightning hands over several batches of this size at once (see use_step_chunks)
        self._capture = False  # ... and full batches run as one CUDA graph replay
        self._graph: GraphedStep | None = None
        self.steps_per_epoch = 0  # optimiser steps per epoch, for the schedules (set by train())

    @classmethod
    def from_config(cls, cfg: Config) -> "AutoencoderModule":
        return cls(to_dict(cfg))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        x = images.float().div_(255.0)
        return (x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x), labels

    def forward(self, x: torch.Tensor):
        return self.model(x)

    def corrupt(self, x: torch.Tensor, stage: str, batch_idx: int) -> torch.Tensor:
        """The network's input: ``x`` itself, or for a denoiser ``x`` plus noise (the target stays clean).

        Training noise is drawn afresh for every batch; validation noise is seeded per batch, so the
        validation loss of different epochs is measured on the same noisy images.
        """
        if self.noise is None:
            return x
        seed = batch_noise_seed(self.cfg.train.seed, batch_idx) if stage == "val" else None
        return self.noise(x, generator=seed)

    def _step(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        x, _ = batch
        if stage == "train" and self.augment:
            x = self.augment(x)  # the target is the augmented image too
        out = self.model(self.corrupt(x, stage, batch_idx))
        terms = self.model.loss(out, x, self.recon_loss)
        loss = terms["loss"]
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, prog_bar=True, on_step=on_step, on_epoch=True, batch_size=len(x), sync_dist=True)
        for name, value in terms.items():
            if name != "loss":
                self.log(f"{stage}_{name}", value, on_step=False, on_epoch=True, batch_size=len(x), sync_dist=True)
        if stage == "val":
            mse = terms["mse"].clamp_min(1e-12)
            self.log("val_psnr", -10 * torch.log10(mse), on_epoch=True, batch_size=len(x), sync_dist=True)
        return loss

    def compile_network(self, device: torch.device) -> None:
        """``train.compile``: compile the network in place (its state_dict keys stay the same).

        On a GPU, mode reduce-overhead records the whole step as CUDA graphs: a batch-16 step of the
        study's AE launches about a hundred small kernels, and launching is what the GPU waits on.
        """
        self._graphs = device.type == "cuda"
        self.model.compile(mode="reduce-overhead" if self._graphs else "default")

    def use_step_chunks(self, batch_size: int, cuda_graphs: bool) -> None:
        """The GPU fast path: each training "batch" Lightning hands over holds several batches of
        ``batch_size``, and their optimiser steps run here, one after another, in the order the
        ordinary path would run them. Lightning's own work per batch (hooks, logging, progress), a few
        milliseconds of host time, is then paid once per chunk rather than once per step.

        cuda_graphs: run each full batch's forward and backward as one CUDA graph replay (``graphs``).
        """
        self.automatic_optimization = False
        self._chunk_batch, self._capture = batch_size, cuda_graphs

    def _forward_backward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One batch's loss terms and gradients; a non-finite loss leaves zero gradients (on the device)."""
        terms = self.model.loss(self.model(self.corrupt(x, "train", 0)), x, self.recon_loss)
        terms["loss"].backward()
        bad = ~torch.isfinite(terms["loss"].detach())
        self._zero_grads_where(bad)
        return {**{k: v.detach() for k, v in terms.items()}, "bad": bad}

    def _one_batch(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._capture and self._graph is None and len(x) == self._chunk_batch:
            dtype = torch.bfloat16 if str(self.trainer.precision).startswith("bf16") else None
            try:
                self._graph = GraphedStep(self.model, self._forward_backward, x, autocast_dtype=dtype)
            except RuntimeError as e:  # an op that cannot be captured: train on without graphs
                print(f"CUDA graph capture failed ({str(e).splitlines()[0]}); training on without graphs", file=sys.stderr)
                self._capture = False
        if self._graph is not None and self._graph.matches(x):
            return self._graph(x)
        if self._graph is not None:
            self._graph.bind()
        self.model.zero_grad(set_to_none=False)  # in place: a captured graph writes the same gradient tensors
        return self._forward_backward(x)

    def on_validation_model_zero_grad(self) -> None:
        """Lightning frees the gradients before each validation; a captured graph goes on writing into
        those very tensors, so with one they are zeroed in place instead. (Set to None, the optimiser
        skipped every weight from the second epoch on: training stalled at its first epoch's loss.)"""
        self.zero_grad(set_to_none=self._graph is None)

    def _chunk_step(self, batch) -> None:
        images, _ = batch
        opt, sched = self.optimizers(), self.lr_schedulers()
        names, total, n = None, None, 0
        for start in range(0, len(images), self._chunk_batch):
            x = images[start:start + self._chunk_batch]
            if len(x) < 2:
                continue  # BatchNorm cannot normalise one image; the ordinary loader drops that batch too
            terms = self._one_batch(x)
            opt.step()
            if sched is not None:
                sched.step()
            bad = terms.pop("bad")
            self._bad_epoch = bad if self._bad_epoch is None else self._bad_epoch | bad
            names = names or list(terms)
            values = torch.stack([terms[k].float() for k in names]) * len(x)
            total, n = (values if total is None else total + values), n + len(x)
        if total is None:
            return
        means = total / n  # the chunk's per-image means: Lightning's epoch means weigh them by batch_size=n
        for i, name in enumerate(names):
            self.log(f"train_{name}", means[i], prog_bar=name == "loss", on_step=name == "loss", on_epoch=True,
                     batch_size=n, sync_dist=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        if self._chunk_batch:
            return self._chunk_step(batch)
        if self._graphs:
            torch.compiler.cudagraph_mark_step_begin()  # this step's graph outputs replace the last step's
        loss = self._step(batch, "train", batch_idx)
        self._bad_step = ~torch.isfinite(loss.detach())
        self._bad_epoch = self._bad_step if self._bad_epoch is None else self._bad_epoch | self._bad_step
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """A non-finite step's gradients become zeros, so the weights stay finite (Adam's momentum still moves them)."""
        bad = self._bad_step
        if bad is None:
            return
        if bad.device.type == "cpu" and not bool(bad):
            return  # reading a CPU flag costs nothing; the common case skips the pass over the gradients
        self._zero_grads_where(bad)

    def _zero_grads_where(self, bad: torch.Tensor) -> None:
        """Zero every gradient where the device flag ``bad`` is set; on a GPU no host wait, a no-op fill when
        the step is fine."""
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.masked_fill_(bad, 0.0)

    def on_train_epoch_end(self) -> None:
        """A diverged run cannot recover: stop after this epoch (sweeps and metrics.json record why)."""
        if self._bad_epoch is not None and bool(self._bad_epoch):
            self.diverged_epoch = self.diverged_epoch or self.current_epoch + 1
            self.trainer.should_stop = True
        self._bad_epoch = None

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val", batch_idx)

    def configure_optimizers(self):
        """Adam (the study's; weight decay as L2) or AdamW (decoupled decay), with an optional per-step schedule."""
        t = self.cfg.train
        opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        # fused: one kernel for all tensors instead of several passes over the study AE's 13 M weights,
        # a large share of a CPU step; the update is the same up to rounding
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in self.model.parameters())
        opt = opt_cls(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=fused)
        if t.schedule == "none":
            return opt
        steps = max(1, self.steps_per_epoch * self.trainer.max_epochs if self.steps_per_epoch
                    else int(self.trainer.estimated_stepping_batches))
        if t.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        else:  # onecycle: warm up to train.lr over the first 30% of the steps, then anneal
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
