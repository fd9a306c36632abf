"""SIGMA's training data streamed (``sigma.data.source: stream``): the pairs of each step read and decoded
in DataLoader workers, the round-trip calibration pairs made per step, the frozen backbone run by the
trainer on the fly (:meth:`sigma.train.SigmaTrainer.features`). Nothing is held per pair but an 8-byte
offset (manifests) or a row-group range (parquet), so memory is flat in the number of pairs.

What a step trains on depends only on (seed, stage tag, step), as on the bank path, so resume stays exact:

- **Draws** (:class:`Draws`): the step's global batch is ``sigma.batch_size`` pair indices drawn with
  replacement from ``default_rng((seed, tag, step))``, the bank's rule: on a manifest the stream trains on
  the same pairs in the same order as the bank does. Parquet files cannot be read a row at a time, so
  there the draws of a stretch of steps come from a window of ``sigma.data.parquet_window`` row groups (the
  windows walk through seeded permutations of the row groups; a window lasts as many steps as it has rows
  per global batch), and each worker keeps those groups.
- **Calibration** (Stage II): each drawn inpainting pair is, with probability f / (1 + f) (f =
  ``sigma.calibration.noedit_fraction``, the bank's proportion), its original through the editor round trip
  labelled "no edit", otherwise its edited image through the round trip with its mask. The round trip runs
  in the training process on the training device (the stand-in autoencoder or a diffusers VAE), each sample
  from its own seed (seed, tag, step, slot): the same in any batch and on any process.
- **Processes**: rank r of W takes slots ``[r B/W, (r+1) B/W)`` of each global batch; the trainer draws the
  flips per global slot (``slots`` / ``global_size`` in the batch), so a sample is treated alike whatever W.
- **Bad pairs**: a pair that fails to read (missing or corrupt image, bad manifest line, mask of another
  size) is a skip marker that travels with its batch; the training process counts it and lists it in the
  work folder's ``skipped.jsonl`` (with ``sigma.data.on_error=raise``: stops with one line naming the file),
  and the worker draws a replacement from (seed, tag, step, slot, attempt), up to ``sigma.data.retries``
  times, after which the batch goes one sample short. A step none of whose pairs can be read is an error.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data
from omegaconf import DictConfig

from benchmarks.config import to_container
from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.imageio import resize_image, resize_mask
from benchmarks.data.pair_index import PairIndex, open_index
from benchmarks.distributed import rank_world
from benchmarks.io import content_hash, file_hash, save_torch, write_json
from benchmarks.paths import config_roots, portable
from benchmarks.sigma_training.inputs import (SigmaDataConfig, backbone_path, data_config, excluded_families,
                                              training_sets)

log = logging.getLogger(__name__)

PASS_TAG = 1 << 20  # seeds of the parquet windows' row-group permutations, apart from the steps' draws
COIN_TAG = 1 << 21  # seeds of the calibration's no-edit choices
KINDS = ("pairs", "calibration", "corpus", "photos")


def sample_seed(*key: int) -> int:
    """A 63-bit seed from integers (seed, tag, step, slot): one sample's own random stream."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class PairSet:
    """Several pair indexes read as one (index i of the second follows the last of the first)."""

    def __init__(self, parts: list[PairIndex]):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def get(self, i: int, **kw: Any) -> dict[str, Any]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k].get(int(i - self.starts[k]), **kw)

    @property
    def blocks(self) -> list[tuple[int, int]] | None:
        """Index ranges read together, when some part has them (parquet row groups); else None."""
        if all(p.blocks is None for p in self.parts):
            return None
        out: list[tuple[int, int]] = []
        for p, start in zip(self.parts, self.starts):
            ranges = p.blocks if p.blocks is not None else [(0, len(p))]
            out += [(int(start) + a, int(start) + b) for a, b in ranges]
        return out


