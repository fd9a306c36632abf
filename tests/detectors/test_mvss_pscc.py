"""Family-specific checks for MVSS-Net and PSCC-Net (the shared zoo tests cover forward/backward/predict)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detectors import create_detector
from detectors.losses import edge_map
from detectors.mvss_net import BayarConv2d

SIZE = 64


def _batch(size: int = SIZE) -> dict:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(2, 1, size, size)
    mask[0, :, 8:30, 10:40] = 1
    valid = torch.ones(2, 1, size, size, dtype=torch.bool)
    valid[-1, :, :, -8:] = False
    return {"image": torch.rand(2, 3, size, size, generator=g), "mask": mask, "valid": valid,
            "label": torch.tensor([1, 0])}


def _check_bayar(conv: BayarConv2d) -> None:
    w = conv.weight.detach()
    k = conv.kernel_size
    centre = w[:, :, k // 2, k // 2]
    assert torch.allclose(centre, torch.full_like(centre, -1.0))
    others = w.flatten(2).sum(-1) - centre  # per (out, in) kernel
    assert torch.allclose(others, torch.ones_like(others), atol=1e-5)


def test_bayar_constraint_holds_after_optimizer_steps():
    torch.manual_seed(0)
    conv = BayarConv2d(1, 3, 5)
    _check_bayar(conv)
    opt = torch.optim.SGD(conv.parameters(), lr=0.5)
    x = torch.randn(2, 1, 16, 16)
    for _ in range(3):
        opt.zero_grad()
        conv(x).pow(2).mean().backward()
        opt.step()
    assert conv.free.grad is not None and conv.free.grad.abs().sum() > 0
    _check_bayar(conv)
    # a constrained (prediction-error) filter ignores constant images: taps sum to 0
    assert conv(torch.full((1, 1, 9, 9), 3.0))[..., 2:-2, 2:-2].abs().max() < 1e-4


def test_edge_target_lies_only_near_mask_boundaries():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 10:20] = 1
    edge = edge_map(mask)
    assert edge.sum() > 0
    # every edge pixel has both classes in its 3x3 neighbourhood (within one pixel of the boundary) ...
    has_fg = F.max_pool2d(mask, 3, 1, 1) > 0
    has_bg = F.max_pool2d(1 - mask, 3, 1, 1) > 0
    assert bool(((edge > 0) <= (has_fg & has_bg)).all())
    # ... the deep interior and the far background are empty, and so are masks without a boundary
    assert edge[..., 12:20, 13:17].sum() == 0 and edge[..., :5, :].sum() == 0
    assert edge_map(torch.zeros(1, 1, 8, 8)).sum() == 0 and edge_map(torch.ones(1, 1, 8, 8)).sum() == 0


def test_mvss_edge_loss_uses_the_boundary_and_respects_valid():
    torch.manual_seed(0)
    model = create_detector("mvss_net", variant="tiny").eval()
    batch = _batch()
    with torch.no_grad():
        out = model(model.normalize(batch["image"]))
    edge = edge_map(batch["mask"])
    perfect = dict(out, edge_logits=20 * (2 * edge - 1))
    _, parts = model.loss(perfect, batch)
    assert parts["edge_dice"] < 0.01
    # predictions on padding (valid False) never change the loss
    noisy = {k: v.clone() for k, v in out.items()}
    noisy["mask_logits"][~batch["valid"]] = 50.0
    noisy["edge_logits"][~batch["valid"]] = 50.0
    assert model.loss(noisy, batch)[0] == pytest.approx(float(model.loss(out, batch)[0]), abs=1e-6)


def test_tiny_mvss_loads_a_timm_efficientnet_lite0_state_dict(tmp_path):
    import timm

    torch.manual_seed(123)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    path = tmp_path / "tf_efficientnet_lite0.pth"
    torch.save(reference, path)
    torch.manual_seed(0)
    model = create_detector("mvss_net", variant="tiny", pretrained_path=str(path))
    for encoder in (model.rgb, model.noise):
        state = encoder.state_dict()
        assert state and all(torch.equal(state[k], reference[k]) for k in state)
    assert "EfficientNet-Lite0" in model.info.weights and model.info.mean == (0.5, 0.5, 0.5)
    assert create_detector("mvss_net", variant="tiny").info.weights == "random init"


def test_pscc_progressive_masks_at_four_scales_coarse_conditions_fine():
    torch.manual_seed(0)
    model = create_detector("pscc_net", variant="tiny").eval()
    batch = _batch()
    x = model.normalize(batch["image"])
    with torch.no_grad():
        out = model(x)
    shapes = [tuple(out[k].shape[-2:]) for k in ("mask_logits", "mask_logits_s2", "mask_logits_s4", "mask_logits_s8")]
    assert shapes == [(64, 64), (32, 32), (16, 16), (8, 8)]
    _, parts = model.loss(out, batch)
    assert {"bce_s1", "bce_s2", "bce_s4", "bce_s8", "det_bce"} <= set(parts)
    # the coarsest mask gates the finer branches: changing it changes the full-resolution mask
    with torch.no_grad():
        model.sccm[3].mask[-1].bias.fill_(-10.0)
        low = model(x)["mask_logits"]
        model.sccm[3].mask[-1].bias.fill_(10.0)
        high = model(x)["mask_logits"]
    assert not torch.allclose(low, high)


def test_pscc_loss_respects_valid_and_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = create_detector("pscc_net", variant="tiny").eval()
    batch = _batch()
    with torch.no_grad():
        out = model(model.normalize(batch["image"]))
    noisy = {k: v.clone() for k, v in out.items()}
    noisy["mask_logits"][~batch["valid"]] = 50.0
    assert model.loss(noisy, batch)[0] == pytest.approx(float(model.loss(out, batch)[0]), abs=1e-5)
    path = tmp_path / "pscc.pth"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    again = create_detector("pscc_net", variant="tiny", pretrained_path=str(path)).eval()
    with torch.no_grad():
        assert torch.equal(again(model.normalize(batch["image"]))["mask_logits"], out["mask_logits"])
    with pytest.raises(ValueError, match="pscc_net state dict"):
        create_detector("pscc_net", variant="paper", pretrained_path=str(path))


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["mvss_net", "pscc_net"])
def test_paper_variant_constructs_and_runs_small(name):
    torch.manual_seed(0)
    model = create_detector(name, variant="paper").eval()
    assert model.info.variant == "paper"
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out["mask_logits"].shape == (1, 1, 32, 32) and out["score_logits"].shape == (1,)


def test_pscc_batchnorm_momentum_follows_the_variant():
    """HRNet's slow 0.01 momentum only for the paper variant: tiny runs are too short for it."""
    from torch import nn

    from detectors import create_detector

    for variant, momentum in (("tiny", 0.1), ("paper", 0.01)):
        model = create_detector("pscc_net", variant=variant)
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert norms and {m.momentum for m in norms} == {momentum}
