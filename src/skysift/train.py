"""Train one binary CNN classifier per task (rule ``train``).

Inputs: ``results/train/{task}.h5`` (train split 0, validation split 1) and its augmented
copies; outputs: a checkpoint holding everything (docs/formats.md), a metrics JSON and a
loss/AUROC curve. Every random draw comes from seeds derived from ``seed`` and the task; on
CPU the run is bit-reproducible, and a killed run resumes from ``<out>.last``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from skysift import cli
from skysift.config import config_hash
from skysift.errors import ConfigError, DataError
from skysift.infer import load_checkpoint, score
from skysift.io import atomic_output, open_h5, provenance, read_attr_json, write_json
from skysift.metrics import auroc
from skysift.models import (
    autocast,
    build_model,
    prepare_model,
    resolve_device,
    resolve_precision,
    to_device,
    torch_runtime,
)

log = logging.getLogger(__name__)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def derive_seed(seed: int, task: str, purpose: str) -> int:
    """A 63-bit seed from the master ``seed``, the task name and a purpose string."""
    digest = hashlib.blake2b(f"{seed}/train/{task}/{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass
class TrainData:
    """Examples in RAM: images ``(n, band, s, s)`` float32, labels ``(n,)`` float32 in {0, 1}."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_original: int
    n_augmented: int
    attrs: dict


def _read_split_file(path: Path, names: tuple[str, ...]) -> tuple[dict, dict]:
    with open_h5(path, required=names) as fh:
        arrays = {name: fh[name][()] for name in names}
        attrs = {key: read_attr_json(fh, key) for key in fh.attrs}
    images = arrays["images"]
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise DataError(f"{path}: images have shape {images.shape}, expected (n, band, s, s); "
                        "delete it and re-run its rule")
    if not np.isfinite(images).all():
        raise DataError(f"{path}: images contain NaN or inf; re-run preprocess and its rule")
    if not np.isin(arrays["label"], (0, 1)).all():
        raise DataError(f"{path}: labels must be 0 or 1; check the task's label column")
    return arrays, attrs


def load_data(trainset: str | Path, augmented: str | Path | None = None) -> TrainData:
    """Read the train (split 0) and validation (split 1) examples plus augmented copies.

    The test split (2) is counted and left out. Augmented copies must be copies of
    train-split objects (checked by ``index``) with the same stamp shape.
    """
    trainset = Path(trainset)
    arrays, attrs = _read_split_file(trainset, ("images", "label", "split", "index"))
    split = arrays["split"]
    train, val = split == 0, split == 1
    log.info("%s: %d train, %d val, %d test (unused) examples", trainset, train.sum(),
             val.sum(), (split == 2).sum())
    x_train, y_train = [arrays["images"][train]], [arrays["label"][train]]
    n_aug = 0
    if augmented is not None:
        aug, _ = _read_split_file(Path(augmented), ("images", "label", "index"))
        if aug["images"].shape[1:] != arrays["images"].shape[1:]:
            raise DataError(f"{augmented}: stamps {aug['images'].shape[1:]} differ from "
                            f"{trainset} {arrays['images'].shape[1:]}; re-run the augment rule")
        if not np.isin(aug["index"], arrays["index"][train]).all():
            raise DataError(f"{augmented}: holds copies of objects outside the train split of "
                            f"{trainset} (stale file?); re-run the augment rule")
        x_train.append(aug["images"])
        y_train.append(aug["label"])
        n_aug = len(aug["label"])
    return TrainData(
        x_train=torch.from_numpy(np.concatenate(x_train).astype(np.float32, copy=False)),
        y_train=torch.from_numpy(np.concatenate(y_train).astype(np.float32)),
        x_val=torch.from_numpy(arrays["images"][val].astype(np.float32, copy=False)),
        y_val=torch.from_numpy(arrays["label"][val].astype(np.float32)),
        n_original=int(train.sum()), n_augmented=n_aug, attrs=attrs)