class Draws:
    """The pair indices of each step's global batch (see the module docstring): the bank's rule over the
    whole set, or over the step's window of blocks when the set has blocks (parquet row groups)."""

    def __init__(self, n: int, batch: int, seed: int, tag: int, blocks: list[tuple[int, int]] | None = None,
                 window: int = 4):
        if n < 1:
            raise DataError("SIGMA training: a training set has no pairs", reason="empty")
        self.n, self.batch, self.seed, self.tag = n, batch, seed, tag
        self.blocks = [b for b in blocks if b[1] > b[0]] if blocks else None
        self.window = window
        self._plan: list[tuple[int, list[int]]] = []  # (first step, block ids) of each window planned so far
        self._planned_steps = 0
        self._passes = 0

    def _window_of(self, step: int) -> list[int]:
        while self._planned_steps <= step:  # plan one more pass over the blocks
            order = np.random.default_rng((self.seed, self.tag, PASS_TAG, self._passes)).permutation(len(self.blocks))
            for i in range(0, len(order), self.window):
                ids = order[i:i + self.window].tolist()
                rows = sum(self.blocks[b][1] - self.blocks[b][0] for b in ids)
                self._plan.append((self._planned_steps, ids))
                self._planned_steps += max(1, math.ceil(rows / self.batch))
            self._passes += 1
        first = [s for s, _ in self._plan]
        return self._plan[int(np.searchsorted(first, step, side="right")) - 1][1]

    def _rows(self, step: int, picks: np.ndarray) -> np.ndarray:
        """Draws in [0, rows of the step's window) as set indices."""
        ids = self._window_of(step)
        sizes = np.array([self.blocks[b][1] - self.blocks[b][0] for b in ids])
        ends = np.cumsum(sizes)
        k = np.searchsorted(ends, picks, side="right")
        starts = np.array([self.blocks[b][0] for b in ids])
        return starts[k] + picks - (ends[k] - sizes[k])

    def _span(self, step: int) -> int:
        if self.blocks is None:
            return self.n
        return sum(self.blocks[b][1] - self.blocks[b][0] for b in self._window_of(step))

    def at(self, step: int) -> np.ndarray:
        picks = np.random.default_rng((self.seed, self.tag, step)).integers(0, self._span(step), self.batch)
        return picks if self.blocks is None else self._rows(step, picks)

    def retry(self, step: int, slot: int, attempt: int) -> int:
        """The replacement for a bad pair in `slot` of `step`, at the `attempt`-th try (0-based)."""
        pick = np.random.default_rng((self.seed, self.tag, step, slot, attempt + 1)).integers(0, self._span(step), 1)
        return int(pick[0] if self.blocks is None else self._rows(step, pick)[0])


def _marker(slot: int, attempt: int, index: int, err: DataError) -> dict[str, Any]:
    return {"slot": slot, "attempt": attempt, "index": index, "id": err.path or f"pair {index}", "reason": err.reason,
            "error": str(err), "path": err.path}


class StepShares(torch.utils.data.Dataset):
    """Map-style over steps: item `step` is this process's share of the step's global batch, decoded (uint8
    tensors), with a skip marker for every pair that failed to read. Runs inside DataLoader workers."""

    def __init__(self, pairs: PairSet, draws: Draws, kind: str, *, rank: int, world: int, size: int | None,
                 retries: int, noedit: float = 0.0, crop: int = 128):
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}; one of {KINDS}")
        if draws.batch % world:
            raise ValueError(f"sigma.batch_size={draws.batch} is the global batch: it must split evenly over the "
                             f"{world} processes")
        self.pairs, self.draws, self.kind = pairs, draws, kind
        share = draws.batch // world
        self.slots = list(range(rank * share, (rank + 1) * share))
        self.size, self.retries, self.noedit, self.crop = size, retries, noedit, crop

    def _read(self, i: int) -> dict[str, Any]:
        pair = self.pairs.get(i, need_mask=self.kind in ("pairs", "calibration"), original_only=self.kind == "photos")
        if self.size is not None:
            hw = (self.size, self.size)
            for key in ("original", "edited"):
                if key in pair:
                    pair[key] = resize_image(pair[key], hw)
            for key in ("mask", "intended"):
                if pair.get(key) is not None:
                    pair[key] = resize_mask(pair[key], hw)
        return pair

    def _crop(self, image: np.ndarray, step: int, slot: int) -> np.ndarray:
        c = self.crop
        h, w = image.shape[:2]
        if min(h, w) < c:  # a small photo is enlarged so every crop of the batch has one size
            scale = c / min(h, w)
            image = resize_image(image, (max(c, round(h * scale)), max(c, round(w * scale))))
            h, w = image.shape[:2]
        rng = np.random.default_rng((self.draws.seed, self.draws.tag, step, slot))
        y, x = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
        return image[y:y + c, x:x + c]

    def __getitem__(self, step: int) -> dict[str, Any]:
        drawn = self.draws.at(step)
        skipped: list[dict[str, Any]] = []
        got: list[tuple[int, dict[str, Any]]] = []
        for slot in self.slots:
            index = int(drawn[slot])
            for attempt in range(self.retries + 1):
                try:
                    got.append((slot, self._read(index)))
                    break
                except DataError as err:
                    skipped.append(_marker(slot, attempt, index, err))
                    index = self.draws.retry(step, slot, attempt)
        out: dict[str, Any] = {"step": step, "slots": [s for s, _ in got], "skipped": skipped}
        if self.kind == "photos":
            crops = [self._crop(p["original"], step, s) for s, p in got]
            out["photos"] = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2) if crops else None
            return out
        if not got:
            return out
        shapes = {p["edited"].shape[:2] for _, p in got}
        if len(shapes) > 1:
            raise ValueError(f"SIGMA training step {step}: pairs of sizes {sorted(shapes)} in one batch; SIGMA batches "
                             "need one size: set sigma.data.size (e.g. 512) to resize every pair")
        for key in ("original", "edited"):
            out[key] = torch.from_numpy(np.stack([p[key] for _, p in got])).permute(0, 3, 1, 2)
        if self.kind != "corpus":
            for key in ("mask", "intended"):
                out[key] = torch.from_numpy(np.stack([p[key] for _, p in got]))[:, None]
        out["instruction"] = [p["instruction"] for _, p in got]
        if self.kind == "calibration":
            coin = np.random.default_rng((self.draws.seed, self.draws.tag, COIN_TAG, step)).random(self.draws.batch)
            out["noedit"] = torch.from_numpy(coin[out["slots"]] < self.noedit / (1 + self.noedit))
        return out


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # decoding workers must not compete with the trainer's threads


