"""Stage I and Stage II training of SIGMA's heads.

The runner hands in data as functions ``batch_at(step) -> dict`` that are deterministic in ``step``; with
the checkpointed weights, optimizer, schedule and EMA teacher this makes resume exact (no RNG state to
restore: flips are drawn from a generator seeded by (seed, stage, step)). Batch keys:

- ``feats_o`` / ``feats_e``: lists of three feature maps (strides 4/8/16), or ``original`` / ``edited``
  images in [0,1] only (then the trainer's frozen backbone computes them on the fly, without gradients,
  under bf16 autocast on CUDA);
- ``mask`` (B,1,H,W) in {0,1} (not needed for the self-training corpus); ``intended`` (B,1,H,W): the
  part of the mask the instruction describes (defaults to ``mask``); ``instruction``: list of strings;
- ``roundtrip`` (B,) bool: the pair's edited image went through an autoencoder round trip, so every
  unedited pixel carries round-trip noise (used by the disentanglement loss);
- optional ``slots`` (list of int) and ``global_size``: where each sample sits in the step's global batch
  (for a process's share that is not simply its rank's equal slice, e.g. after a pair was skipped).

Data parallel (a ``torch.distributed`` process group, e.g. under torchrun; gloo on CPU, NCCL on GPU): each
process's ``batch_at(step)`` gives its share of the step's global batch (the runner splits it by rank), and
the trainer averages the gradients over the processes before every update, as DistributedDataParallel
does. It does so itself (one all-reduce of which parameters have gradients, one of the gradients, flat),
because Stage II runs the student twice per step (the labelled batch and the corpus batch) before one
backward, which DistributedDataParallel does not allow, and because some heads get no gradient in some
stages (the embedding head in Stage I). Every process starts from rank 0's weights, so students,
optimizers and EMA teachers (copied from the student at the same step and updated from the same weights)
stay identical across processes (checked at each stage's end); flips are drawn for the global batch and
sliced per rank. Rank 0 writes the checkpoints, every rank resumes from them.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from sigma.losses import bce_dice, disentangle_loss, prior_loss, pseudo_labels
from sigma.model import SigmaNet
from sigma.serialization import load_file, save_file
from sigma.text import mirror_instruction

log = logging.getLogger(__name__)

Batch = dict[str, Any]


@dataclass
class StageConfig:
    """One training stage; the defaults are Stage I's tuned values (configs/sigma/default.yaml, ``stage1``)."""

    steps: int = 800
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 50
    prior_weight: float = 0.5
    flip: bool = True
    checkpoint_every: int = 200


@dataclass
class Stage2Config(StageConfig):
    """Stage II: a stage plus its three parts, defaults the tuned values of ``stage2`` in the YAML (the
    ablations set 0.3 / 0.9 / 0.1 against 0.6 / 0.97 / 0.03: the looser teacher cost 0.035 F1)."""

    lr: float = 1e-3
    warmup: int = 20
    calibration: bool = True          # supervised round-trip pairs (edit + noise, and noise only)
    self_training: bool = True        # EMA teacher pseudo-labels on the unlabelled corpus
    self_training_start: float = 0.6  # burn-in: the teacher is taken from the calibrated student at this fraction
    disentangle: bool = True          # edit vs round-trip-noise embedding separation
    ema_decay: float = 0.99
    confident_hi: float = 0.97        # pseudo-labels only where the teacher is this sure of an edit ...
    confident_lo: float = 0.03        # ... or of no edit
    self_training_weight: float = 0.5
    disentangle_weight: float = 0.2


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def _flip_batch(batch: Batch, which: torch.Tensor) -> Batch:
    """Mirror the selected samples: every map and the words left/right in their instruction."""
    if not bool(which.any()):
        return batch
    out = dict(batch)
    for key in ("feats_o", "feats_e"):
        if batch.get(key) is not None:
            out[key] = [torch.where(which.view(-1, 1, 1, 1).to(f.device), f.flip(-1), f) for f in batch[key]]
    for key in ("original", "edited", "mask", "intended", "pseudo_target", "pseudo_weight"):
        if batch.get(key) is not None:
            t = batch[key]
            out[key] = torch.where(which.view(-1, 1, 1, 1).to(t.device), t.flip(-1), t)
    out["instruction"] = [mirror_instruction(t) if w else t for t, w in zip(batch["instruction"], which.tolist())]
    return out


