"""Train one named model for one task (rule ``train``), or import an existing checkpoint.

Inputs: ``results/train/{task}.h5`` (train split 0, validation split 1) and its augmented
copies; outputs: ``results/models/{task}/{model}.pt`` holding everything (docs/models.md),
a metrics JSON and a loss/AUROC curve. A committee (``members: K``) trains K networks one
after the other from seeds derived from (seed, task, model, member) and stores their
average. A killed run resumes from ``<out>.last`` (``--resume``, which the rule always
passes) and runs only the remaining epochs from the saved optimiser state: within one
process the resumed weights equal an uninterrupted run's bit for bit (tested); across
processes on CPU they agree to float rounding, not bit for bit (docs/reliability.md,
measured). A ``.last`` written with another config or from other training files is ignored
(training starts over). A model with ``checkpoint:`` is copied from that file (after
checking it loads) instead of trained. A ``classical`` model (features + boosted trees,
:mod:`skysift.learn.classical`) takes the same inputs and writes the same three outputs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from skysift import cli
from skysift.config import config_hash
from skysift.errors import ConfigError, DataError
from skysift.io import atomic_output, provenance, write_json
from skysift.learn.checkpoints import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    sha256_file,
)
from skysift.learn.finetune import init_from
from skysift.learn.fit_classical import train_classical
from skysift.learn.loader import TrainData, make_loader, open_data, read_test_split
from skysift.learn.models import CLASSICAL, build_model, count_parameters
from skysift.learn.runinfo import derive_seed, finite_or_none, model_meta
from skysift.learn.runtime import prepare_model, resolve_device, resolve_precision, torch_runtime
from skysift.learn.selection import group_ranking
from skysift.learn.trainer import Augment, Trainer, cpu_state, score_tensor
from skysift.metrics import auroc
from skysift.modelspec import ModelSpec, find_spec, model_specs

__all__ = ["derive_seed", "main", "parser", "train_model"]

log = logging.getLogger(__name__)


def _augmenter(config: dict, normalisation) -> Augment | None:
    acfg = config["augment"]
    if not acfg["on_the_fly"]:
        return None
    from skysift.learn.transforms import augment_batch
    return lambda x, generator: augment_batch(x, acfg, generator, normalisation)


def write_curve(path: str | Path, histories: Sequence[Sequence[dict]], title: str) -> None:
    """Plot train/val loss and val AUROC against epoch, one line per member (PNG, atomic)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 3.2))
    FigureCanvasAgg(fig)
    ax_loss, ax_auc = fig.subplots(1, 2)
    for i, history in enumerate(histories):
        tag = f" {i}" if len(histories) > 1 else ""
        epochs = [h["epoch"] for h in history]
        ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", color=f"C{2 * i}",
                     label=f"train{tag}")
        ax_loss.plot(epochs, [h["val_loss"] for h in history], "s--", color=f"C{2 * i + 1}",
                     label=f"validation{tag}")
        ax_auc.plot(epochs, [h["val_auroc"] for h in history], "s-", color=f"C{2 * i + 1}")
    if not any(histories):
        ax_loss.text(0.5, 0.5, "no training history", ha="center", transform=ax_loss.transAxes)
    else:
        ax_loss.legend(fontsize="small")
    ax_loss.set(xlabel="epoch", ylabel="BCE loss", title=f"{title}: loss")
    ax_auc.set(xlabel="epoch", ylabel="AUROC", title="validation AUROC")
    for ax in (ax_loss, ax_auc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def input_fingerprint(*files: str | Path | None) -> list[list]:
    """[path, size, mtime_ns] of each input file: a ``.last`` resumes only on the same files
    (Snakemake re-making a training set gives it a new mtime)."""
    out = []
    for f in files:
        if f:
            st = Path(f).stat()
            out.append([str(f), st.st_size, st.st_mtime_ns])
    return out


def _resume_state(last: Path, config: dict, inputs: list[list]) -> dict | None:
    """The ``.last`` checkpoint to continue from, or None to train from the start.

    A ``.last`` of another config or other input files (a re-run after a change) would mix
    two trainings: it is ignored with a warning, so the rule can always pass ``--resume``.
    """
    if not last.exists():
        log.info("--resume: no %s; training from the start", last)
        return None
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        log.warning("--resume: %s is unreadable (%s); training from the start", last,
                    type(exc).__name__)
        return None
    if config_hash(ckpt.get("config", {})) != config_hash(config):
        log.warning("--resume: %s was written with another config; training from the start",
                    last)
        return None
    if ckpt.get("inputs") != inputs:
        log.warning("--resume: %s was written from other training files (%s); training from "
                    "the start", last, ckpt.get("inputs"))
        return None
    log.info("resuming from %s: member %d after epoch %d", last, ckpt["member"], ckpt["epoch"])
    return ckpt


def _member_trainer(config: dict, spec: ModelSpec, data: TrainData, loader, member: int,
                    device: torch.device, precision: str) -> tuple[Trainer, dict | None]:
    """A member's Trainer, its network seeded (and started from ``init``), with the init
    report (None without ``init``)."""
    seed = config["seed"]
    torch.manual_seed(derive_seed(seed, spec.task, "torch", spec.name, member))
    generator = torch.Generator().manual_seed(
        derive_seed(seed, spec.task, "batches", spec.name, member))
    aug_generator = torch.Generator(device=device).manual_seed(
        derive_seed(seed, spec.task, "augment", spec.name, member))
    net = build_model(spec.architecture, data.shape[0], data.shape[-1])
    report = init_from(net, spec.init) if spec.init else None
    return Trainer(prepare_model(net, device), data, loader, spec.train, device, precision,
                   generator, aug_generator), report


def _member_record(trainer: Trainer, member: int, init: dict | None) -> dict:
    best = trainer.history[trainer.best_epoch - 1] if trainer.best_epoch else {}
    return {"member": member, "init": init, "best_epoch": trainer.best_epoch,
            "best_val_loss": finite_or_none(best.get("val_loss")),
            "best_val_auroc": finite_or_none(best.get("val_auroc")),
            "early_stopped": trainer.stopped,
            "epochs": [{k: finite_or_none(v) for k, v in h.items()} for h in trainer.history]}


def _assemble(spec: ModelSpec, data: TrainData, states: list[dict]) -> torch.nn.Module:
    model = build_model(spec.architecture, data.shape[0], data.shape[-1], spec.members)
    members = model.members if spec.members > 1 else [model]
    for net, state in zip(members, states, strict=True):
        net.load_state_dict(state)
    return model


def train_model(config: dict, task: str, model: str, trainset: str | Path | None,
                augmented: str | Path | None, out: str | Path, metrics_path: str | Path,
                curve_path: str | Path, resume: bool = False) -> dict:
    """Train (or import) model ``model`` of ``task``; write checkpoint, metrics and curve."""
    spec = find_spec(config, task, model)
    if spec.checkpoint:
        return import_model(config, spec, out, metrics_path, curve_path)
    if trainset is None:
        raise ConfigError(f"model '{model}' of task '{task}' has no checkpoint: pass "
                          f"--trainset results/train/{task}.h5 to train it")
    if spec.architecture == CLASSICAL:
        return train_classical(config, spec, trainset, augmented, out, metrics_path, curve_path)
    tcfg = spec.train
    device = resolve_device(tcfg["device"])
    precision = resolve_precision(tcfg["precision"], device)
    train_on = spec.raw.get("train_on", "all")
    data = _open_train_data(trainset, augmented, task, tcfg["epochs"], train_on)
    out, last = Path(out), Path(str(out) + ".last")
    meta = model_meta(config, spec, data.attrs, data.shape,
                      {"trainset": str(trainset), "augmented": str(augmented or "")})
    augment = _augmenter(config, data.attrs.get("normalisation"))
    inputs = input_fingerprint(trainset, augmented)
    ckpt = _resume_state(last, config, inputs) if resume else None
    states = list(ckpt["done_states"]) if ckpt else []
    records = list(ckpt["member_records"]) if ckpt else []
    t0 = time.perf_counter()
    with torch_runtime(tcfg["threads"], deterministic=device.type == "cpu"):
        loader = make_loader(data, tcfg["data"], tcfg["ram_gb"], tcfg["workers"], device)
        trainer, member = _train_members(config, spec, data, loader, device, precision, augment,
                                         ckpt, states, records, last,
                                         {"config": config, "meta": meta, "inputs": inputs})
        final = prepare_model(_assemble(spec, data, states), device)
        val_logits = score_tensor(final, data.x_val, tcfg["batch_size"], device, precision)
        seconds = time.perf_counter() - t0
        x_test, y_test, origin_test = read_test_split(trainset)
        test_logits = score_tensor(final, torch.from_numpy(x_test), tcfg["batch_size"], device,
                                   precision)
    _save_final(out, trainer, final, member, records, config, meta)
    metrics = _metrics(spec, trainer, records, data, val_logits, meta, seconds)
    metrics["test"] = group_ranking(test_logits.numpy(), y_test, origin_test)
    metrics["init"], metrics["train_on"] = records[0].get("init"), train_on
    write_json(metrics_path, metrics)
    write_curve(curve_path, [r["epochs"] for r in records], f"{task}/{model}")
    last.unlink(missing_ok=True)
    log.info("trained %s/%s (%s x %d, %d parameters): val AUROC %s on %d examples (%d "
             "augmented), %d val, in %.1f s, %.0f samples/s on %s %s -> %s", task, model,
             spec.architecture, spec.members, meta["parameters"], metrics["best_val_auroc"],
             len(data.labels), data.n_augmented, len(data.y_val), seconds,
             metrics["samples_per_s"], device, precision, out)
    return metrics


def _open_train_data(trainset: str | Path, augmented: str | Path | None, task: str,
                     epochs: int, train_on: str = "all") -> TrainData:
    """The training data, checked to be for ``task``; warns when it has no validation split."""
    data = open_data(trainset, augmented, labelled_only=train_on == "labelled")
    if data.attrs.get("task", task) != task:
        raise DataError(f"{trainset}: a training set for task '{data.attrs['task']}', not "
                        f"'{task}'; pass results/train/{task}.h5")
    if len(data.y_val) == 0:
        log.warning("%s: no validation examples (split 1); training all %d epochs without "
                    "early stopping or validation AUROC", trainset, epochs)
    return data


def _train_members(config: dict, spec: ModelSpec, data: TrainData, loader, device: torch.device,
                   precision: str, augment: Augment | None, ckpt: dict | None,
                   states: list[dict], records: list[dict], last: Path, extra: dict
                   ) -> tuple[Trainer, int]:
    """Train the members not in ``states`` yet (appended to states, records); saves ``last``
    after every epoch, with ``extra`` (config, meta, input fingerprint)."""
    tcfg = spec.train
    for member in range(len(states), spec.members):
        trainer, init = _member_trainer(config, spec, data, loader, member, device, precision)
        if ckpt is not None and ckpt["member"] == member:
            trainer.load_state_dict(ckpt)
        for _ in cli.progress(range(trainer.epoch, tcfg["epochs"]), desc=f"train {spec.name}"):
            if trainer.stopped:
                break
            rec = trainer.run_epoch(augment)
            log.info("%s/%s member %d epoch %d/%d: train loss %.4f, val loss %.4f, val "
                     "AUROC %.4f, %.0f samples/s", spec.task, spec.name, member, rec["epoch"],
                     tcfg["epochs"], rec["train_loss"], rec["val_loss"], rec["val_auroc"],
                     rec["samples_per_s"])
            save_checkpoint(last, {**trainer.state_dict(), "member": member,
                                   "done_states": states, "member_records": records, **extra})
        states.append(trainer.best_state)
        records.append(_member_record(trainer, member, init))
    return trainer, member


def _save_final(out: Path, trainer: Trainer, final: torch.nn.Module, member: int,
                records: list[dict], config: dict, meta: dict) -> None:
    """Write the final checkpoint (the assembled model); sets ``meta["parameters"]``."""
    state = trainer.state_dict()
    state["trainer_state"].pop("best_model_state")
    state["model_state"] = cpu_state(final)
    meta["parameters"] = count_parameters(final)
    save_checkpoint(out, {**state, "best_epoch": records[0]["best_epoch"], "member": member,
                          "member_records": records, "config": config, "meta": meta})


def _metrics(spec: ModelSpec, trainer: Trainer, records: list[dict], data: TrainData,
             val_logits: torch.Tensor, meta: dict, seconds: float) -> dict:
    """The metrics JSON: per-member epochs, the final model's validation scores, throughput."""
    has_val = len(data.y_val) > 0
    val_loss = float(trainer.loss(val_logits, data.y_val)) if has_val else math.nan
    val_auc = auroc(val_logits.numpy(), data.y_val.numpy()) if has_val else math.nan
    epochs = [e for r in records for e in r["epochs"]]
    train_s = sum(e["train_seconds"] for e in epochs)
    return {
        "task": spec.task, "model": spec.name, "architecture": spec.architecture,
        "members": spec.members, "parameters": meta["parameters"],
        "device": str(trainer.device), "precision": trainer.precision,
        "epochs": records[0]["epochs"], "member_records": records,
        "best_epoch": records[0]["best_epoch"], "best_val_loss": finite_or_none(val_loss),
        "best_val_auroc": finite_or_none(val_auc), "early_stopped": records[0]["early_stopped"],
        "seconds": seconds, "samples_per_s": sum(e["examples"] for e in epochs) / max(train_s,
                                                                                        1e-9),
        "n_train": data.n_original, "n_augmented": data.n_augmented, "n_val": len(data.y_val),
        "balance": trainer.balance, "pos_weight": trainer.pos_weight,
        "selected_on": trainer.selected_on, "provenance": meta["provenance"],
    }


def import_model(config: dict, spec: ModelSpec, out: str | Path, metrics_path: str | Path,
                 curve_path: str | Path) -> dict:
    """Copy ``spec.checkpoint`` to ``out`` as model ``spec.name`` of ``spec.task``; no training.

    The checkpoint must load and its architecture match the config entry; its bands, pixel
    scale, stamp size and normalisation are kept and checked against the stamps by infer.
    """
    source = Path(spec.checkpoint)
    ckpt = load_checkpoint(source)
    meta = dict(ckpt["meta"])
    if meta["architecture"] != spec.architecture:
        raise ConfigError(f"models '{spec.name}': {source} holds a '{meta['architecture']}' "
                          f"model, the entry says '{spec.architecture}'; set its architecture "
                          f"to {meta['architecture']}")
    if meta["task"] != spec.task:
        log.warning("%s was trained for task '%s'; used as model '%s' of task '%s'", source,
                    meta["task"], spec.name, spec.task)
    model = model_from_checkpoint(ckpt, source)
    sha = sha256_file(source)
    meta.update(task=spec.task, model=spec.name, members=int(meta.get("members", 1)),
                parameters=count_parameters(model), imported_from=str(source),
                imported_sha256=sha)
    save_checkpoint(out, {**ckpt, "meta": meta})
    history = (ckpt.get("trainer_state") or {}).get("history") or []
    metrics = {"task": spec.task, "model": spec.name, "architecture": spec.architecture,
               "members": meta["members"], "parameters": meta["parameters"],
               "imported_from": str(source), "imported_sha256": sha,
               "epochs": [{k: finite_or_none(v) for k, v in h.items()} for h in history],
               "provenance": provenance(config, task=spec.task, model=spec.name,
                                        checkpoint=str(source))}
    write_json(metrics_path, metrics)
    write_curve(curve_path, [metrics["epochs"]], f"{spec.task}/{spec.name} "
                f"(imported from {source.name})")
    log.info("imported %s as %s/%s (%s, %d parameters, sha256 %s) -> %s", source, spec.task,
             spec.name, spec.architecture, meta["parameters"], sha[:12], out)
    return metrics


def parser():
    """The ``skysift train`` argument parser."""
    p = cli.parser("Train one named model of one task (or import its checkpoint).")
    p.add_argument("--task", required=True, help="task name (config tasks[].name)")
    p.add_argument("--model", help="model name (config models[].name); default: the task's "
                   "first model")
    p.add_argument("--trainset", help="results/train/{task}.h5 (not needed for a model with "
                   "checkpoint:)")
    p.add_argument("--augmented", help="results/train/{task}.augmented.h5 (optional)")
    p.add_argument("--out", required=True,
                   help="checkpoint to write, results/models/{task}/{model}.pt")
    p.add_argument("--metrics", help="metrics JSON (default: <out stem>.metrics.json)")
    p.add_argument("--curve", help="loss/AUROC curve PNG (default: <out stem>.curve.png)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run from <out>.last when it exists and was written "
                        "with the same config and training files (else train from the start)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the train CLI; returns the exit code."""
    def body(args) -> int:
        config = cli.load_config(args)
        model = args.model
        if model is None:
            mine = [s.name for s in model_specs(config) if s.task == args.task]
            if not mine:
                raise ConfigError(f"--task {args.task}: no model serves it; check tasks and "
                                  "models in config")
            model = mine[0]
        out = Path(args.out)
        train_model(config, args.task, model, args.trainset, args.augmented, out,
                    args.metrics or out.with_suffix(".metrics.json"),
                    args.curve or out.with_suffix(".curve.png"), resume=args.resume)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
