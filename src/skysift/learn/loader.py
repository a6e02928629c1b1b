"""Training examples for ``skysift.learn.train``: from RAM, or streamed from HDF5 by DataLoader
workers.

A training run reads the train split (0) of ``results/train/{task}.h5`` plus the augmented
copies, and the validation split (1). Every epoch is planned in the training process from
one ``torch.Generator`` (which examples, in which order, in which batches), so the batches
depend on the seed alone, never on the number of workers:

- ``ram``: the images are read once; an epoch is a permutation of all examples.
- ``stream``: HDF5 is chunked along objects, so the epoch permutes whole chunks, takes
  :data:`GROUP_CHUNKS` of them at a time and permutes the examples inside that group;
  each DataLoader worker (persistent across epochs) opens its own file handles and reads
  one group (whole chunks, each decompressed once) while the training process steps
  through the previous one.

Class balance ``sample`` repeats the positives (or negatives) of every epoch to balance the
classes; ``weight`` keeps each example once (the loss weights the positives instead).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from skysift.errors import DataError
from skysift.io import open_h5, read_attr_json
from skysift.sim.trainfile import LABELLED

log = logging.getLogger(__name__)

#: HDF5 chunks read together by one worker and shuffled together when streaming.
GROUP_CHUNKS = 8
TRAIN, VAL, TEST = 0, 1, 2


@dataclass
class Source:
    """The selected rows of one HDF5 file: ``rows`` (m,) sorted, ``labels`` (m,) float32."""

    path: Path
    rows: np.ndarray
    labels: np.ndarray
    chunk: int = 256
    #: origin of each row (m,) uint8 (docs/formats.md); None: every row labelled
    origin: np.ndarray | None = None


@dataclass
class TrainData:
    """Training examples (as sources) and validation examples (in RAM).

    ``labels`` (n,) float32 are the training labels of every source, concatenated;
    ``shape`` is ``(band, s, s)``.
    """

    sources: list[Source]
    x_val: torch.Tensor
    y_val: torch.Tensor
    shape: tuple[int, int, int]
    attrs: dict
    n_original: int
    n_augmented: int
    #: Origin (docs/formats.md) of every validation row, (n_val,) uint8; None: all labelled.
    val_origin: np.ndarray | None = None
    labels: np.ndarray = field(init=False)
    #: (n,) bool: which training examples are real labelled objects (or copies of them)
    labelled: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.labels = (np.concatenate([s.labels for s in self.sources]).astype(np.float32)
                       if self.sources else np.zeros(0, np.float32))
        self.labelled = (np.concatenate([np.ones(len(s.labels), bool) if s.origin is None
                                         else s.origin == LABELLED for s in self.sources])
                         if self.sources else np.zeros(0, bool))
        if self.val_origin is None:
            self.val_origin = np.full(len(self.y_val), LABELLED, np.uint8)

    @property
    def nbytes(self) -> int:
        """Bytes of the training images as float32."""
        return int(len(self.labels) * np.prod(self.shape) * 4)


def _check_images(path: Path, images, label) -> None:
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise DataError(f"{path}: images have shape {images.shape}, expected (n, band, s, s); "
                        "delete it and re-run its rule")
    if not np.isin(label, (0, 1)).all():
        raise DataError(f"{path}: labels must be 0 or 1; check the task's label column")


def _read_rows(ds, rows: np.ndarray, chunk: int) -> np.ndarray:
    """``ds[rows]`` for sorted ``rows``, reading whole chunk-aligned slabs (each chunk once)."""
    out = np.empty((len(rows),) + ds.shape[1:], dtype=np.float32)
    if not len(rows):
        return out
    blocks = rows // chunk
    starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]])
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else len(rows)
        lo = blocks[start] * chunk
        slab = ds[lo:min(lo + chunk, ds.shape[0])]
        out[start:stop] = slab[rows[start:stop] - lo]
    return out


def _origins(fh, n: int) -> np.ndarray:
    """The ``origin`` of every row (n,) uint8 (a set without it: labelled objects only)."""
    return fh["origin"][()].astype(np.uint8) if "origin" in fh else np.full(n, LABELLED, np.uint8)


def _finite(path: Path, x: np.ndarray) -> np.ndarray:
    if not np.isfinite(x).all():
        raise DataError(f"{path}: images contain NaN or inf; re-run preprocess and its rule")
    return x


def open_data(trainset: str | Path, augmented: str | Path | None = None,
              labelled_only: bool = False) -> TrainData:
    """Index the train (split 0) and validation (split 1) examples plus augmented copies.

    Reads labels, splits and the validation images; training images stay on disk until a
    loader reads them. The test split (2) is counted and left out. Augmented copies must be
    copies of train-split objects (checked by ``index``) with the same stamp shape.
    """
    trainset = Path(trainset)
    with open_h5(trainset, required=("images", "label", "split", "index")) as fh:
        images = fh["images"]
        label, split, index = fh["label"][()], fh["split"][()], fh["index"][()]
        origin = _origins(fh, len(label))
        _check_images(trainset, images, label)
        attrs = {key: read_attr_json(fh, key) for key in fh.attrs}
        chunk = images.chunks[0] if images.chunks else max(len(label), 1)
        val_rows = np.flatnonzero(split == VAL)
        x_val = _finite(trainset, _read_rows(images, val_rows, chunk))
        shape = tuple(images.shape[1:])
    train_rows = np.flatnonzero(split == TRAIN)
    log.info("%s: %d train, %d val, %d test (unused) examples", trainset, train_rows.size,
             val_rows.size, int((split == 2).sum()))
    sources = [Source(trainset, train_rows, label[train_rows].astype(np.float32), chunk,
                      origin[train_rows])]
    n_aug = 0
    if augmented is not None:
        augmented = Path(augmented)
        with open_h5(augmented, required=("images", "label", "index")) as fh:
            aug_label, aug_index = fh["label"][()], fh["index"][()]
            _check_images(augmented, fh["images"], aug_label)
            if tuple(fh["images"].shape[1:]) != shape:
                raise DataError(f"{augmented}: stamps {fh['images'].shape[1:]} differ from "
                                f"{trainset} {shape}; re-run the augment rule")
            aug_chunk = fh["images"].chunks[0] if fh["images"].chunks else max(len(aug_label), 1)
        if not np.isin(aug_index, index[train_rows]).all():
            raise DataError(f"{augmented}: holds copies of objects outside the train split of "
                            f"{trainset} (stale file?); re-run the augment rule")
        copies, rest = divmod(len(aug_label), max(train_rows.size, 1))  # copy-major rows
        aug_origin = None if rest else np.tile(origin[train_rows], copies)
        sources.append(Source(augmented, np.arange(len(aug_label)),
                              aug_label.astype(np.float32), aug_chunk, aug_origin))
        n_aug = len(aug_label)
    if labelled_only:
        sources = _labelled_rows(sources, trainset)
    return TrainData(sources=sources, x_val=torch.from_numpy(x_val),
                     y_val=torch.from_numpy(label[val_rows].astype(np.float32)),
                     shape=shape, attrs=attrs, n_original=int(train_rows.size),
                     n_augmented=n_aug, val_origin=origin[val_rows])


def _labelled_rows(sources: list[Source], trainset: Path) -> list[Source]:
    """The sources restricted to real labelled rows (``train_on: labelled``)."""
    out = []
    for s in sources:
        keep = np.ones(len(s.rows), bool) if s.origin is None else s.origin == LABELLED
        out.append(Source(s.path, s.rows[keep], s.labels[keep], s.chunk,
                          None if s.origin is None else s.origin[keep]))
    n, labels = sum(len(s.rows) for s in out), np.concatenate([s.labels for s in out])
    if not 0 < labels.sum() < n:
        raise DataError(f"{trainset}: train_on labelled keeps {n} real labelled examples, "
                        f"{int(labels.sum())} positive; a classifier needs both classes")
    log.info("train_on labelled: %d real labelled training examples, %d positive", n,
             int(labels.sum()))
    return out


def read_test_split(trainset: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test split (2) of a training set: images (m, band, s, s) float32, labels (m,)
    and origins (m,) uint8 — the simulated test rows a model is measured on besides the
    catalog's real labelled objects (:mod:`skysift.learn.selection`)."""
    trainset = Path(trainset)
    with open_h5(trainset, required=("images", "label", "split")) as fh:
        split, label = fh["split"][()], fh["label"][()]
        origin = _origins(fh, len(label))
        rows = np.flatnonzero(split == TEST)
        chunk = fh["images"].chunks[0] if fh["images"].chunks else max(len(label), 1)
        x = _finite(trainset, _read_rows(fh["images"], rows, chunk))
    return x, label[rows].astype(np.float32), origin[rows]


