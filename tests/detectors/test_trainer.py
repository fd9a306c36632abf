"""The one detector trainer (detectors/train.py) on a tiny conv detector defined here: schedule, accumulation,
SIGKILL + exact resume, non-finite losses, validation-chosen checkpoint, two-process gloo DDP.

Run as a script, this file is the child process of the kill/resume and DDP tests:
``python test_trainer.py run OUT [--slow]`` and ``python test_trainer.py ddp OUT`` (torchrun-style env).
"""

from __future__ import annotations

import csv
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectors.base import Detector, DetectorInfo
from detectors.losses import bce, dice, image_bce
from detectors.train import (EpochBatchSampler, NonFiniteLossError, Trainer, TrainConfig, WarmupCosine,
                             load_checkpoint, seed_everything)

HERE = Path(__file__).resolve()
SIZE = 16


class TinyDetector(Detector):
    """Two convs + a score head; dropout so that resume must restore the RNG to be exact."""

    info = DetectorInfo(name="tiny_test", family="2-layer conv", paper="none (test fixture)", input_size=SIZE,
                        stride=1)

    def __init__(self, dropout: float = 0.2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 1, 3, padding=1)
        self.score = nn.Linear(8, 1)
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x):
        h = self.drop(F.relu(self.conv1(x)))
        return {"mask_logits": self.conv2(h), "score_logits": self.score(h.mean((2, 3))).squeeze(1)}

    def loss(self, out, batch):
        b, d = bce(out["mask_logits"], batch), dice(out["mask_logits"], batch)
        s = image_bce(out["score_logits"], batch)
        total = b + d + 0.5 * s
        if "poison" in batch and bool(torch.as_tensor(batch["poison"]).any()):
            total = total * float("nan")
        return total, {"bce": b.detach(), "dice": d.detach(), "image": s.detach()}


def make_batch(seed: int, b: int = 4, size: int = SIZE, poison: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 3, size, size, generator=g)
    mask = (image[:, :1] > 0.55).float()
    mask[-1] = 0  # one authentic image per batch
    batch = {"image": image, "mask": mask, "valid": torch.ones_like(mask, dtype=torch.bool),
             "label": (mask.flatten(1).amax(1) > 0).long(), "id": [f"{seed}-{i}" for i in range(b)]}
    if poison:
        batch["poison"] = torch.ones(b, dtype=torch.bool)
    return batch


class KeyedSamples(torch.utils.data.Dataset):
    """Deterministic samples keyed by (epoch, index): a per-epoch flip, optional slowness, optional poison."""

    def __init__(self, n: int, slow: float = 0.0, poison: set[tuple[int, int]] = frozenset()):
        self.n, self.slow, self.poison = n, slow, poison

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        epoch, i = key
        if self.slow:
            time.sleep(self.slow)
        s = {k: (v[0] if isinstance(v, (torch.Tensor, list)) else v) for k, v in make_batch(i, b=1).items()}
        if (epoch + i) % 2:
            s = {k: (v.flip(-1) if isinstance(v, torch.Tensor) and v.ndim == 3 else v) for k, v in s.items()}
        s["poison"] = (epoch, i) in self.poison
        return s


def collate(samples):
    out = {k: torch.stack([s[k] for s in samples]) for k in ("image", "mask", "valid")}
    out["label"] = torch.stack([torch.as_tensor(s["label"]) for s in samples])
    out["poison"] = torch.tensor([s["poison"] for s in samples])
    out["id"] = [s["id"] for s in samples]
    return out


def loss_validator(batches):
    def validate(model):
        total = sum(float(model.loss(model(model.normalize(b["image"])), b)[0]) for b in batches)
        return {"val_loss": total / len(batches), "f1_per_image": 0.0}
    return validate


def weights(path) -> dict:
    return load_checkpoint(path)["model"]