class StreamBatches:
    """``step -> batch`` over a :class:`StepShares` (what the trainer's stages call): a DataLoader started at
    the step asked for and read in order (asked for another step, it restarts there), images moved to the
    device as float in [0,1], the calibration round trip applied, skips counted or raised."""

    def __init__(self, shares: StepShares, cfg: SigmaDataConfig, device: torch.device, skips: SkipLog,
                 stop: int | None = None, roundtrip: Callable[[torch.Tensor, list[int]], torch.Tensor] | None = None):
        self.shares, self.cfg, self.device, self.skips, self.stop = shares, cfg, device, skips, stop
        self.roundtrip = roundtrip
        self._it = None
        self._next = -1

    def _start(self, step: int) -> None:
        stop = self.stop if self.stop is not None and self.stop > step else step + (1 << 40)
        workers = self.cfg.workers
        loader = torch.utils.data.DataLoader(
            self.shares, batch_size=None, sampler=range(step, stop), num_workers=workers,
            prefetch_factor=self.cfg.prefetch if workers else None, worker_init_fn=_one_thread if workers else None,
            pin_memory=self.device.type == "cuda")
        self._it = iter(loader)
        self._next = step

    def close(self) -> None:
        """Stop the workers (they also stop once the last step was read, or when this is dropped)."""
        self._it = None

    def __call__(self, step: int) -> Any:
        if self._it is None or step != self._next:
            self._start(step)
        raw = next(self._it)
        self._next = step + 1
        if self.stop is not None and self._next >= self.stop:
            self.close()
        self._account(raw["skipped"], step)
        if not raw["slots"]:
            raise DataError(f"SIGMA training (stage tag {self.shares.draws.tag}) step {step}: none of this process's "
                            f"pairs could be read, {len(raw['skipped'])} tries (first: {raw['skipped'][0]['error']}); "
                            "check the training set (bench data check)", reason="unreadable")
        if self.shares.kind == "photos":
            return raw["photos"].float().div(255)
        return self._batch(raw, step)

    def _account(self, markers: list[dict[str, Any]], step: int) -> None:
        for m in markers:
            err = DataError(m["error"], path=m["path"], reason=m["reason"])
            if self.cfg.on_error == "raise":
                raise DataError(f"{m['error']} (SIGMA training, stage tag {self.shares.draws.tag}, step {step}); "
                                "sigma.data.on_error=skip counts bad pairs and draws others", path=m["path"],
                                reason=m["reason"])
            self.skips.fields = {"tag": str(self.shares.draws.tag), "step": str(step), "slot": str(m["slot"])}
            self.skips.record(str(m["id"]), err)

    def _batch(self, raw: dict[str, Any], step: int) -> dict[str, Any]:
        dev = self.device
        batch: dict[str, Any] = {key: raw[key].to(dev, non_blocking=True).float().div(255)
                                 for key in ("original", "edited")}
        batch.update(instruction=raw["instruction"], slots=raw["slots"], global_size=self.shares.draws.batch)
        if "mask" in raw:
            batch["mask"] = raw["mask"].to(dev).float()
            batch["intended"] = raw["intended"].to(dev).float()
        if self.shares.kind == "calibration":
            noedit = raw["noedit"].to(dev)
            source = torch.where(noedit.view(-1, 1, 1, 1), batch["original"], batch["edited"])
            seeds = [sample_seed(self.shares.draws.seed, self.shares.draws.tag, step, s) for s in raw["slots"]]
            batch["edited"] = self.roundtrip(source, seeds)
            keep = (~noedit).float().view(-1, 1, 1, 1)
            batch["mask"], batch["intended"] = batch["mask"] * keep, batch["intended"] * keep
            batch["roundtrip"] = torch.ones(len(seeds), dtype=torch.bool, device=dev)
        return batch