def epoch_examples(labels: np.ndarray, balance: str, generator: torch.Generator,
                   labelled: np.ndarray | None = None, labelled_share: float | None = None
                   ) -> np.ndarray:
    """The example numbers (into ``labels``) of one epoch, before shuffling.

    ``weight``: every example once. ``sample``: every example once, plus the minority class
    repeated (whole repeats, then a random subset) until both classes count alike. Then,
    with ``labelled_share`` and a set that mixes real labelled examples (``labelled`` (n,)
    bool) with others, the labelled ones are repeated the same way until they make that
    share of the epoch, so a few hundred labels are not drowned by thousands of
    simulations.
    """
    every = np.arange(len(labels))
    if balance == "sample":
        pos, neg = every[labels == 1], every[labels == 0]
        small, big = (pos, neg) if len(pos) < len(neg) else (neg, pos)
        if len(small):
            every = np.concatenate([every, _repeats(small, len(big) - len(small), generator)])
    if labelled_share and labelled is not None:
        lab = every[labelled[every]]
        n_other = len(every) - len(lab)
        target = int(round(labelled_share / (1.0 - labelled_share) * n_other))
        if len(lab) and n_other and target > len(lab):
            every = np.concatenate([every, _repeats(lab, target - len(lab), generator)])
    return every