def run_training(out: Path, slow: float = 0.0, config: dict | None = None) -> None:
    """The kill/resume scenario: 24 samples, batch 2, 3 epochs, checkpoints every 2 steps, dropout."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic in every process
    try:
        seed_everything(0)
        model = TinyDetector()
        sampler = EpochBatchSampler(24, 2, seed=5, keyed=True)
        loader = torch.utils.data.DataLoader(KeyedSamples(24, slow), batch_sampler=sampler, collate_fn=collate)
        cfg = TrainConfig(**{"epochs": 3, "lr": 3e-3, "checkpoint_every": 2, "select_metric": "val_loss",
                             "select_mode": "min", "progress": False, **(config or {})})
        Trainer(model, cfg, out, device="cpu", meta={"fingerprint": "kill-test"}).fit(
            loader, validate=loss_validator([make_batch(100), make_batch(101)]))
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- unit


def test_warmup_cosine_values():
    f = WarmupCosine(warmup=4, total=20, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    assert f(12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(20) == pytest.approx(0.1) and f(30) == pytest.approx(0.1)
    assert WarmupCosine(0, 10)(0) == 1.0


def test_logged_learning_rates_follow_the_schedule(tmp_path):
    seed_everything(0)
    cfg = TrainConfig(epochs=2, lr=0.01, warmup_steps=2, min_lr_ratio=0.0, progress=False)
    Trainer(TinyDetector(), cfg, tmp_path).fit([make_batch(i) for i in range(5)])
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    f = WarmupCosine(2, 10, 0.0)
    assert [int(r["step"]) for r in rows] == list(range(1, 11))
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.01 * f(s) for s in range(10)], rel=1e-4)
    assert {"loss", "bce", "dice", "image", "grad_norm", "skipped", "seconds"} <= set(rows[0])


def test_accumulation_equals_a_bigger_batch(tmp_path):
    big = [make_batch(i, b=8) for i in range(3)]
    small = [{k: (v[h * 4:(h + 1) * 4]) for k, v in b.items()} for b in big for h in range(2)]
    results = []
    for name, data, accumulation in (("big", big, 1), ("small", small, 2)):
        seed_everything(0)
        model = TinyDetector(dropout=0.0)
        cfg = TrainConfig(epochs=2, lr=1e-2, accumulation=accumulation, grad_clip=None, progress=False)
        Trainer(model, cfg, tmp_path / name).fit(data)
        results.append(model.state_dict())
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], rtol=1e-4, atol=1e-5, msg=key)


def test_sampler_order_depends_only_on_seed_and_epoch_and_starts_mid_epoch():
    a, b = EpochBatchSampler(10, 3, seed=1), EpochBatchSampler(10, 3, seed=1)
    a.set_epoch(2), b.set_epoch(2)
    assert list(a) == list(b) and len(a) == 3
    b.set_epoch(3)
    assert list(a) != list(b)
    full = list(a)
    a.set_start_batch(2)
    assert list(a) == full[2:] and len(a) == 3  # len stays the epoch's; iteration starts at batch 2
    ranks = [EpochBatchSampler(10, 2, seed=1, rank=r, world_size=2, drop_last=False) for r in range(2)]
    seen = [i for s in ranks for batch in s for i in batch]
    assert len(ranks[0]) == len(ranks[1]) and set(seen) == set(range(10))
    keyed = EpochBatchSampler(4, 4, keyed=True)
    keyed.set_epoch(7)
    assert all(e == 7 for e, _ in next(iter(keyed)))


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 1})
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")


# ---------------------------------------------------------------------------------------------- non-finite


def test_nan_loss_is_skipped_counted_and_training_continues(tmp_path):
    seed_everything(0)
    model = TinyDetector()
    data = [make_batch(i, poison=i == 3) for i in range(8)]
    result = Trainer(model, TrainConfig(epochs=1, lr=1e-3, progress=False), tmp_path).fit(data)
    assert result.nonfinite_steps == 1 and result.steps == 8
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["skipped"]) for r in rows] == [0, 0, 0, 1, 0, 0, 0, 0]
    opt_state = load_checkpoint(tmp_path / "last.pt")["optimizer"]["state"]
    assert {int(s["step"]) for s in opt_state.values()} == {7}


def test_persistent_nan_stops_with_a_clear_error(tmp_path):
    seed_everything(0)
    model = TinyDetector()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, max_consecutive_nonfinite=3, progress=False)
    with pytest.raises(NonFiniteLossError, match="3 consecutive.*max_consecutive_nonfinite"):
        Trainer(model, cfg, tmp_path).fit([make_batch(i, poison=True) for i in range(6)])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------- checkpoints


def test_best_checkpoint_is_chosen_on_validation(tmp_path):
    seed_everything(0)
    model = TinyDetector()
    scripted = iter([0.2, 0.9, 0.5])
    snapshots = []

    def validate(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"f1_per_image": next(scripted)}

    result = Trainer(model, TrainConfig(epochs=3, progress=False), tmp_path).fit(
        [make_batch(i) for i in range(3)], validate=validate)
    best = load_checkpoint(tmp_path / "best.pt")
    assert result.best["epoch"] == 2 and best["epoch"] == 2 and best["metrics"]["f1_per_image"] == 0.9
    assert all(torch.equal(best["model"][k], snapshots[1][k]) for k in best["model"])
    assert [r["best"] for r in csv.DictReader(open(tmp_path / "val.csv"))] == ["1", "1", "0"]


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    seed_everything(0)
    Trainer(TinyDetector(), TrainConfig(epochs=1, progress=False), tmp_path, meta={"fingerprint": "a"}).fit(
        [make_batch(0)])
    with pytest.raises(ValueError, match="another configuration"):
        Trainer(TinyDetector(), TrainConfig(epochs=2, progress=False), tmp_path, meta={"fingerprint": "b"}).fit(
            [make_batch(0)])


def _child(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE), *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    proc = _child(["run", str(killed), "--slow"])
    deadline = time.time() + 120
    while not (killed / "last.pt").exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(killed / "last.pt")
    assert ckpt["epoch"] == 0 and 0 < ckpt["position"] < ckpt["batches_per_epoch"], "expected a mid-epoch checkpoint"

    resumed = _child(["run", str(killed)])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out.decode()
    reference = tmp_path / "reference"
    run_training(reference)  # uninterrupted, in this process

    a, b = load_checkpoint(reference / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["step"] == b["step"] == 36
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["val_history"] == b["val_history"] and a["best"] == b["best"]
    for key in weights(reference / "best.pt"):
        assert torch.equal(weights(reference / "best.pt")[key], weights(killed / "best.pt")[key])
    logs = [list(csv.DictReader(open(p / "log.csv"))) for p in (reference, killed)]
    assert [r["step"] for r in logs[1]] == [str(s) for s in range(1, 37)]  # redone rows replaced, none doubled
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]


# ---------------------------------------------------------------------------------------------- DDP


def run_ddp_rank(out: Path) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    seed_everything(0)
    model = TinyDetector()
    if rank == 1:  # different initial weights on rank 1: DDP must broadcast rank 0's
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    sampler = EpochBatchSampler(16, 2, seed=3, keyed=True)
    own = EpochBatchSampler(16, 2, seed=3, rank=1, world_size=2)
    poison = {(0, next(iter(own))[0])} if rank == 1 else set()  # a NaN loss on rank 1 only, in its first batch
    loader = torch.utils.data.DataLoader(KeyedSamples(16, poison=poison), batch_sampler=sampler, collate_fn=collate)
    result = Trainer(model, TrainConfig(epochs=2, lr=1e-2, checkpoint_every=3, progress=False), out, device="cpu").fit(
        loader, validate=loss_validator([make_batch(50 + rank)]))
    torch.save({"model": model.state_dict(), "nonfinite": result.nonfinite_steps, "steps": result.steps},
               out / f"rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp_ends_with_identical_weights(tmp_path):
    port = str(_free_port())
    procs = [_child(["ddp", str(tmp_path)], RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=port) for r in range(2)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["steps"] == r1["steps"] == 8  # 16 samples / 2 ranks / batch 2 = 4 steps per epoch
    assert r0["nonfinite"] == r1["nonfinite"] == 1  # both ranks skipped the same step
    for key in r0["model"]:
        assert torch.equal(r0["model"][key], r1["model"][key]), key
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    assert len(load_checkpoint(tmp_path / "last.pt")["rng"]) == 2  # every rank's RNG state saved


# ---------------------------------------------------------------------------------------------- optional mmseg adapter


def test_mmseg_adapter_without_mmseg_names_the_extra_to_install():
    import importlib.util

    if importlib.util.find_spec("mmseg") is not None:
        pytest.skip("mmsegmentation is installed; the not-installed path does not apply")
    from detectors.mmseg import MmsegDetector, MmsegUnavailable

    with pytest.raises(MmsegUnavailable, match=r"mmcv-lite==2\.1\.0 mmsegmentation==1\.2\.2 ftfy regex.*torch 2\.14"):
        MmsegDetector({"type": "EncoderDecoder"})


def test_mmcv_ext_shim_raises_only_when_an_op_is_called():
    from detectors.mmseg import mmcv_ext_shim

    ext = mmcv_ext_shim()
    assert hasattr(ext, "deform_conv_forward")  # what mmcv's ext_loader checks at import time
    with pytest.raises(RuntimeError, match="'deform_conv_forward' is not available.*pure PyTorch"):
        ext.deform_conv_forward(1, 2)


def test_mmseg_segformer_b0_as_a_detector():
    pytest.importorskip("mmseg")
    from detectors.mmseg import MmsegDetector

    model = MmsegDetector({
        "type": "EncoderDecoder",
        "backbone": {"type": "MixVisionTransformer", "in_channels": 3, "embed_dims": 32, "num_stages": 4,
                     "num_layers": [2, 2, 2, 2], "num_heads": [1, 2, 5, 8], "patch_sizes": [7, 3, 3, 3],
                     "sr_ratios": [8, 4, 2, 1], "out_indices": (0, 1, 2, 3), "mlp_ratio": 4, "qkv_bias": True},
        "decode_head": {"type": "SegformerHead", "in_channels": [32, 64, 160, 256], "in_index": [0, 1, 2, 3],
                        "channels": 64, "num_classes": 2, "norm_cfg": {"type": "BN", "requires_grad": True}},
    })
    batch = make_batch(0, b=2, size=64)
    out = model(model.normalize(batch["image"]))
    assert out["mask_logits"].shape == (2, 1, 64, 64) and out["score_logits"] is None
    total, parts = model.loss(out, batch)
    total.backward()
    assert set(parts) == {"bce", "dice"}


if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode == "run":
        run_training(folder, slow=0.03 if "--slow" in sys.argv else 0.0)
    elif mode == "ddp":
        run_ddp_rank(folder)
        # gloo's background threads can abort the interpreter's teardown ("terminate called without an
        # active exception") after the work is done and saved; leave without running that teardown
        sys.stdout.flush()
        os._exit(0)
