"""The explicit training loop of one network: AdamW, one-cycle schedule, early stopping.

Batches come from a loader (:mod:`skysift.learn.loader`) planned with ``generator``; they are
moved to ``device`` (pinned, channels_last on CUDA) and augmented there with
``aug_generator``. The loss is the binary cross-entropy of the logits, with the positives
weighted by n_neg / n_pos under ``balance: weight`` (and unweighted under ``sample``, where
the batches are balanced instead): class imbalance is handled once. Early stopping and the
kept epoch follow ``train.monitor``: the validation loss (lower) or AUROC (higher), on the
real labelled validation rows when there are any of both classes (simulated rows are then
reported, not decisive: :mod:`skysift.learn.selection`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from skysift.errors import DataError
from skysift.learn.loader import RamLoader, StreamLoader, TrainData, epoch_examples
from skysift.learn.runtime import autocast, single_thread, to_device
from skysift.learn.selection import auroc_or_nan, decisive_rows, group_masks
from skysift.metrics import auroc

log = logging.getLogger(__name__)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def cpu_state(module: torch.nn.Module) -> dict:
    """A detached CPU copy of ``module.state_dict()``."""
    # clone: .cpu() of a CPU tensor is the live parameter itself
    return {k: v.detach().clone().cpu().contiguous() for k, v in module.state_dict().items()}


def score_tensor(model: torch.nn.Module, x: torch.Tensor, batch_size: int,
                 device: torch.device, precision: str) -> torch.Tensor:
    """Logits (n,) float32 on the CPU of ``model`` (put in eval mode) for stamps ``x``."""
    model.eval()
    out = torch.empty(len(x), dtype=torch.float32)
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            with autocast(device, precision):
                logits = model(to_device(x[start:start + batch_size], device))
            out[start:start + batch_size] = logits.float().cpu()
    return out


class Trainer:
    """Train one network on ``data`` through ``loader``; holds everything a resume needs.

    Parameters
    ----------
    model : torch.nn.Module
        On ``device``.
    data : TrainData
        Labels of the training examples and the validation set.
    loader : RamLoader or StreamLoader
    train_cfg : dict
        The model's ``train`` block (epochs, batch_size, lr, weight_decay, patience, balance).
    device, precision : where and how to compute.
    generator : torch.Generator (CPU)
        Plans every epoch (examples, order, batches).
    aug_generator : torch.Generator on ``device``, optional
        Draws the on-the-fly augmentation; a fixed-seed one by default.
    """

    def __init__(self, model: torch.nn.Module, data: TrainData, loader: RamLoader | StreamLoader,
                 train_cfg: dict, device: torch.device, precision: str,
                 generator: torch.Generator, aug_generator: torch.Generator | None = None):
        self.model, self.data, self.loader, self.cfg = model, data, loader, train_cfg
        self.device, self.precision, self.generator = device, precision, generator
        self.aug_generator = aug_generator or torch.Generator(device=device).manual_seed(0)
        labels = data.labels
        n_pos = float(labels.sum())
        n_neg = float(len(labels) - n_pos)
        if n_pos == 0 or n_neg == 0:
            raise DataError(f"the training examples hold {n_pos:.0f} positives and {n_neg:.0f} "
                            "negatives; a classifier needs both; check the task's labels")
        self.balance = train_cfg["balance"]
        self.pos_weight = n_neg / n_pos if self.balance == "weight" else 1.0
        self._pos_weight: dict[torch.device, torch.Tensor] = {}
        self.labelled_share = train_cfg.get("labelled_share")
        n_epoch = len(self._examples(torch.Generator().manual_seed(0)))
        steps = math.ceil(n_epoch / train_cfg["batch_size"]) * train_cfg["epochs"]
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg["lr"],
                                           weight_decay=train_cfg["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=train_cfg["lr"], total_steps=steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.monitor = train_cfg["monitor"]
        self.decisive, self.groups, self.selected_on = self._selection(data)
        self.group_aurocs: dict[str, float] = {}
        self.epoch, self.history, self.bad_epochs = 0, [], 0
        self.best_epoch, self.best_val_loss, self.best_state = 0, math.inf, None
        self.best_score = math.inf  # the monitored quantity, as "lower is better"

    @staticmethod
    def _selection(data: TrainData) -> tuple[torch.Tensor, dict, str]:
        """The decisive validation rows (mask) and the groups reported beside them."""
        y, origin = data.y_val.numpy(), data.val_origin
        mask, name = decisive_rows(y, origin)
        groups = {g: m for g, m in group_masks(origin).items()
                  if g != "all" and m.any() and not m.all()}
        if name == "labelled":
            log.info("model selection follows the %d real labelled validation rows (%d "
                     "positives); %d other rows are reported, not decisive", int(mask.sum()),
                     int(y[mask].sum()), int((~mask).sum()))
        return torch.from_numpy(mask), groups, name

    def _examples(self, generator: torch.Generator) -> np.ndarray:
        """The examples of one epoch (their number never depends on ``generator``)."""
        return epoch_examples(self.data.labels, self.balance, generator, self.data.labelled,
                              self.labelled_share)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean BCE with logits; positives weighted by ``pos_weight`` (1 under ``sample``)."""
        pw = self._pos_weight.get(logits.device)
        if pw is None:  # made once per device: no host-to-device copy per step
            pw = self._pos_weight[logits.device] = torch.tensor([self.pos_weight],
                                                                device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), labels, pos_weight=pw)

    def train_epoch(self, augment: Augment | None) -> tuple[float, int]:
        """One pass over the epoch's examples; returns (mean training loss, examples seen)."""
        self.model.train()
        examples = self._examples(self.generator)
        total = torch.zeros((), device=self.device)
        seen = 0
        for xb, yb in self.loader.epoch(examples, self.cfg["batch_size"], self.generator):
            xb, yb = to_device(xb, self.device), yb.to(self.device, non_blocking=True)
            if augment is not None:
                with single_thread(self.device):
                    xb = augment(xb, self.aug_generator)
                if self.device.type == "cuda":
                    xb = xb.contiguous(memory_format=torch.channels_last)
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, self.precision):
                logits = self.model(xb)
            loss = self.loss(logits, yb)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total += loss.detach() * len(yb)
            seen += len(yb)
        return float(total) / max(seen, 1), seen

    def validate(self) -> tuple[float, float]:
        """(loss, AUROC) on the decisive validation rows; ``self.group_aurocs`` gets
        ``val_auroc_{group}`` of the labelled and simulated rows when the set mixes them.

        The decisive rows are the real labelled ones when they hold both classes, else all
        (:func:`skysift.learn.selection.decisive_rows`); NaN without validation examples.
        """
        self.group_aurocs = {}
        if len(self.data.y_val) == 0:
            return math.nan, math.nan
        every = score_tensor(self.model, self.data.x_val, self.cfg["batch_size"], self.device,
                             self.precision)
        y_all = self.data.y_val
        logits, y = every[self.decisive], y_all[self.decisive]
        val_loss = float(self.loss(logits, y))
        if not torch.isfinite(every).all():
            log.warning("non-finite validation logits at epoch %d (diverged?)", self.epoch)
            return val_loss, math.nan
        self.group_aurocs = {f"val_auroc_{name}": auroc_or_nan(every.numpy()[mask],
                                                              y_all.numpy()[mask])
                             for name, mask in self.groups.items()}
        return val_loss, auroc(logits.numpy(), y.numpy())

    def run_epoch(self, augment: Augment | None) -> dict:
        """Train one epoch, validate, update early stopping; return the epoch's record."""
        t0 = time.perf_counter()
        train_loss, seen = self.train_epoch(augment)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_s = time.perf_counter() - t0
        val_loss, val_auroc = self.validate()
        self.epoch += 1
        has_val = len(self.data.y_val) > 0
        score = val_loss if self.monitor == "val_loss" else -val_auroc
        if not has_val or score < self.best_score:  # NaN never improves
            self.best_epoch, self.best_val_loss, self.bad_epochs = self.epoch, val_loss, 0
            self.best_score = score
            self.best_state = cpu_state(self.model)
        else:
            self.bad_epochs += 1
        record = {"epoch": self.epoch, "train_loss": train_loss, "val_loss": val_loss,
                  "val_auroc": val_auroc, "lr": self.scheduler.get_last_lr()[0],
                  "seconds": time.perf_counter() - t0, "train_seconds": train_s,
                  "examples": seen, "samples_per_s": seen / max(train_s, 1e-9),
                  **self.group_aurocs}
        self.history.append(record)
        return record

    @property
    def stopped(self) -> bool:
        """Early stopping: ``patience`` epochs without a better monitored validation value."""
        return len(self.data.y_val) > 0 and self.bad_epochs >= self.cfg["patience"]

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue bit-identically (CPU tensors)."""
        rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state(),
               "augment": self.aug_generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model_state": cpu_state(self.model),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "scaler_state": self.scaler.state_dict(), "rng_state": rng, "epoch": self.epoch,
            "trainer_state": {"history": self.history, "bad_epochs": self.bad_epochs,
                              "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
                              "best_score": self.best_score,
                              "best_model_state": self.best_state},
        }

    def load_state_dict(self, ckpt: dict) -> None:
        """Restore a :meth:`state_dict` (from a ``.last`` checkpoint)."""
        self.model.load_state_dict(ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.scheduler.load_state_dict(ckpt["scheduler_state"])
        self.scaler.load_state_dict(ckpt["scaler_state"])
        torch.set_rng_state(ckpt["rng_state"]["torch"])
        self.generator.set_state(ckpt["rng_state"]["generator"])
        self.aug_generator.set_state(ckpt["rng_state"]["augment"])
        if self.device.type == "cuda" and "cuda" in ckpt["rng_state"]:
            torch.cuda.set_rng_state(ckpt["rng_state"]["cuda"], self.device)
        self.epoch = int(ckpt["epoch"])
        state = ckpt["trainer_state"]
        self.history, self.bad_epochs = list(state["history"]), int(state["bad_epochs"])
        self.best_epoch = int(state["best_epoch"])
        self.best_val_loss = float(state["best_val_loss"])
        # checkpoints written before train.monitor existed followed the validation loss
        self.best_score = float(state.get("best_score", state["best_val_loss"]))
        self.best_state = state["best_model_state"]
