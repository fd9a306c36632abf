"""One trainer for every detector (a model library: torch, numpy and tqdm only; never ``benchmarks``).

A runner hands in the data; the trainer owns the loop::

    from detectors.train import EpochBatchSampler, Trainer, TrainConfig, seed_everything

    seed_everything(cfg.seed)                                   # same initial weights on every rank
    model = create_detector("segformer", variant="tiny")
    sampler = EpochBatchSampler(len(ds), batch_size=16, seed=cfg.seed, keyed=True)   # yields [(epoch, i), ...]
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=pad_collate, generator=torch.Generator())
    trainer = Trainer(model, TrainConfig(epochs=10, lr=1e-4), out_dir, meta={"fingerprint": "..."})
    result = trainer.fit(loader, validate=lambda m: {"f1_per_image": ...})   # resumes from out_dir/last.pt

What it does: AdamW (no weight decay on biases and norms) with a per-step linear-warmup + cosine schedule;
bf16 autocast on CUDA only (``amp``), gradient accumulation, channels_last on CUDA, optional
``torch.compile``; DistributedDataParallel when ``torch.distributed`` is initialized (torchrun); the loss
is always ``module.loss`` of the unwrapped detector on the wrapped model's outputs.

Files in ``out_dir`` (rank 0 writes): ``last.pt`` (every ``checkpoint_every`` optimizer steps and at each
epoch end, written to a temporary file then renamed, so a kill never leaves a torn file), ``best.pt``
(weights chosen by the ``validate`` callback's ``select_metric`` on a *validation* set, or the last
weights when there is none), ``log.csv`` (one row per optimizer step: loss parts, lr, grad norm, skipped,
seconds), ``val.csv`` (one row per validation) and ``tb/`` when TensorBoard is installed.

Exact resume: ``last.pt`` holds the model, optimizer, scheduler, grad scaler, step, epoch, the number of
batches already done in the epoch, the best-validation record, the non-finite counters, and the RNG states
(python, numpy, torch, CUDA) of every rank. On resume the trainer asks the data for the same epoch again
and skips the batches already done: through ``set_epoch`` / ``set_start_batch`` of the loader's (batch)
sampler when it has them (:class:`EpochBatchSampler`; nothing is decoded for the skipped part), else by
reading and dropping them. The data order must therefore depend only on (seed, epoch), which
:class:`EpochBatchSampler` guarantees. RNG states are restored where they were saved relative to the
creation of the epoch's iterator, so a run killed anywhere and resumed ends with bit-identical weights
(as far as the kernels are deterministic: on CUDA some are not, and two uninterrupted runs differ as much).

Non-finite losses: a window (one optimizer step) whose loss or gradient norm is NaN/inf is skipped (no
update; the schedule still advances so step and data position stay in lockstep), counted, and logged;
``max_consecutive_nonfinite`` in a row stop the run with :class:`NonFiniteLossError`. (With ``amp="fp16"``
gradient overflow is the grad scaler's business and only a non-finite loss counts. A forward pass that
produced NaN activations has already updated BatchNorm running statistics; skipping cannot undo that.)
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from detectors.sampling import EpochBatchSampler, dist_info
from detectors.train_state import (atomic_save, load_checkpoint, load_weights, rng_state, seed_everything,
                                   set_rng_state)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
RANK_SEED_OFFSET = 1000  # rank r trains with seed + r * offset (dropout etc. differ per rank; weights do not)
Validate = Callable[[nn.Module], Mapping[str, float]]


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimizer steps had a NaN/inf loss or gradient."""


INERT = {"fingerprint": False}  # field metadata: changes how a run goes, not what it computes (left out of run keys)


