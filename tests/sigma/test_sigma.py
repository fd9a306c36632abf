"""SIGMA's parts: heads for every ablation switch, losses, round trips, exact resume, checkpoints."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from benchmarks.config import compose
from benchmarks.sigma_training.stages import VARIANTS
from sigma.annotator import load_checkpoint, save_checkpoint
from sigma.losses import bce_dice, disentangle_loss, prior_loss, pseudo_labels
from sigma.model import BiCrossAttention, SigmaConfig, SigmaNet
from sigma.roundtrip import StandInAE, editor_roundtrip
from sigma.text import mirror_instruction
from sigma.train import SigmaTrainer, Stage2Config, StageConfig

CONFIGS = {
    "full": SigmaConfig(),
    "no_text": SigmaConfig(use_text=False, refinement="none"),
    "film": SigmaConfig(refinement="film"),
    "grounding_only": SigmaConfig(difference=False),
    "fullres": SigmaConfig(fullres=True),
    **{f"variant {name}": SigmaConfig(**spec["model"]) for name, spec in VARIANTS.items() if "model" in spec},
}


def feats(b: int = 2, size: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(24, size // 4), (40, size // 8), (112, size // 16)]
    fo = [torch.randn(b, c, s, s, generator=g) for c, s in shapes]
    fe = [f + 0.3 * torch.randn(f.shape, generator=g) for f in fo]
    return fo, fe


class FakeText(torch.nn.Module):
    """Deterministic stand-in for the text encoder (keeps these tests free of the 90 MB model)."""

    dim = 384

    def forward(self, texts, device=None):
        length = max(1, max(len(t.split()) for t in texts))
        tokens = torch.zeros(len(texts), length, self.dim)
        valid = torch.zeros(len(texts), length, dtype=torch.bool)
        for i, t in enumerate(texts):
            for j, word in enumerate(t.split()):
                g = torch.Generator().manual_seed(sum(map(ord, word)))
                tokens[i, j] = torch.randn(self.dim, generator=g)
                valid[i, j] = True
        return tokens, valid


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_heads_forward_backward_every_switch(name):
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    net = SigmaNet(cfg)
    fo, fe = feats()
    tokens, valid = FakeText()(["remove the red thing in the top left", ""])
    images = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    out = net(fo if cfg.difference else None, fe, tokens if cfg.use_text else None, valid if cfg.use_text else None,
              *images, out_size=(64, 64))
    assert out["mask_logits"].shape == (2, 1, 64, 64) and torch.isfinite(out["mask_logits"]).all()
    assert (out["prior_logits"] is None) == (not cfg.use_text)
    assert out["embed"].shape == (2, cfg.embed_dim, 8, 8)
    out["mask_logits"].mean().backward()
    # every parameter reaches the mask, except the embedding head, which only the disentanglement loss reads
    unused = [n for n, p in net.named_parameters() if p.grad is None and not n.startswith("embed.")]
    assert not unused, unused


def test_bidirectional_attention_shares_logits_and_ignores_padding_words():
    torch.manual_seed(0)
    block = BiCrossAttention(16, 2, 1.0, update_text=True)
    x, t = torch.randn(1, 5, 16), torch.randn(1, 3, 16)
    valid = torch.tensor([[True, True, False]])
    x1, t1 = block(x, t, valid)
    t_changed = t.clone()
    t_changed[0, 2] += 10.0  # a padding word: image tokens must not see it
    x2, _ = block(x, t_changed, valid)
    assert torch.allclose(x1, x2, atol=1e-6)
    assert not torch.allclose(t1, t)  # text tokens were refined by the image


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="refinement"):
        SigmaConfig(refinement="sideways")
    with pytest.raises(ValueError, match="grounding_only"):
        SigmaConfig(difference=False, use_text=False)
    with pytest.raises(ValueError, match="unknown key"):
        SigmaConfig.from_dict({"widthz": 3})


def test_mirror_instruction_swaps_sides_only():
    assert mirror_instruction("move it from the left to the top-right corner, not bright") == \
        "move it from the right to the top-left corner, not bright"


def test_losses():
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:10, 4:10] = 1
    good, bad = (target * 20 - 10), -(target * 20 - 10)
    assert bce_dice(good, target) < 0.1 < bce_dice(bad, target)
    # a zero weight removes a pixel from the loss
    weight = torch.ones_like(target)
    weight[:, :, 4:10, 4:10] = 0
    assert bce_dice(bad, target, weight) < bce_dice(bad, target)
    prior = torch.zeros(2, 1, 4, 4)
    assert torch.isfinite(prior_loss(prior, target, torch.tensor([True, False])))
    t, w = pseudo_labels(torch.tensor([0.1, 0.5, 0.9]), 0.8, 0.2)
    assert t.tolist() == [0, 0, 1] and w.tolist() == [1, 0, 1]


def test_disentangle_loss_rewards_separated_embeddings():
    edit = torch.zeros(1, 1, 4, 4)
    edit[:, :, :2] = 1
    noise = 1 - edit
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    separated = torch.where(edit.bool(), a.view(1, 2, 1, 1), b.view(1, 2, 1, 1))
    mixed = torch.nn.functional.normalize(separated + torch.tensor([0.9, 0.9]).view(1, 2, 1, 1), dim=1)
    assert disentangle_loss(separated, edit, noise) < disentangle_loss(mixed, edit, noise)


def test_standin_autoencoder_and_editor_roundtrip():
    ae = StandInAE()
    x = torch.rand(2, 3, 37, 45)
    assert ae.roundtrip(x).shape == x.shape
    y = editor_roundtrip(x, lambda im: im, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    assert (y - x).abs().mean() > 0.001  # resampling + JPEG touch the pixels even with a perfect autoencoder


def _batches(seed: int = 0):
    def at(step: int):
        g = torch.Generator().manual_seed(seed * 1000 + step)
        fo, fe = feats(b=2, seed=seed * 1000 + step)
        mask = (torch.rand(2, 1, 64, 64, generator=g) > 0.7).float()
        images = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
        return {"feats_o": fo, "feats_e": fe, "original": images[0], "edited": images[1], "mask": mask, "intended": mask,
                "instruction": ["remove the thing on the left", "add a red patch at the top"],
                "roundtrip": torch.tensor([True, False])}
    return at


def _trainer(tmp, seed=0):
    torch.manual_seed(seed)
    return SigmaTrainer(SigmaNet(SigmaConfig()), FakeText(), torch.device("cpu"), tmp, seed=seed, progress=False)


def test_stage_training_resumes_exactly(tmp_path):
    s1 = StageConfig(steps=6, warmup=2, checkpoint_every=2)
    s2 = Stage2Config(steps=4, warmup=1, checkpoint_every=2, self_training_start=0.3)
    ref = _trainer(tmp_path / "ref")
    ref.stage1(s1, _batches())
    ref.stage2(s2, _batches(1), _batches(2))

    class Crash(Exception):
        pass

    def crashing(step):
        if step == 3:
            raise Crash
        return _batches(1)(step)

    first = _trainer(tmp_path / "cut")
    first.stage1(s1, _batches())
    with pytest.raises(Crash):
        first.stage2(s2, crashing, _batches(2))
    again = _trainer(tmp_path / "cut", seed=0)
    again.stage1(s1, _batches())          # finished stage: resumes at its end, no new steps
    again.stage2(s2, _batches(1), _batches(2))
    for (name, a), b in zip(ref.net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(next(iter(ref.teacher.parameters())), next(iter(again.teacher.parameters())))


def test_stage2_needs_the_corpus_for_self_training(tmp_path):
    with pytest.raises(ValueError, match="corpus"):
        _trainer(tmp_path).stage2(Stage2Config(steps=1), _batches(), None)


def test_checkpoint_round_trip_and_config_check(tmp_path):
    net = SigmaNet(SigmaConfig())
    path = save_checkpoint(tmp_path / "s.pt", net, {"note": 1})
    loaded, meta = load_checkpoint(path, SigmaConfig())
    assert meta == {"note": 1}
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(ValueError, match="another SIGMA config"):
        load_checkpoint(path, dataclasses.replace(SigmaConfig(), widths=(8, 16, 32)))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a SIGMA heads checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_export_keeps_the_record_of_identical_weights(tmp_path):
    """Re-running a finished training re-exports the same heads: the file (its hash) and sidecar stay."""
    from omegaconf import OmegaConf

    from benchmarks.sigma_training.export import export

    cfg = OmegaConf.create({"sigma": {"backbone_path": None, "text_encoder_path": None}, "profile": {"name": "t"}})
    torch.manual_seed(0)
    net = SigmaNet(SigmaConfig())
    path = tmp_path / "sigma.pt"
    export(net, cfg, {"stage1": {"seconds": 12.5}}, path, {})
    before = (path.read_bytes(), path.with_suffix(".json").read_text())
    export(net, cfg, {"stage1": {"seconds": 0.0}}, path, {})  # resumed at its last step: no work, same weights
    assert (path.read_bytes(), path.with_suffix(".json").read_text()) == before
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    export(net, cfg, {"stage1": {"seconds": 3.0}}, path, {})  # other weights: a new export
    assert '"seconds": 3.0' in path.with_suffix(".json").read_text()


def test_training_folder_depends_on_training_inputs_not_on_the_export_path(tmp_path):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from benchmarks.sigma_training.stages import work_dir

    data = SimpleNamespace(info={"cache_key": "bank-1"})

    def cfg(**sigma):
        return OmegaConf.create({"paths": {"home": str(tmp_path)},
                                 "sigma": {"seed": 0, "export": "results/sigma/cpu-quick/sigma.pt", **sigma}})

    assert work_dir(cfg(), data) == work_dir(cfg(export="/elsewhere/sigma.pt"), data)
    assert work_dir(cfg(), data) != work_dir(cfg(seed=1), data)
    assert work_dir(cfg(), data) != work_dir(cfg(), SimpleNamespace(info={"cache_key": "bank-2"}))
    assert work_dir(cfg(), data, "grounding_only").parent.parent == work_dir(cfg(), data)
    # how pairs are delivered (sigma.data) is not a training input: folders of configs without it stay
    assert work_dir(cfg(), data) == work_dir(cfg(data={"source": "bank", "workers": 7}), data)


def test_a_stage_ii_ablation_trains_the_full_models_stage_i_first_when_the_home_has_none(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from benchmarks.sigma_training import stages

    data = SimpleNamespace(info={"cache_key": "bank-1"})
    cfg = OmegaConf.create({"paths": {"home": str(tmp_path)}, "sigma": {"seed": 0}})
    calls = []

    def fake_train(cfg, data, work, **kw):
        calls.append((work, kw))
        if not kw.get("run_stage2", True):  # Stage I only: leave its checkpoint where the full model keeps it
            work.mkdir(parents=True, exist_ok=True)
            (work / "stage1_last.pt").write_bytes(b"stage 1")
        return None, {}

    monkeypatch.setattr(stages, "train", fake_train)
    full = stages.work_dir(cfg, data)
    stages.train_variant(cfg, data, "Stage II without EMA self-training", torch.device("cpu"))
    assert [(work, kw.get("run_stage2"), kw.get("stage1_from")) for work, kw in calls] == [
        (full, False, None), (full / "variants" / "stage_ii_without_ema_self_training", True, full / "stage1_last.pt")]
    calls.clear()  # with the full model's Stage I there, it is reused, never trained again
    stages.train_variant(cfg, data, "Stage II without disentanglement loss", torch.device("cpu"))
    assert [kw.get("stage1_from") for _, kw in calls] == [full / "stage1_last.pt"]


def test_the_data_node_stays_out_of_the_exported_record(tmp_path):
    from omegaconf import OmegaConf

    from benchmarks.sigma_training.export import export

    cfg = OmegaConf.create({"sigma": {"backbone_path": None, "text_encoder_path": None, "seed": 0,
                                      "data": {"source": "bank"}}, "profile": {"name": "t"}})
    path = export(SigmaNet(SigmaConfig()), cfg, {}, tmp_path / "sigma.pt", {})
    assert "data" not in json.loads(path.with_suffix(".json").read_text())["config"]


def test_randomized_calibration_round_trip_is_seeded_and_varies_per_sample():
    from sigma.roundtrip import editor_roundtrip

    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(6, 3, 8, 8), size=(48, 48), mode="bilinear")  # smooth images

    def run(seed: int, **kw):
        return editor_roundtrip(x, lambda t: t, torch.Generator().manual_seed(seed), 0.5, (80, 95), 0.03, **kw)

    plain, varied = run(1), run(1, randomize=1.0, warp=1.5)
    assert torch.equal(varied, run(1, randomize=1.0, warp=1.5)) and not torch.equal(varied, plain)
    err_plain = (plain - x).abs().mean(dim=(1, 2, 3))
    err_varied = (varied - x).abs().mean(dim=(1, 2, 3))
    assert err_varied.mean() > err_plain.mean() and err_varied.std() > err_plain.std()


def test_ablation_report_averages_each_column_group_over_its_own_sets(tmp_path):
    from omegaconf import OmegaConf

    from benchmarks.sigma_training.ablations import write_report

    def res(f1: float) -> dict:
        return {f"{k}/{m}": f1 for k in ("all", "no_side_effect", "side_effect") for m in ("f1_per_image", "iou_per_image")}

    names = ["synth_removal", "synth_splice", "synth_val", "synth_general_removal", "synth_general_splice"]
    table = {"sigma (full)": {"synth_removal": res(0.6), "synth_splice": res(0.8), "synth_val": res(0.5),
                              "synth_general_removal": res(0.2), "synth_general_splice": res(0.4)}}
    cfg = OmegaConf.create({"paths": {"results": str(tmp_path), "root": str(tmp_path), "home": str(tmp_path)},
                            "profile": {"name": "cpu-quick"}, "device": "cpu"})
    md = write_report(cfg, table, names, {}, 1.0, {}).read_text()
    assert "| synth_removal F1 | synth_splice F1 | **mean F1** | **mean IoU** | val F1 | general F1 |" in md
    assert "| sigma (full) | 0.600 | 0.800 | **0.700** | **0.700** | 0.500 | 0.300 |" in md


def test_ablation_rows_are_picked_by_name_or_slug_in_the_table_order():
    from benchmarks.sigma_training.ablations import ROWS, pick_rows

    assert pick_rows(None) == list(ROWS) and ROWS[0] == "sigma (full)"
    assert pick_rows(["pixel_diff", "no_text_prior", "sigma (full)"]) == ["sigma (full)", "no text prior", "pixel_diff"]
    assert "difference reference (no text)" in pick_rows(["difference_reference__no_text"])
    with pytest.raises(ValueError, match="unknown"):
        pick_rows(["no_such_row"])


def test_baseline_rows_are_scored_without_building_the_training_bank(tmp_path, sigma_overrides, training_sets,
                                                                     pairs_writer, monkeypatch):
    """A training-free row needs no training data: its cell carries the bank's key (from the inputs' hashes)
    without the bank being built, and the report names the data the learned rows were trained on."""
    from benchmarks.sigma_training import ablations
    from benchmarks.sigma_training.data import bank_key

    tests = pairs_writer(tmp_path / "test", 6, seed=2)
    monkeypatch.setattr(ablations, "pair_datasets", lambda cfg, names, overrides: [
        (n, tests) for n in (["synth_removal"] if names == "all" else names.split(","))])
    monkeypatch.setattr(ablations, "prepare_data", lambda *a, **k: pytest.fail("the bank was built for a baseline row"))
    overrides = sigma_overrides(*training_sets, tmp_path / "home")
    cfg = compose(overrides, command="train-sigma")
    key = bank_key(cfg)[0]
    md = ablations.run_ablations(cfg, overrides, ["pixel_diff"]).read_text()
    cell = json.loads(ablations.cell_path(cfg, "pixel_diff").read_text())
    assert cell["key"]["data"] == key and "| pixel_diff |" in md
    assert f'Training data: {{"cache_key": "{key}"}}' in md
    ablations.training_data_path(cfg).write_text(json.dumps({"key": key, "info": {"cache_key": key, "pairs_stage1": 24}}))
    md = ablations.run_ablations(cfg, overrides, ["pixel_diff"]).read_text()  # the cell is reused, the facts read back
    assert '"pairs_stage1": 24' in md