@dataclass(frozen=True)
class StreamTable:
    """One set as a stage reads it: ``pairs`` (labelled), ``calibration`` (labelled, through the round trip),
    ``corpus`` (unlabelled) or ``photos`` (originals cropped, for the stand-in autoencoder)."""

    kind: str
    pairs: PairSet

    def __len__(self) -> int:
        return len(self.pairs)


class StreamedTrainingData:
    """The stream's counterpart of :class:`~benchmarks.sigma_training.data.SigmaTrainingData`: the same
    tables and ``batch_fn``, batches of images (the trainer computes the features)."""

    streamed = True

    def __init__(self, stage1: StreamTable, calibration: StreamTable, corpus: StreamTable, info: dict[str, Any],
                 cfg: SigmaDataConfig, device: torch.device, noedit: float,
                 roundtrip: Callable[[torch.Tensor, list[int]], torch.Tensor] | None):
        self.stage1, self.calibration, self.corpus, self.info = stage1, calibration, corpus, info
        self.cfg, self.device, self.noedit, self.roundtrip = cfg, device, noedit, roundtrip
        self.skips = SkipLog()

    def log_skips(self, path: Path) -> None:
        """List every skipped pair in `path` (a JSON line each: tag, step, slot, id, reason, error)."""
        self.skips.path = path

    def batch_fn(self, table: StreamTable, tag: int, batch_size: int, seed: int, steps: int | None = None,
                 rank: int | None = None, world: int | None = None, crop: int = 128) -> StreamBatches:
        """``step -> batch`` of this process's share of `table`'s global batches (see the module docstring)."""
        if rank is None or world is None:
            rank, world = rank_world()
        draws = Draws(len(table), batch_size, seed, tag, table.pairs.blocks, self.cfg.parquet_window)
        shares = StepShares(table.pairs, draws, table.kind, rank=rank, world=world, size=self.cfg.size,
                            retries=self.cfg.retries, noedit=self.noedit, crop=crop)
        return StreamBatches(shares, self.cfg, self.device, self.skips, steps,
                             self.roundtrip if table.kind == "calibration" else None)


def _photo_side(photos: StreamTable) -> int:
    """The smaller side of the set's first readable photo (crops of native-size sets are no larger)."""
    for i in range(min(len(photos), 16)):
        try:
            return int(min(photos.pairs.get(i, original_only=True)["original"].shape[:2]))
        except DataError:
            continue
    return 1 << 30


def _autoencoder(cfg: DictConfig, data: StreamedTrainingData, photos: StreamTable, cache: Path, device: torch.device,
                 progress: bool) -> tuple[Callable[[torch.Tensor, list[torch.Generator]], torch.Tensor], Any]:
    """The round trip's autoencoder: a diffusers VAE from ``sigma.vae_path``, else the stand-in (trained here
    on crops of the streamed photos once, then read from `cache`)."""
    from sigma.roundtrip import DiffusersVAE, StandInAE, train_standin
    from sigma.serialization import load_file

    if cfg.sigma.vae_path:
        vae = DiffusersVAE(str(cfg.sigma.vae_path)).to(device)
        return (lambda x, gens: vae.roundtrip(x)), f"diffusers AutoencoderKL {cfg.sigma.vae_path}"
    seed = int(cfg.sigma.seed)
    weights, record = cache / "standin_ae.pt", cache / "standin_ae.json"
    if weights.is_file() and record.is_file():
        import json

        ae = StandInAE().to(device)
        ae.load_state_dict(load_file(weights, map_location=device))
        info = json.loads(record.read_text())
    else:
        side = min(int(cfg.sigma.standin_ae.crop), data.cfg.size or _photo_side(photos))
        crops = data.batch_fn(photos, 7, int(cfg.sigma.standin_ae.batch_size), seed,
                              steps=int(cfg.sigma.standin_ae.steps), rank=0, world=1, crop=side)
        ae, info = train_standin(crops, int(cfg.sigma.standin_ae.steps), device, seed=seed, progress=progress)
        crops.close()
        save_torch(ae.state_dict(), weights)
        write_json(record, info)
    ae.eval()
    noise = float(cfg.sigma.standin_ae.latent_noise)
    return (lambda x, gens: ae.roundtrip(x, gens, noise)), {"kind": "stand-in (8x latent, 4 channels)", **info}