@dataclass
class TrainConfig:
    """Trainer settings with their defaults (configs/train/default.yaml selects; this defines)."""

    epochs: int = 20
    max_steps: int | None = None          # stop after this many optimizer steps (also sets the schedule length)
    lr: float = 1e-4
    weight_decay: float = 0.05            # AdamW; biases and norm parameters get none
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int | None = None       # None: warmup_ratio of the total steps
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.01            # the cosine ends at lr * min_lr_ratio
    accumulation: int = 1                 # batches per optimizer step
    grad_clip: float | None = 1.0         # max global grad norm; None = no clipping
    amp: str = "auto"                     # auto (bf16 on CUDA, off elsewhere) | bf16 | fp16 | off
    channels_last: bool = True            # CUDA only
    compile: bool = field(default=False, metadata=INERT)  # torch.compile the model
    seed: int = 0
    checkpoint_every: int = field(default=500, metadata=INERT)  # optimizer steps between mid-epoch checkpoints;
                                                                # 0 = epoch ends only
    val_every: int = 1                    # epochs between validations (the last epoch is always validated)
    select_metric: str = "f1_per_image"   # key of the validate callback's result that picks best.pt
    select_mode: str = "max"              # max | min
    max_consecutive_nonfinite: int = 20   # this many skipped steps in a row stop the run
    find_unused_parameters: bool = False  # DDP: for models whose forward leaves some parameters unused
    progress: bool = field(default=True, metadata=INERT)  # tqdm bars (rank 0 only)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # YAML gives lists
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1 or null"),
            (self.lr > 0, "lr must be > 0"),
            (self.accumulation >= 1, "accumulation must be >= 1"),
            (self.amp in ("auto", "bf16", "fp16", "off"), f"amp must be auto, bf16, fp16 or off, got {self.amp!r}"),
            (self.select_mode in ("max", "min"), f"select_mode must be max or min, got {self.select_mode!r}"),
            (self.max_consecutive_nonfinite >= 1, "max_consecutive_nonfinite must be >= 1"),
            (0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio must be in [0, 1]"),
            (0.0 <= self.warmup_ratio < 1.0, "warmup_ratio must be in [0, 1)"),
            (self.checkpoint_every >= 0 and self.val_every >= 1, "checkpoint_every must be >= 0, val_every >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"train config: {message}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"train config: unknown keys {unknown}; the trainer knows {sorted(known)}")
        return cls(**values)


# ---------------------------------------------------------------------------------------------- pieces


class WarmupCosine:
    """LR multiplier for optimizer step s: linear warmup ``(s+1)/warmup``, then a cosine from 1 down to
    ``min_ratio`` at ``total``. A callable object so LambdaLR's state_dict carries it."""

    def __init__(self, warmup: int, total: int, min_ratio: float = 0.0):
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices and kernels, none on biases and norm scales (ndim <= 1)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class CsvLog:
    """Append-only CSV; on resume rows after the checkpoint's step are dropped (they get redone)."""

    def __init__(self, path: Path, keep_through_step: int | None):
        self.path, self.columns, self._fh, self._writer = path, None, None, None
        if keep_through_step is None or not path.is_file():
            path.unlink(missing_ok=True)
            return
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        kept = rows[:1]
        for row in rows[1:]:  # rows are in step order; stop at the first redone or torn row
            if len(row) != len(rows[0]) or not row[0].isdigit() or int(row[0]) > keep_through_step:
                break
            kept.append(row)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(kept)
        self.columns = rows[0] if rows else None

    def write(self, row: Mapping[str, Any]) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", newline="", encoding="utf-8")
            if self.columns is None:
                self.columns = list(row)
                csv.writer(self._fh).writerow(self.columns)
            self._writer = csv.DictWriter(self._fh, self.columns, extrasaction="ignore")
        self._writer.writerow({k: _fmt(v) for k, v in row.items()})
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns (and the runner writes to summary.json)."""

    steps: int
    epochs: int
    nonfinite_steps: int
    best: dict[str, Any] | None
    val_history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from_step: int | None = None
    last_checkpoint: str = ""
    best_checkpoint: str = ""


@dataclass
class _Run:
    """Where a run is; saved in last.pt beside the model and optimizer states."""

    step: int = 0                # optimizer steps done (skipped non-finite steps included)
    epoch: int = 0               # epochs done
    position: int = 0            # batches done in the current epoch
    best: dict[str, Any] | None = None
    val_history: list[dict[str, Any]] = field(default_factory=list)
    nonfinite: dict[str, int] = field(default_factory=lambda: {"total": 0, "consecutive": 0})
    elapsed: float = 0.0         # seconds of training before this process


class _Logs:
    """log.csv (per step), val.csv (per validation) and TensorBoard when installed; rank 0 only."""

    def __init__(self, folder: Path, resumed_step: int | None):
        self.train = CsvLog(folder / "log.csv", resumed_step)
        self.valid = CsvLog(folder / "val.csv", resumed_step)
        self.tb = _tensorboard(folder / "tb")

    def step(self, row: dict[str, Any]) -> None:
        self.train.write(row)
        if self.tb is not None:
            for key in ("loss", "lr", "grad_norm"):
                self.tb.add_scalar(f"train/{key}", row[key], row["step"])

    def val(self, row: dict[str, Any]) -> None:
        self.valid.write(row)
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch", "best"):
                    self.tb.add_scalar(f"val/{key}", value, row["step"])

    def close(self) -> None:
        self.train.close()
        self.valid.close()
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Trains one detector. `model` is the bare Detector (``loss``, ``normalize``); the trainer moves it to
    the device and wraps it (DDP, compile) itself. `meta` is stored in every checkpoint; its ``fingerprint``
    (when given) must match on resume, so a changed config never continues an old run by accident."""

    def __init__(self, model: nn.Module, config: TrainConfig, out_dir: str | Path, *,
                 device: str | torch.device | None = None, meta: Mapping[str, Any] | None = None):
        self.cfg = config
        self.out_dir = Path(out_dir)
        self.meta = dict(meta or {})
        self.rank, self.world_size = dist_info()
        self.distributed = self.world_size > 1
        self.is_main = self.rank == 0
        self.device = torch.device(device) if device is not None else _default_device()
        cuda = self.device.type == "cuda"
        amp = {"auto": "bf16" if cuda else "off"}.get(config.amp, config.amp)
        if amp != "off" and not cuda:
            log.warning("amp=%s asked for on %s; autocast runs on CUDA only, training in float32", amp, self.device)
            amp = "off"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.channels_last = config.channels_last and cuda
        self.module = model.to(self.device)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(param_groups(self.module, config.weight_decay), lr=config.lr,
                                           betas=config.betas, fused=True if cuda else None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.model: nn.Module = self.module
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.module, device_ids=[self.device.index] if cuda else None,
                                                 find_unused_parameters=config.find_unused_parameters,
                                                 gradient_as_bucket_view=True)  # no grad copies into buckets
        if config.compile:
            self.model = torch.compile(self.model)
        self.last_path, self.best_path = self.out_dir / "last.pt", self.out_dir / "best.pt"

    # ------------------------------------------------------------------ data

    @staticmethod
    def _samplers(train: Any) -> list[Any]:
        return [s for s in (getattr(train, "batch_sampler", None), getattr(train, "sampler", None)) if s is not None]

    def _epoch_iter(self, train: Any, epoch: int, skip: int) -> Iterator[dict[str, Any]]:
        if callable(train) and not hasattr(train, "__iter__"):
            return iter(train(epoch, skip))
        samplers = self._samplers(train)
        for s in samplers:
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)
        starter = next((s for s in samplers if hasattr(s, "set_start_batch")), None)
        if starter is not None:
            starter.set_start_batch(skip)
            return iter(train)
        if skip:
            log.info("resuming: reading and dropping the %d batches already done in epoch %d", skip, epoch + 1)
        return islice(iter(train), skip, None)

    # ------------------------------------------------------------------ checkpoints

    def _save_last(self, run: _Run, batches: int) -> None:
        """Write last.pt (rank 0); every rank joins the gather of RNG states."""
        run.elapsed = self._elapsed()
        rng = rng_state()
        states: list[Any] = [rng]
        if self.distributed:
            states = [None] * self.world_size
            dist.all_gather_object(states, rng)
        if self.is_main:
            atomic_save({"format": CHECKPOINT_FORMAT, "model": self.module.state_dict(),
                         "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                         "scaler": self.scaler.state_dict(), **asdict(run), "batches_per_epoch": batches,
                         "world_size": self.world_size, "rng": states, "meta": self.meta, "config": asdict(self.cfg)},
                        self.last_path)

    def _resume(self, batches: int) -> dict[str, Any] | None:
        if not self.last_path.is_file():
            return None
        ckpt = load_checkpoint(self.last_path)
        want, have = self.meta.get("fingerprint"), ckpt.get("meta", {}).get("fingerprint")
        if want is not None and want != have:
            raise ValueError(f"{self.last_path}: written by a run with another configuration (fingerprint {have}, "
                             f"now {want}); delete the folder or train under another name to start afresh")
        if ckpt["world_size"] != self.world_size:
            raise ValueError(f"{self.last_path}: saved by {ckpt['world_size']} process(es), resumed by "
                             f"{self.world_size}; resume with the same number of processes for an exact resume")
        if ckpt["batches_per_epoch"] != batches:
            raise ValueError(f"{self.last_path}: the run had {ckpt['batches_per_epoch']} batches per epoch, the data "
                             f"now gives {batches}; the training list or batch size changed")
        self.module.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        return ckpt

    # ------------------------------------------------------------------ steps

    def _to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _micro_step(self, batch: dict[str, Any], scale: float, sync: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        x = self.module.normalize(batch["image"])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        no_sync = self.model.no_sync if self.distributed and not sync and hasattr(self.model, "no_sync") else None
        with no_sync() if no_sync else contextlib.nullcontext():
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
                out = self.model(x)
                loss, parts = self.module.loss(out, batch)
            self.scaler.scale(loss * scale if scale != 1.0 else loss).backward()
        return loss.detach().float(), parts

    def _optimizer_step(self, loss: torch.Tensor, parts: list[Any]) -> tuple[bool, list[float]]:
        """Clip, check and step. Returns (skipped, [loss, grad norm, *parts] as floats).

        One host sync per step, before the update is queued, so the device runs the optimizer while the host
        logs and starts the next batch."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.cfg.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip, foreach=True)
        else:
            norm = torch.nn.utils.get_total_norm(grads, foreach=True) if grads else torch.zeros((), device=self.device)
        bad_loss = ~torch.isfinite(loss)
        # with fp16 the grad scaler owns overflowing gradients (it skips and lowers the scale)
        bad_grad = torch.zeros_like(bad_loss) if self.scaler.is_enabled() else ~torch.isfinite(norm.to(loss.device))
        flags = torch.stack([bad_loss, bad_grad]).float()
        if self.distributed:  # every rank must agree, or their weights would drift apart
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        values = torch.stack([*flags, loss.float(), norm.float().to(loss.device),
                              *[torch.as_tensor(v, dtype=torch.float32, device=loss.device) for v in parts]]).tolist()
        skipped = bool(values[0] or values[1])
        if not skipped:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped first step makes torch warn about the call order; harmless
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        return skipped, values[2:]

    def _validate(self, validate: Validate) -> dict[str, float]:
        self.module.eval()
        try:
            with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                                                 enabled=self.amp_dtype is not None):
                metrics = {k: float(v) for k, v in validate(self.module).items()}
        finally:
            self.module.train()
        if self.cfg.select_metric not in metrics:
            raise ValueError(f"validation returned {sorted(metrics)}; train.select_metric={self.cfg.select_metric!r} "
                           "is not among them")
        return metrics

    def _better(self, value: float, best: dict[str, Any] | None) -> bool:
        if math.isnan(value):
            return False
        if best is None or math.isnan(best["value"]):
            return True
        return value > best["value"] if self.cfg.select_mode == "max" else value < best["value"]

    # ------------------------------------------------------------------ loop

    def fit(self, train: Iterable[dict[str, Any]] | Callable[[int, int], Iterable[dict[str, Any]]], *,
            validate: Validate | None = None, resume: bool = True, batches_per_epoch: int | None = None,
            on_batch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
        """Train for ``epochs`` (or ``max_steps``) over `train`, resuming from ``out_dir/last.pt`` if present.

        `train`: a DataLoader (or any re-iterable with ``len``) giving the same batches per epoch, in an order
        that depends only on (seed, epoch), or a callable ``(epoch, skip) -> iterable`` (then pass
        `batches_per_epoch`). A batch without ``"image"`` (every item skipped by the loader) adds nothing.
        `validate(module) -> {metric: value}` runs on every rank in eval mode under no_grad on a validation
        set; its ``select_metric`` picks ``best.pt``. `on_batch(batch)` sees each batch first (e.g. to
        count the loader's skipped items).
        """
        cfg = self.cfg
        batches = int(batches_per_epoch if batches_per_epoch is not None else len(train))  # type: ignore[arg-type]
        if batches < 1:
            raise ValueError("the training data gives no batches; is the training list empty?")
        total = cfg.max_steps or cfg.epochs * math.ceil(batches / cfg.accumulation)
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_ratio * total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, WarmupCosine(warmup, total, cfg.min_lr_ratio))
        run, ckpt = _Run(), self._resume(batches) if resume else None
        pending_rng = None
        if ckpt is not None:
            run = _Run(**{k: ckpt[k] for k in _Run.__dataclass_fields__})
            pending_rng = ckpt["rng"][self.rank]
            log.info("resumed %s at step %d (epoch %d, batch %d of %d)", self.last_path, run.step, run.epoch + 1,
                     run.position, batches)
        else:
            seed_everything(cfg.seed + RANK_SEED_OFFSET * self.rank)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._logs = _Logs(self.out_dir, run.step if ckpt else None) if self.is_main else None
        self._t0, self._elapsed0, self._last_good = time.perf_counter(), run.elapsed, None
        self.module.train()
        from tqdm import tqdm

        try:
            while run.epoch < cfg.epochs and run.step < total:
                if pending_rng is not None and run.position == 0:  # saved before this epoch's iterator was made
                    set_rng_state(pending_rng)
                    pending_rng = None
                data = self._epoch_iter(train, run.epoch, run.position)
                if pending_rng is not None:  # saved mid-epoch, after the iterator was made
                    set_rng_state(pending_rng)
                    pending_rng = None
                bar = tqdm(total=batches, initial=run.position, desc=f"epoch {run.epoch + 1}/{cfg.epochs}",
                           unit="batch", leave=False, disable=not (self.is_main and cfg.progress), dynamic_ncols=True)
                self._t_step = time.perf_counter()
                while run.position < batches and run.step < total:
                    size = min(cfg.accumulation, batches - run.position)
                    loss = self._window(data, run, size, batches, on_batch)
                    bar.update(size)
                    if run.step % 10 == 0 or run.position == batches:
                        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                    if cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0 and run.position < batches \
                            and run.step < total:
                        self._save_last(run, batches)
                bar.close()
                done = run.step >= total
                run.epoch, run.position = run.epoch + 1, 0
                if validate is not None and (run.epoch % cfg.val_every == 0 or run.epoch == cfg.epochs or done):
                    self._validate_and_select(validate, run)
                self._save_last(run, batches)
                if done:
                    break
            if self.is_main and run.best is None:  # no validation (or only NaN): the last weights are the choice
                atomic_save({"model": self.module.state_dict(), "epoch": run.epoch, "step": run.step, "metrics": {},
                             "selected_by": "last (no validation metric)", "meta": self.meta}, self.best_path)
        finally:
            if self._logs is not None:
                self._logs.close()
        return TrainResult(steps=run.step, epochs=run.epoch, nonfinite_steps=run.nonfinite["total"], best=run.best,
                           val_history=run.val_history, seconds=round(self._elapsed(), 3),
                           resumed_from_step=ckpt["step"] if ckpt else None, last_checkpoint=str(self.last_path),
                           best_checkpoint=str(self.best_path))

    def _elapsed(self) -> float:
        return self._elapsed0 + time.perf_counter() - self._t0

    def _window(self, data: Iterator[dict[str, Any]], run: _Run, size: int, batches: int,
                on_batch: Callable[[dict[str, Any]], None] | None) -> float:
        """One optimizer step over `size` batches (accumulated); logs it and returns its loss."""
        loss_sum = torch.zeros((), device=self.device)
        part_sums: dict[str, Any] = {}
        ids: list[Any] = []
        for k in range(size):
            try:
                batch = next(data)
            except StopIteration:
                raise RuntimeError(f"the training data ended after {run.position + k} of {batches} batches in epoch "
                                   f"{run.epoch + 1}; it must give len() batches every epoch") from None
            if on_batch is not None:
                on_batch(batch)
            weight = 1.0 / size
            if "image" not in batch:  # every item of it was skipped by the loader
                if not self.distributed:
                    continue
                if self._last_good is None:
                    raise RuntimeError("the first batch on this rank was empty (all items skipped); with several "
                                       "processes each rank must compute a gradient")
                batch, weight = self._last_good, 0.0  # a zero gradient keeps DDP's all-reduce in step
            else:
                batch = self._last_good = self._to_device(batch)
                ids += list(batch.get("id", []))[:4]
            loss, parts = self._micro_step(batch, weight, sync=k == size - 1)
            if weight:
                loss_sum = loss_sum + loss * weight
                for name, value in parts.items():
                    part_sums[name] = part_sums.get(name, 0.0) + _detach(value) * weight
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
        skipped, values = self._optimizer_step(loss_sum, list(part_sums.values()))
        run.position += size
        run.step += 1
        bad = run.nonfinite
        if skipped:
            bad["total"] += 1
            bad["consecutive"] += 1
            log.warning("step %d (epoch %d, batch %d): non-finite loss %s / grad norm %s; update skipped (%d in a row, "
                        "%d in all)", run.step, run.epoch + 1, run.position, values[0], values[1], bad["consecutive"],
                        bad["total"])
            if bad["consecutive"] >= self.cfg.max_consecutive_nonfinite:
                raise NonFiniteLossError(
                    f"{bad['consecutive']} consecutive optimizer steps had a non-finite loss or gradient (last: step "
                    f"{run.step}, epoch {run.epoch + 1}, batch {run.position}, items {ids}); the weights were left at "
                    "the last finite step. Lower train.lr, check those items' data, or raise "
                    "train.max_consecutive_nonfinite")
        else:
            bad["consecutive"] = 0
        now = time.perf_counter()
        if self._logs is not None:
            self._logs.step({"step": run.step, "epoch": run.epoch + 1, "batch": run.position, "loss": values[0],
                             **dict(zip(part_sums, values[2:])), "lr": lr, "grad_norm": values[1],
                             "skipped": int(skipped), "seconds": now - self._t_step, "elapsed": self._elapsed()})
        self._t_step = now
        return values[0]

    def _validate_and_select(self, validate: Validate, run: _Run) -> None:
        cfg = self.cfg
        metrics = self._validate(validate)
        value = metrics[cfg.select_metric]
        run.val_history.append({"epoch": run.epoch, "step": run.step, **metrics})
        improved = self._better(value, run.best)
        log.info("epoch %d: validation %s = %.4f%s", run.epoch, cfg.select_metric, value,
                 " (best so far)" if improved else "")
        if self._logs is not None:
            self._logs.val({"step": run.step, "epoch": run.epoch, **metrics, "best": int(improved)})
        if improved:
            run.best = {"metric": cfg.select_metric, "value": value, "epoch": run.epoch, "step": run.step,
                        "metrics": metrics}
            if self.is_main:
                atomic_save({"model": self.module.state_dict(), "epoch": run.epoch, "step": run.step,
                             "metrics": metrics, "selected_by": f"validation {cfg.select_metric} ({cfg.select_mode})",
                             "meta": self.meta}, self.best_path)


def _detach(value: Any) -> Any:
    return value.detach().float() if isinstance(value, torch.Tensor) else float(value)


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; the CSV logs always exist
        return None
    return SummaryWriter(str(folder))


# the trainer's public API, data order and checkpoint helpers included (one import for a runner)
__all__ = ["CHECKPOINT_FORMAT", "EpochBatchSampler", "NonFiniteLossError", "TrainConfig", "TrainResult", "Trainer",
           "WarmupCosine", "atomic_save", "dist_info", "load_checkpoint", "load_weights", "param_groups",
           "seed_everything"]