def _repeats(rows: np.ndarray, extra: int, generator: torch.Generator) -> np.ndarray:
    """``extra`` more of ``rows``: whole repeats, then a random subset in row order."""
    reps, rest = divmod(extra, len(rows))
    pick = torch.randperm(len(rows), generator=generator)[:rest].numpy()
    return np.concatenate([np.tile(rows, reps), rows[np.sort(pick)]])


class RamLoader:
    """Every training image in memory; an epoch is a random permutation.

    With a CUDA ``device`` and room on it (the images take at most :data:`GPU_FRACTION` of
    its free memory), the images live on the GPU and batches are gathered there: no host
    gather or host-to-device copy per step, which otherwise bounds small networks. The
    order of the examples is planned on the CPU either way, so batches do not depend on
    where the images live.
    """

    def __init__(self, data: TrainData, device: torch.device | None = None) -> None:
        parts = []
        for src in data.sources:
            with open_h5(src.path) as fh:
                parts.append(_finite(src.path, _read_rows(fh["images"], src.rows, src.chunk)))
        self.x = torch.from_numpy(np.concatenate(parts) if parts else np.zeros((0,) + data.shape,
                                                                                np.float32))
        self.y = torch.from_numpy(data.labels)
        self.device = torch.device("cpu")
        if device is not None and device.type == "cuda" and _fits_on(device, self.x):
            self.x = self.x.to(device, memory_format=torch.channels_last)
            self.y = self.y.to(device)
            self.device = device
            log.info("training images held on %s (%.2f GB)", device, self.x.nbytes / 1e9)

    def epoch(self, examples: np.ndarray, batch_size: int, generator: torch.Generator
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``(x (b, band, s, s), y (b,))`` of a permutation of ``examples``."""
        order = torch.from_numpy(examples)[torch.randperm(len(examples), generator=generator)]
        order = order.to(self.device)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield self.x[idx], self.y[idx]


#: Largest share of a GPU's free memory the training images may take to be held there.
GPU_FRACTION = 0.25


def _fits_on(device: torch.device, x: torch.Tensor) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return x.nbytes <= GPU_FRACTION * free


class _Groups(torch.utils.data.Dataset):
    """Reads a group, ``[(source number, positions), ...]``, in whichever process asks."""

    def __init__(self, sources: Sequence[Source]):
        self.sources = list(sources)
        self._files: dict[int, object] = {}

    def _dataset(self, s: int):
        if s not in self._files:  # opened in the worker that reads it: one handle per process
            self._files[s] = open_h5(self.sources[s].path)
        return self._files[s]["images"]

    def __getitem__(self, group: list[tuple[int, np.ndarray]]) -> torch.Tensor:
        parts = []
        for s, positions in group:
            src = self.sources[s]
            rows = src.rows[positions]
            order = np.argsort(rows, kind="stable")
            block = _read_rows(self._dataset(s), rows[order], src.chunk)
            out = np.empty_like(block)
            out[order] = block
            parts.append(_finite(src.path, out))
        return torch.from_numpy(np.concatenate(parts))


class _EpochGroups(torch.utils.data.Sampler):
    """Yields the groups of the current epoch (set before each pass) to the DataLoader, so
    persistent workers serve every epoch."""

    def __init__(self) -> None:
        self.groups: list = []

    def __iter__(self):
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


class StreamLoader:
    """Training images streamed from HDF5 by ``workers`` DataLoader processes, group by group."""

    def __init__(self, data: TrainData, workers: int) -> None:
        self.data, self.workers = data, workers
        self.offsets = np.cumsum([0] + [len(s.rows) for s in data.sources])
        self.sampler = _EpochGroups()
        self.loader = torch.utils.data.DataLoader(
            _Groups(data.sources), batch_size=None, sampler=self.sampler,
            num_workers=workers, worker_init_fn=_worker_init if workers else None,
            prefetch_factor=2 if workers else None, persistent_workers=workers > 0)

    def plan(self, examples: np.ndarray, generator: torch.Generator
             ) -> list[list[tuple[int, np.ndarray]]]:
        """Groups of examples: chunks permuted, GROUP_CHUNKS per group, examples permuted within.

        Returns, per group, ``[(source number, positions within that source), ...]`` in the
        order the examples are used (positions of one source may repeat under balancing).
        """
        src = np.searchsorted(self.offsets, examples, side="right") - 1
        pos = examples - self.offsets[src]
        chunk = np.empty(len(examples), dtype=np.int64)
        for s, source in enumerate(self.data.sources):
            mine = src == s
            chunk[mine] = source.rows[pos[mine]] // source.chunk
        blocks, block_of = np.unique(src.astype(np.int64) * (1 << 40) + chunk,
                                     return_inverse=True)
        rank = np.empty(len(blocks), dtype=np.int64)
        rank[torch.randperm(len(blocks), generator=generator).numpy()] = np.arange(len(blocks))
        group_of = rank[block_of] // GROUP_CHUNKS
        by_group = np.argsort(group_of, kind="stable")
        n_groups = -(-len(blocks) // GROUP_CHUNKS)
        edges = np.searchsorted(group_of[by_group], np.arange(n_groups + 1))
        groups = []
        for g in range(n_groups):
            members = by_group[edges[g]:edges[g + 1]]
            members = members[torch.randperm(len(members), generator=generator).numpy()]
            # consecutive runs of one source keep the group's order when reassembled
            runs = np.flatnonzero(np.r_[True, src[members][1:] != src[members][:-1]])
            bounds = np.r_[runs, len(members)]
            groups.append([(int(src[members[a]]), pos[members[a:b]])
                           for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
        return groups

    def epoch(self, examples: np.ndarray, batch_size: int, generator: torch.Generator
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``(x, y)`` of the planned groups, cut across group boundaries."""
        groups = self.plan(examples, generator)
        labels = [np.concatenate([self.data.sources[s].labels[p] for s, p in g]) for g in groups]
        self.sampler.groups = groups
        carry_x, carry_y = [], []
        n_carry = 0
        for x, y in zip(self.loader, labels, strict=True):
            carry_x.append(x)
            carry_y.append(torch.from_numpy(y))
            n_carry += len(y)
            if n_carry < batch_size:
                continue
            xs, ys = torch.cat(carry_x), torch.cat(carry_y)
            cut = (len(ys) // batch_size) * batch_size
            for start in range(0, cut, batch_size):
                yield xs[start:start + batch_size], ys[start:start + batch_size]
            carry_x, carry_y, n_carry = [xs[cut:]], [ys[cut:]], len(ys) - cut
        if n_carry:
            yield torch.cat(carry_x), torch.cat(carry_y)


def make_loader(data: TrainData, mode: str, ram_gb: float, workers: int,
                device: torch.device | None = None) -> RamLoader | StreamLoader:
    """A :class:`RamLoader` (on ``device`` when it is a GPU with room) or
    :class:`StreamLoader` for ``train.data`` (auto | ram | stream)."""
    if mode == "auto":
        mode = "ram" if data.nbytes <= ram_gb * 1e9 else "stream"
    log.info("training examples: %d (%.2f GB as float32) %s", len(data.labels),
             data.nbytes / 1e9, "in memory" if mode == "ram" else
             f"streamed from HDF5 by {workers} workers")
    return RamLoader(data, device) if mode == "ram" else StreamLoader(data, workers)