def process_group() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class SigmaTrainer:
    def __init__(self, net: SigmaNet, text_encoder: torch.nn.Module | None, device: torch.device, out_dir: str | Path,
                 seed: int = 0, backbone: torch.nn.Module | None = None, progress: bool = True):
        self.net = net.to(device)
        self.text = text_encoder
        self.device = device
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.backbone = backbone.to(device) if backbone is not None else None
        self.rank, self.world = process_group()
        self.progress = progress and self.rank == 0
        self.teacher: SigmaNet | None = None
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------------------------------ pieces

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def _move(self, batch: Batch) -> Batch:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                out[k] = v.to(self.device, non_blocking=True)
            elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
                out[k] = [t.to(self.device, non_blocking=True).float() for t in v]
            else:
                out[k] = v
        return out

    @torch.no_grad()
    def features(self, batch: Batch, difference: bool) -> tuple[list[torch.Tensor] | None, list[torch.Tensor]]:
        """The frozen backbone's pyramids of the batch's original (when the heads difference) and edited
        images, in one forward pass, as float32 (the backbone runs under bf16 autocast on CUDA)."""
        if self.backbone is None:
            raise ValueError("batch has images but no features, and the trainer has no backbone")
        images = torch.cat([batch["original"], batch["edited"]]) if difference else batch["edited"]
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            levels = [f.float() for f in self.backbone(images)]
        if not difference:
            return None, levels
        n = len(batch["edited"])
        return [f[:n] for f in levels], [f[n:] for f in levels]

    def forward(self, net: SigmaNet, batch: Batch) -> dict[str, torch.Tensor]:
        feats_o, feats_e = batch.get("feats_o"), batch.get("feats_e")
        if feats_e is None:
            feats_o, feats_e = self.features(batch, net.cfg.difference)
        text = valid = None
        if net.cfg.use_text:
            text, valid = self.text(batch["instruction"], self.device)
        size = batch["mask"].shape[-2:] if batch.get("mask") is not None else None
        with self._autocast():
            return net(feats_o if net.cfg.difference else None, feats_e, text, valid, batch.get("original"),
                       batch.get("edited"), out_size=size)

    def _supervised(self, out: dict, batch: Batch, cfg: StageConfig) -> tuple[torch.Tensor, dict[str, float]]:
        mask = batch["mask"].float()
        loss = bce_dice(out["mask_logits"], mask)
        parts = {"mask": float(loss.detach())}
        if out["prior_logits"] is not None and cfg.prior_weight:
            has_text = torch.tensor([bool(t.strip()) for t in batch["instruction"]], device=mask.device)
            intended = batch.get("intended")
            p = prior_loss(out["prior_logits"], (intended if intended is not None else mask).float(), has_text)
            loss = loss + cfg.prior_weight * p
            parts["prior"] = float(p.detach())
        return loss, parts

    def _flips(self, stage: int, step: int, batch: Batch, cfg: StageConfig) -> torch.Tensor:
        """Which samples to mirror: drawn for the step's global batch, this process's samples taken (the
        batch's ``slots`` in a ``global_size`` batch when it says so, else its equal share by rank), so a
        sample's flip does not depend on the number of processes."""
        n = len(batch["instruction"])
        if not cfg.flip:
            return torch.zeros(n, dtype=torch.bool)
        g = torch.Generator().manual_seed(hash((self.seed, stage, step)) % (2 ** 31))
        if batch.get("slots") is not None:
            return (torch.rand(int(batch["global_size"]), generator=g) < 0.5)[torch.as_tensor(batch["slots"])]
        return (torch.rand(n * self.world, generator=g) < 0.5)[self.rank * n:(self.rank + 1) * n]

    # ------------------------------------------------------------------------------------------ processes

    def _broadcast(self) -> None:
        """Every process takes rank 0's weights (student and teacher), as DistributedDataParallel does."""
        for net in (self.net, self.teacher):
            if net is not None:
                for t in net.state_dict().values():
                    dist.broadcast(t, 0)

    def _average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Mean of every process's gradients. A parameter no process gave a gradient keeps none (AdamW skips
        it, as in one process); one that only some processes reached counts zero from the others."""
        reached = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.device)
        dist.all_reduce(reached)
        used = [p for p, r in zip(params, reached.tolist()) if r > 0]
        if not used:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in used])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in used:
            p.grad = flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()

    def _check_replicas(self) -> None:
        """Every process holds the same student and teacher, bit for bit (a checksum of each, gathered): a
        drift would mean the processes no longer train one model. Raises naming what differs."""
        sums = torch.tensor([sum(float(p.double().sum()) for p in net.parameters()) if net is not None else 0.0
                             for net in (self.net, self.teacher)], dtype=torch.float64, device=self.device)
        gathered = [torch.zeros_like(sums) for _ in range(self.world)]
        dist.all_gather(gathered, sums)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise RuntimeError(f"the {self.world} processes' SIGMA weights differ (student, teacher checksums per "
                               f"rank: {[g.tolist() for g in gathered]}); the processes must run the same code on the "
                               "same step functions")

    def _mean_parts(self, parts: dict[str, float]) -> dict[str, float]:
        """Loss parts averaged over the processes (the history logs the global batch's losses)."""
        if self.world == 1 or not parts:
            return parts
        keys = list(parts)  # built in the same order on every process
        values = torch.tensor([parts[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return dict(zip(keys, (values / self.world).tolist()))

    # ------------------------------------------------------------------------------------------ checkpoints

    def _state(self, stage: int, step: int, opt, sched, cfg: StageConfig) -> dict:
        return {"stage": stage, "step": step, "net": self.net.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "teacher": None if self.teacher is None else self.teacher.state_dict(),
                "stage_config": asdict(cfg), "history": self.history}

    def _save(self, state: dict, name: str) -> Path:
        path = self.out_dir / name
        if self.rank == 0:
            save_file(state, path)
        return path

    def _resume(self, stage: int, opt, sched) -> int:
        path = self.out_dir / f"stage{stage}_last.pt"
        if not path.is_file():
            return 0
        state = load_file(path, map_location=self.device)
        self.net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        if state["teacher"] is not None:
            self.teacher = copy.deepcopy(self.net).eval()
            self.teacher.load_state_dict(state["teacher"])
        self.history = state["history"]
        log.info("resumed stage %d at step %d from %s", stage, state["step"], path)
        return int(state["step"])

    # ------------------------------------------------------------------------------------------ stages

    def _run(self, stage: int, cfg: StageConfig, step_fn: Callable[[int], tuple[torch.Tensor, dict[str, float]]]) -> dict:
        from tqdm import tqdm

        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.warmup, cfg.steps))
        start = self._resume(stage, opt, sched)
        if self.world > 1:
            self._broadcast()
        t0 = time.perf_counter()
        bar = tqdm(range(start, cfg.steps), desc=f"SIGMA stage {stage}", disable=not self.progress, initial=start,
                   total=cfg.steps)
        running: dict[str, float] = {}
        for step in bar:
            self.net.train()
            if isinstance(cfg, Stage2Config) and cfg.self_training and self.teacher is None \
                    and step >= int(cfg.self_training_start * cfg.steps):
                # a teacher straight from Stage I would flag the editor's noise as edits and teach it back:
                # it starts from the student after calibration has burned in
                self.teacher = copy.deepcopy(self.net).eval()
            loss, parts = step_fn(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.world > 1:
                self._average_gradients(params)
                parts = self._mean_parts(parts)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            if self.teacher is not None:
                with torch.no_grad():
                    for pt, ps in zip(self.teacher.parameters(), self.net.parameters()):
                        pt.lerp_(ps, 1 - cfg.ema_decay)
                    for bt, bs in zip(self.teacher.buffers(), self.net.buffers()):
                        bt.copy_(bs)
            for k, v in parts.items():
                running[k] = 0.9 * running.get(k, v) + 0.1 * v
            if step % 20 == 0 or step == cfg.steps - 1:
                self.history.append({"stage": stage, "step": step, **{k: round(v, 4) for k, v in running.items()}})
                bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()})
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                self._save(self._state(stage, step + 1, opt, sched, cfg), f"stage{stage}_last.pt")
        self._save(self._state(stage, cfg.steps, opt, sched, cfg), f"stage{stage}_last.pt")
        if self.world > 1:
            self._check_replicas()
            dist.barrier()  # the stage's last checkpoint exists before any process reads it (a later variant)
        return {"steps": cfg.steps, "seconds": round(time.perf_counter() - t0, 1), "final": running}

    def stage1(self, cfg: StageConfig, batch_at: Callable[[int], Batch]) -> dict:
        """Supervised training on exact masks (the inpainting set)."""

        def step_fn(step: int):
            batch = self._move(batch_at(step))
            batch = _flip_batch(batch, self._flips(1, step, batch, cfg))
            out = self.forward(self.net, batch)
            return self._supervised(out, batch, cfg)

        return self._run(1, cfg, step_fn)

    def stage2(self, cfg: Stage2Config, supervised_at: Callable[[int], Batch],
               corpus_at: Callable[[int], Batch] | None) -> dict:
        """Closing the diffusion-domain gap. `supervised_at` gives round-trip calibration batches when
        ``cfg.calibration`` (else the Stage I data, so the model keeps its supervision); `corpus_at` gives
        unlabelled editing pairs for EMA self-training."""
        if cfg.self_training and corpus_at is None:
            raise ValueError("Stage II self-training needs the unlabelled corpus (corpus_at)")

        def step_fn(step: int):
            batch = self._move(supervised_at(step))
            batch = _flip_batch(batch, self._flips(2, step, batch, cfg))
            out = self.forward(self.net, batch)
            loss, parts = self._supervised(out, batch, cfg)
            if cfg.disentangle and cfg.calibration:
                edit = F.adaptive_avg_pool2d(batch["mask"].float(), out["embed"].shape[-2:])
                noisy = batch["roundtrip"].view(-1, 1, 1, 1).float()
                d = disentangle_loss(out["embed"], (edit > 0.5).float(), (edit == 0).float() * noisy)
                loss = loss + cfg.disentangle_weight * d
                parts["disentangle"] = float(d.detach())
            if cfg.self_training and self.teacher is not None:
                corpus = self._move(corpus_at(step))
                with torch.no_grad():
                    teacher_prob = torch.sigmoid(self.forward(self.teacher, corpus)["mask_logits"].float())
                target, weight = pseudo_labels(teacher_prob, cfg.confident_hi, cfg.confident_lo)
                corpus = dict(corpus, mask=target, pseudo_weight=weight)
                corpus = _flip_batch(corpus, self._flips(3, step, corpus, cfg))
                out_c = self.forward(self.net, corpus)
                st = bce_dice(out_c["mask_logits"], corpus["mask"], weight=corpus["pseudo_weight"])
                loss = loss + cfg.self_training_weight * st
                parts["self_training"] = float(st.detach())
                parts["confident"] = float(weight.mean())
                if cfg.disentangle and not cfg.calibration:
                    # no round-trip pairs: the teacher's confident "no edit" pixels carry the editor's noise
                    small = lambda m: F.adaptive_avg_pool2d(m, out_c["embed"].shape[-2:])  # noqa: E731
                    sure = small(corpus["pseudo_weight"]) > 0.99
                    edit = (small(corpus["mask"]) > 0.5) & sure
                    noise = (small(corpus["mask"]) == 0) & sure
                    d = disentangle_loss(out_c["embed"], edit.float(), noise.float())
                    loss = loss + cfg.disentangle_weight * d
                    parts["disentangle"] = float(d.detach())
            return loss, parts

        return self._run(2, cfg, step_fn)