def prepare_stream(cfg: DictConfig, device: torch.device, progress: bool = True) -> StreamedTrainingData:
    """Open the training sets for streaming and ready the round trip; cache: the stand-in autoencoder, in
    ``<paths.home>/cache/sigma/<key>/`` keyed by every input (the sets' manifests or parquet footers, backbone
    weights, autoencoder and calibration settings, seed, resize)."""
    from sigma.roundtrip import editor_roundtrip_per_sample

    t0 = time.perf_counter()
    if excluded_families(cfg):
        raise ValueError("sigma.exclude_families (leave-one-family-out) is built for the feature bank only; run it "
                         "with sigma.data.source=bank")
    dcfg = data_config(cfg)
    inpainting_dir, corpus_dir = training_sets(cfg)
    keep = dcfg.parquet_window
    inpainting = open_index(inpainting_dir, keep_groups=keep)
    corpus = open_index(corpus_dir, exclude_split=cfg.sigma.get("corpus_exclude_split"), keep_groups=keep)
    if corpus.excluded:
        log.info("%s: %d pairs with split=%s left out of SIGMA training", corpus_dir, corpus.excluded,
                 cfg.sigma.get("corpus_exclude_split"))
    bpath = backbone_path(cfg)
    key_parts = {"source": "stream", "inpainting": inpainting.describe(), "corpus": corpus.describe(),
                 "backbone": cfg.sigma.model.backbone, "backbone_weights": file_hash(bpath, 16) if bpath else None,
                 "vae": cfg.sigma.vae_path, "standin": to_container(cfg.sigma.standin_ae),
                 "calibration": to_container(cfg.sigma.calibration), "seed": cfg.sigma.seed,
                 "corpus_exclude_split": cfg.sigma.get("corpus_exclude_split"), "size": dcfg.size,
                 "parquet_window": dcfg.parquet_window, "retries": dcfg.retries}
    key = content_hash(key_parts)
    cache = Path(cfg.paths.home) / "cache" / "sigma" / key
    roots = config_roots(cfg.paths)
    cal = cfg.sigma.calibration
    noedit = float(cal.noedit_fraction)
    labelled = PairSet([inpainting])
    data = StreamedTrainingData(StreamTable("pairs", labelled), StreamTable("calibration", labelled),
                                StreamTable("corpus", PairSet([corpus])), {}, dcfg, device, noedit, None)
    photos = StreamTable("photos", PairSet([inpainting, corpus]))
    ae_fn, ae_info = _autoencoder(cfg, data, photos, cache, device, progress)
    data.roundtrip = lambda x, seeds: editor_roundtrip_per_sample(  # noqa: E731
        x, ae_fn, seeds, float(cal.shift), tuple(cal.jpeg), float(cal.tone), float(cal.get("randomize", 0.0)),
        float(cal.get("warp", 0.0)))
    write_json(cache / "key.json", key_parts)
    data.info = {"source": "stream", "inpainting": portable(inpainting_dir, roots),
                 "corpus": portable(corpus_dir, roots),
                 "cache": portable(cache, roots), "cache_key": key, "autoencoder": ae_info,
                 "pairs_stage1": len(inpainting), "pairs_corpus": len(corpus),
                 "pairs_calibration": f"{len(inpainting)} inpainting pairs through the round trip per step (no-edit "
                                      f"share {noedit / (1 + noedit):.2f})",
                 "stream": asdict(dcfg), "seconds": round(time.perf_counter() - t0, 1)}
    log.info("SIGMA training data streamed from %s and %s (%d + %d pairs)", inpainting_dir, corpus_dir,
             len(inpainting), len(corpus))
    return data
