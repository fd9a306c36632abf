"""Registry-driven checks of every detector (timm/smp-style shared tester): tiny inputs on CPU."""

from __future__ import annotations

import math

import pytest
import torch

from detectors import Detector, create_detector, list_detectors

SIZE = 64


def _batch(seed: int = 0, b: int = 2, size: int = SIZE, authentic: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 3, size, size, generator=g)
    mask = torch.zeros(b, 1, size, size)
    if not authentic:
        mask[0, :, 8:30, 10:40] = 1
    valid = torch.ones(b, 1, size, size, dtype=torch.bool)
    valid[-1, :, :, -8:] = False
    return {"image": image, "mask": mask, "valid": valid, "label": (mask.flatten(1).amax(1) > 0).long()}


def _build(name: str, seed: int = 0) -> Detector:
    torch.manual_seed(seed)
    return create_detector(name, variant="tiny")


NAMES = list_detectors()


def test_six_families_are_registered():
    assert set(NAMES) >= {"mvss_net", "trufor", "segformer", "pscc_net", "iml_vit", "mesorch"}, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_loss_backward(name):
    model = _build(name).train()
    batch = _batch()
    out = model(model.normalize(batch["image"]))
    assert out["mask_logits"].shape == (2, 1, SIZE, SIZE), name
    score = out["score_logits"]
    assert score is None or score.shape == (2,), name
    total, parts = model.loss(out, batch)
    assert total.ndim == 0 and math.isfinite(float(total)) and parts, name
    assert all(math.isfinite(float(v)) for v in parts.values()), (name, parts)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and sum(g is not None and bool(torch.isfinite(g).all()) for g in grads) >= 0.9 * len(grads), name


@pytest.mark.parametrize("name", NAMES)
def test_all_authentic_batch_has_a_finite_loss(name):
    model = _build(name).train()
    batch = _batch(authentic=True)
    total, _ = model.loss(model(model.normalize(batch["image"])), batch)
    assert math.isfinite(float(total))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(name):
    batch = _batch(1)
    a, b = _build(name, seed=3).eval(), _build(name, seed=3).eval()
    with torch.no_grad():
        out_a, out_b = a(a.normalize(batch["image"])), b(b.normalize(batch["image"]))
    assert torch.equal(out_a["mask_logits"], out_b["mask_logits"]), name


@pytest.mark.parametrize("name", NAMES)
def test_predict_handles_any_size_and_returns_probabilities(name):
    model = _build(name).eval()
    image = torch.rand(1, 3, 50, 70)
    out = model.predict(image)
    assert out["mask"].shape == (1, 1, 50, 70)
    assert float(out["mask"].min()) >= 0 and float(out["mask"].max()) <= 1
    assert out["score"] is None or out["score"].shape == (1,)


@pytest.mark.parametrize("name", NAMES)
def test_info_is_complete(name):
    info = _build(name).info
    assert info.name == name and info.paper and info.family and info.variant == "tiny"


def test_unknown_detector_lists_the_known_ones():
    with pytest.raises(ValueError, match="registered detectors"):
        create_detector("no_such_detector")


@pytest.mark.parametrize("name", ["segformer", "iml_vit", "mesorch"])
def test_optional_dice_term_adds_to_the_native_loss(name):
    batch = _batch()
    torch.manual_seed(0)
    plain = create_detector(name, variant="tiny").train()
    torch.manual_seed(0)
    with_dice = create_detector(name, variant="tiny", dice_weight=1.0).train()
    x = plain.normalize(batch["image"])
    torch.manual_seed(1)
    out = plain(x)
    torch.manual_seed(1)
    out_d = with_dice(x)
    total, parts = plain.loss(out, batch)
    total_d, parts_d = with_dice.loss(out_d, batch)
    assert "dice" not in parts and 0.0 < parts_d["dice"] <= 1.0
    assert float(total_d) == pytest.approx(float(total) + parts_d["dice"], rel=1e-5)


@pytest.mark.parametrize("name", ["segformer", "iml_vit", "mesorch"])
def test_pos_weight_scales_the_bce_of_forged_pixels_only(name):
    """``pos_weight`` w multiplies the BCE of forged pixels by w: on an all-forged batch the BCE parts grow w-fold,
    on an all-authentic one they do not change (the 0.5 boundary moves to a true probability of 1 / (1 + w))."""
    torch.manual_seed(0)
    model = create_detector(name, variant="tiny").eval()
    with torch.no_grad():
        out = model(model.normalize(_batch()["image"]))
    for fill, factor in ((1.0, 5.0), (0.0, 1.0)):
        batch = {**_batch(), "mask": torch.full_like(_batch()["mask"], fill)}
        plain = model.loss(out, batch)[1]
        model.pos_weight = 5.0
        weighted = model.loss(out, batch)[1]
        model.pos_weight = 1.0
        for key in ("bce", "edge_bce"):
            if key in plain:
                assert weighted[key] == pytest.approx(factor * plain[key], rel=1e-4), (key, fill)


@pytest.mark.parametrize("name,names", [("mvss_net", "bad.pth"), ("mesorch", "tf_efficientnet_lite0")])
def test_a_weights_file_of_another_architecture_is_refused(tmp_path, name, names):
    """The offline CNN weights are checked tensor by tensor: the error names the file or what it should be."""
    bad = tmp_path / "bad.pth"
    torch.save({"conv_stem.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match=names):
        create_detector(name, variant="tiny", pretrained_path=str(bad))