def model_meta(config: dict, task: str, attrs: dict, in_channels: int, stamp_size_pix: int,
               inputs: dict) -> dict:
    """The ``meta`` block of a checkpoint: what a stamps file must match to be scored."""
    for key in ("bands", "normalisation"):
        if key not in attrs:
            raise DataError(f"{inputs['trainset']}: attribute '{key}' missing; "
                            "re-run the training_set rule")
    pixscale = attrs.get("pixscale_arcsec")
    return {
        "architecture": config["train"]["architecture"], "task": task,
        "bands": [str(b) for b in attrs["bands"]],
        "pixscale_arcsec": None if pixscale is None else float(pixscale),
        "stamp_size_pix": int(stamp_size_pix), "normalisation": attrs["normalisation"],
        "in_channels": int(in_channels),
        "provenance": provenance(config, task=task, **inputs),
    }


def _cpu_state(module: torch.nn.Module) -> dict:
    # clone: .cpu() of a CPU tensor is the live parameter itself
    return {k: v.detach().clone().cpu().contiguous() for k, v in module.state_dict().items()}


class Trainer:
    """Explicit training loop: AdamW, one-cycle schedule, pos-weighted BCE, early stopping.

    ``data`` stays on the CPU; batches are drawn with ``generator`` (CPU; a permutation per
    epoch), pinned, moved to ``device`` and augmented there on the fly with
    ``aug_generator`` (on ``device``; defaults to a fixed-seed one).
    """

    def __init__(self, model: torch.nn.Module, data: TrainData, train_cfg: dict,
                 device: torch.device, precision: str, generator: torch.Generator,
                 aug_generator: torch.Generator | None = None) -> None:
        self.model, self.data, self.cfg = model, data, train_cfg
        self.device, self.precision, self.generator = device, precision, generator
        self.aug_generator = aug_generator or torch.Generator(device=device).manual_seed(0)
        n_pos = float(data.y_train.sum())
        n_neg = float(len(data.y_train) - n_pos)
        if n_pos == 0 or n_neg == 0:
            raise DataError(f"the training examples hold {n_pos:.0f} positives and {n_neg:.0f} "
                            "negatives; a classifier needs both; check the task's labels")
        self.pos_weight = n_neg / n_pos
        steps = math.ceil(len(data.y_train) / train_cfg["batch_size"]) * train_cfg["epochs"]
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg["lr"],
                                           weight_decay=train_cfg["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=train_cfg["lr"], total_steps=steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.epoch, self.history, self.bad_epochs = 0, [], 0
        self.best_epoch, self.best_val_loss, self.best_state = 0, math.inf, None

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean BCE with logits, positives weighted by n_neg / n_pos (imbalance, once)."""
        pw = torch.tensor([self.pos_weight], device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), labels, pos_weight=pw)

    def train_epoch(self, augment: Augment | None) -> float:
        """One pass over the training examples; returns the mean training loss."""
        self.model.train()
        x, y = self.data.x_train, self.data.y_train
        perm = torch.randperm(len(y), generator=self.generator)
        total = torch.zeros((), device=self.device)
        for start in range(0, len(y), self.cfg["batch_size"]):
            idx = perm[start:start + self.cfg["batch_size"]]
            xb, yb = to_device(x[idx], self.device), y[idx].to(self.device, non_blocking=True)
            if augment is not None:
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
            total += loss.detach() * len(idx)
        return float(total) / len(y)

    def validate(self) -> tuple[float, float]:
        """(validation loss, validation AUROC); NaN for both without validation examples."""
        if len(self.data.y_val) == 0:
            return math.nan, math.nan
        logits = torch.from_numpy(score(self.model, self.data.x_val, self.cfg["batch_size"],
                                        self.device, self.precision))
        val_loss = float(self.loss(logits, self.data.y_val))
        if not torch.isfinite(logits).all():
            log.warning("non-finite validation logits at epoch %d (diverged?)", self.epoch)
            return val_loss, math.nan
        return val_loss, auroc(logits.numpy(), self.data.y_val.numpy())

    def run_epoch(self, augment: Augment | None) -> dict:
        """Train one epoch, validate, update early stopping; return the epoch's record."""
        t0 = time.perf_counter()
        train_loss = self.train_epoch(augment)
        train_s = time.perf_counter() - t0
        val_loss, val_auroc = self.validate()
        self.epoch += 1
        has_val = len(self.data.y_val) > 0
        if not has_val or val_loss < self.best_val_loss:
            self.best_epoch, self.best_val_loss, self.bad_epochs = self.epoch, val_loss, 0
            self.best_state = _cpu_state(self.model)
        else:
            self.bad_epochs += 1
        record = {"epoch": self.epoch, "train_loss": train_loss, "val_loss": val_loss,
                  "val_auroc": val_auroc, "lr": self.scheduler.get_last_lr()[0],
                  "seconds": time.perf_counter() - t0, "train_seconds": train_s,
                  "samples_per_s": len(self.data.y_train) / max(train_s, 1e-9)}
        self.history.append(record)
        return record

    @property
    def stopped(self) -> bool:
        """Early stopping: ``train.patience`` epochs without a lower validation loss."""
        return len(self.data.y_val) > 0 and self.bad_epochs >= self.cfg["patience"]

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue bit-identically (CPU tensors)."""
        rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state(),
               "augment": self.aug_generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model_state": _cpu_state(self.model),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "scaler_state": self.scaler.state_dict(), "rng_state": rng, "epoch": self.epoch,
            "trainer_state": {"history": self.history, "bad_epochs": self.bad_epochs,
                              "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
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
        self.best_state = state["best_model_state"]


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """``torch.save`` atomically (``.partial``, then rename)."""
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def _augmenter(config: dict) -> Augment | None:
    acfg = config["augment"]
    if not acfg["on_the_fly"]:
        return None
    try:
        from skysift.augment import augment_batch
    except ImportError as exc:
        raise ConfigError(f"augment.on_the_fly is true but skysift.augment cannot be imported "
                          f"({exc}); set augment.on_the_fly to false") from None
    return lambda x, generator: augment_batch(x, acfg, generator)


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def write_curve(path: str | Path, history: Sequence[dict], task: str) -> None:
    """Plot train/val loss and val AUROC against epoch to a PNG (Agg canvas, atomic)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 3.2))
    FigureCanvasAgg(fig)
    ax_loss, ax_auc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="weighted BCE loss", title=f"{task}: loss")
    ax_loss.legend()
    ax_auc.plot(epochs, [h["val_auroc"] for h in history], "s-", color="C1")
    ax_auc.set(xlabel="epoch", ylabel="AUROC", title=f"{task}: validation AUROC")
    for ax in (ax_loss, ax_auc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _resume_state(last: Path, config: dict) -> dict | None:
    if not last.exists():
        log.info("--resume: no %s; training from the start", last)
        return None
    ckpt = load_checkpoint(last)
    if config_hash(ckpt.get("config", {})) != config_hash(config):
        raise DataError(f"{last}: written with another config; restore that config or delete "
                        f"{last} to train from the start")
    log.info("resuming from %s after epoch %d", last, ckpt["epoch"])
    return ckpt


def _metrics(trainer: Trainer, task: str, meta: dict, seconds: float) -> dict:
    """The metrics JSON: per-epoch records, best epoch, throughput, device, counts."""
    best = trainer.history[trainer.best_epoch - 1]
    data, history = trainer.data, trainer.history
    n_seen = len(data.y_train) * len(history)
    return {
        "task": task, "device": str(trainer.device), "precision": trainer.precision,
        "epochs": [{k: _finite(v) for k, v in h.items()} for h in history],
        "best_epoch": trainer.best_epoch, "best_val_loss": _finite(best["val_loss"]),
        "best_val_auroc": _finite(best["val_auroc"]), "early_stopped": trainer.stopped,
        "seconds": seconds,
        "samples_per_s": n_seen / max(sum(h["train_seconds"] for h in history), 1e-9),
        "n_train": data.n_original, "n_augmented": data.n_augmented, "n_val": len(data.y_val),
        "pos_weight": trainer.pos_weight, "provenance": meta["provenance"],
    }


def train_task(config: dict, task: str, trainset: str | Path, augmented: str | Path | None,
               out: str | Path, metrics_path: str | Path, curve_path: str | Path,
               resume: bool = False) -> dict:
    """Train the model of ``task`` and write checkpoint, metrics and curve; return metrics."""
    if task not in [t["name"] for t in config["tasks"]]:
        raise ConfigError(f"--task {task}: not among tasks "
                          f"{[t['name'] for t in config['tasks']]}; add it to config tasks")
    tcfg = config["train"]
    device = resolve_device(tcfg["device"])
    precision = resolve_precision(tcfg["precision"], device)
    data = load_data(trainset, augmented)
    if data.attrs.get("task", task) != task:
        raise DataError(f"{trainset}: a training set for task '{data.attrs['task']}', not "
                        f"'{task}'; pass results/train/{task}.h5")
    if len(data.y_val) == 0:
        log.warning("%s: no validation examples (split 1); training all %d epochs without "
                    "early stopping or validation AUROC", trainset, tcfg["epochs"])
    out, last = Path(out), Path(str(out) + ".last")
    size = data.x_train.shape[-1]
    meta = model_meta(config, task, data.attrs, data.x_train.shape[1], size,
                      {"trainset": str(trainset), "augmented": str(augmented or "")})
    augment = _augmenter(config)
    t0 = time.perf_counter()
    with torch_runtime(tcfg["threads"], deterministic=device.type == "cpu"):
        torch.manual_seed(derive_seed(config["seed"], task, "torch"))
        generator = torch.Generator().manual_seed(derive_seed(config["seed"], task, "batches"))
        aug_generator = torch.Generator(device=device).manual_seed(
            derive_seed(config["seed"], task, "augment"))
        model = prepare_model(build_model(meta["architecture"], meta["in_channels"], size), device)
        trainer = Trainer(model, data, tcfg, device, precision, generator, aug_generator)
        ckpt = _resume_state(last, config) if resume else None
        if ckpt is not None:
            trainer.load_state_dict(ckpt)
        for _ in cli.progress(range(trainer.epoch, tcfg["epochs"]), desc=f"train {task}"):
            if trainer.stopped:
                break
            rec = trainer.run_epoch(augment)
            log.info("epoch %d/%d: train loss %.4f, val loss %.4f, val AUROC %.4f, %.0f "
                     "samples/s", rec["epoch"], tcfg["epochs"], rec["train_loss"],
                     rec["val_loss"], rec["val_auroc"], rec["samples_per_s"])
            save_checkpoint(last, {**trainer.state_dict(), "config": config, "meta": meta})
        state = trainer.state_dict()
        state["model_state"] = trainer.best_state
        state["trainer_state"].pop("best_model_state")
    metrics = _metrics(trainer, task, meta, time.perf_counter() - t0)
    save_checkpoint(out, {**state, "best_epoch": trainer.best_epoch, "config": config,
                          "meta": meta})
    write_json(metrics_path, metrics)
    write_curve(curve_path, trainer.history, task)
    last.unlink(missing_ok=True)
    log.info("trained %s: %d epochs (best %d: val loss %s, val AUROC %s) on %d examples "
             "(%d augmented), %d val, in %.1f s, %.0f samples/s on %s %s -> %s", task,
             trainer.epoch, trainer.best_epoch, metrics["best_val_loss"],
             metrics["best_val_auroc"], len(data.y_train), data.n_augmented, len(data.y_val),
             metrics["seconds"], metrics["samples_per_s"], device, precision, out)
    return metrics


def parser():
    """The ``python -m skysift.train`` argument parser."""
    p = cli.parser("Train the CNN classifier of one task.")
    p.add_argument("--task", required=True, help="task name (config tasks[].name)")
    p.add_argument("--trainset", required=True, help="results/train/{task}.h5")
    p.add_argument("--augmented", help="results/train/{task}.augmented.h5 (optional)")
    p.add_argument("--out", required=True, help="checkpoint to write, results/models/{task}.pt")
    p.add_argument("--metrics", help="metrics JSON (default: <out stem>.metrics.json)")
    p.add_argument("--curve", help="loss/AUROC curve PNG (default: <out stem>.curve.png)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run from <out>.last when it exists")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the train CLI; returns the exit code."""
    def body(args) -> int:
        config = cli.load_config(args)
        out = Path(args.out)
        train_task(config, args.task, args.trainset, args.augmented, out,
                   args.metrics or out.with_suffix(".metrics.json"),
                   args.curve or out.with_suffix(".curve.png"), resume=args.resume)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
