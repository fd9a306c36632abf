"""IML-ViT and Mesorch specifics (the registry-driven contract checks live in test_zoo.py): tiny CPU inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from benchmarks.config import compose
from detectors import create_detector
from detectors.iml_vit import SimpleFeaturePyramid, window_partition, window_unpartition
from detectors.losses import edge_map
from detectors.mesorch import dct2, dct_matrix, dct_split, idct2, low_frequency_mask

SIZE = 64


@pytest.fixture(scope="module")
def imlvit():
    torch.manual_seed(0)
    return create_detector("iml_vit", variant="tiny")


@pytest.fixture(scope="module")
def mesorch():
    torch.manual_seed(0)
    return create_detector("mesorch", variant="tiny")


# ------------------------------------------------------------------------------------------------ IML-ViT

@pytest.mark.parametrize("hw,window", [((8, 8), 4), ((5, 7), 4), ((14, 14), 14), ((3, 3), 4)])
def test_window_partition_round_trip(hw, window):
    x = torch.randn(2, *hw, 6)
    windows, padded = window_partition(x, window)
    assert windows.shape[1:] == (window, window, 6)
    assert padded[0] % window == 0 and padded[1] % window == 0
    assert windows.shape[0] == 2 * (padded[0] // window) * (padded[1] // window)
    assert torch.equal(window_unpartition(windows, window, padded, hw), x)


def test_window_partition_keeps_neighbours_together():
    x = torch.arange(16.0).view(1, 4, 4, 1)
    windows, _ = window_partition(x, 2)
    assert windows[0, :, :, 0].tolist() == [[0.0, 1.0], [4.0, 5.0]]  # the top-left 2x2 block
    assert windows[1, :, :, 0].tolist() == [[2.0, 3.0], [6.0, 7.0]]


def test_sfp_gives_four_scales():
    sfp = SimpleFeaturePyramid(in_dim=32, out_channels=16)
    feats = sfp(torch.randn(2, 32, 4, 4))   # a stride-16 map of a 64 px image
    assert [tuple(f.shape) for f in feats] == [(2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4), (2, 16, 2, 2)]


def test_imlvit_blocks_follow_the_vitdet_layout(imlvit):
    windows = [blk.window for blk in imlvit.encoder.blocks]
    assert windows == [4, 4, 0, 4, 4, 0]                      # global attention in blocks 2 and 5
    assert imlvit.info.fixed_size == 256 and imlvit.info.input_size == 256


def _square_batch(valid_cols: int = SIZE) -> dict:
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., 20:44, 20:44] = 1
    valid = torch.zeros(1, 1, SIZE, SIZE, dtype=torch.bool)
    valid[..., :valid_cols] = True
    return {"mask": mask, "valid": valid, "label": torch.ones(1)}


def test_edge_errors_cost_more_than_errors_far_from_the_edge(imlvit):
    batch = _square_batch()
    perfect = (batch["mask"] * 2 - 1) * 8.0                       # confident and right everywhere
    band = edge_map(batch["mask"], imlvit.edge_width).bool()
    far = torch.zeros_like(band)
    far[..., 0:4, 0:5] = True                                     # 20 background pixels far from the square
    edge_px = band.flatten().nonzero().flatten()[: int(far.sum())]
    on_edge = perfect.clone().flatten()
    on_edge[edge_px] *= -1
    off_edge = perfect.clone()
    off_edge[far] *= -1
    loss_edge, parts_edge = imlvit.loss({"mask_logits": on_edge.view_as(perfect)}, batch)
    loss_far, parts_far = imlvit.loss({"mask_logits": off_edge}, batch)
    assert parts_edge["bce"] == pytest.approx(parts_far["bce"], rel=1e-4)   # same count of equal errors
    assert parts_far["edge_bce"] < 1e-3 < parts_edge["edge_bce"]
    assert float(loss_edge) > 5 * float(loss_far)


def test_edge_loss_ignores_invalid_pixels(imlvit):
    batch = _square_batch(valid_cols=40)
    logits = (batch["mask"] * 2 - 1) * 8.0
    wrong = logits.clone()
    wrong[..., 40:] *= -1                                         # errors, edge band included, only in padding
    assert float(imlvit.loss({"mask_logits": wrong}, batch)[0]) == pytest.approx(
        float(imlvit.loss({"mask_logits": logits}, batch)[0]), abs=1e-6)


def test_imlvit_forward_accepts_non_patch_multiples(imlvit):
    imlvit.eval()
    with torch.no_grad():
        out = imlvit(torch.randn(1, 3, 40, 72))
    assert out["mask_logits"].shape == (1, 1, 40, 72) and out["score_logits"] is None


def test_imlvit_loads_a_timm_vit_state_dict(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(1)
    state = timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()  # ViT-Ti: same width
    path = tmp_path / "vit_tiny.pth"
    torch.save(state, path)
    model = create_detector("iml_vit", variant="tiny", pretrained_path=str(path))
    own = model.encoder.state_dict()
    for i in range(len(model.encoder.blocks)):
        for name in ("norm1.weight", "attn.qkv.weight", "attn.proj.bias", "mlp.fc2.weight"):
            assert torch.equal(own[f"blocks.{i}.{name}"], state[f"blocks.{i}.{name}"]), (i, name)
    assert torch.equal(own["patch_embed.proj.weight"], state["patch_embed.proj.weight"])
    grid = model.encoder.grid                                     # 14x14 (+ class token) -> 16x16
    pos = state["pos_embed"][:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    pos = F.interpolate(pos, size=(grid, grid), mode="bicubic", align_corners=False)
    assert torch.allclose(own["pos_embed"], pos.permute(0, 2, 3, 1).reshape(1, grid * grid, -1), atol=1e-6)
    assert "ViT encoder from" in model.info.weights

    bad = tmp_path / "bad.pth"
    torch.save({"patch_embed.proj.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="timm-format ViT"):
        create_detector("iml_vit", variant="tiny", pretrained_path=str(bad))


# ------------------------------------------------------------------------------------------------ Mesorch

def test_dct_matrix_is_orthonormal():
    d = dct_matrix(16)
    assert torch.allclose(d @ d.t(), torch.eye(16), atol=1e-6)


def test_dct_split_is_invertible_and_matches_the_masked_transform():
    x = torch.randn(2, 3, SIZE, 48) * 2
    low, high = dct_split(x, alpha=0.05)
    assert torch.allclose(low + high, x, atol=1e-5)
    assert torch.allclose(idct2(dct2(x)), x, atol=1e-5)
    mask = low_frequency_mask(SIZE, 48, 0.05)
    assert int(mask.sum()) == 3 * 2                               # int(0.05 * 64) x int(0.05 * 48)
    assert torch.allclose(low, idct2(dct2(x) * mask), atol=1e-5)
    assert torch.allclose(high, idct2(dct2(x) * (1 - mask)), atol=1e-5)
    # the low part is smooth: its high-frequency coefficients vanish, and vice versa
    assert float((dct2(low) * (1 - mask)).abs().max()) < 1e-4
    assert float((dct2(high) * mask).abs().max()) < 1e-4


def test_gate_weights_are_a_softmax_over_scales(mesorch):
    mesorch.eval()
    with torch.no_grad():
        out = mesorch(torch.randn(2, 3, SIZE, SIZE))
    w, maps = out["gate_weights"], out["scale_logits"]
    assert w.shape == maps.shape == (2, 8, SIZE // 4, SIZE // 4)
    assert float(w.min()) >= 0 and torch.allclose(w.sum(1), torch.ones(2, SIZE // 4, SIZE // 4), atol=1e-5)
    fused = F.interpolate((w * maps).sum(1, keepdim=True), size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    assert torch.allclose(out["mask_logits"], fused, atol=1e-5)


def test_mesorch_loss_is_bce_over_valid_pixels(mesorch):
    from detectors.losses import bce

    batch = {"mask": torch.zeros(2, 1, SIZE, SIZE), "valid": torch.ones(2, 1, SIZE, SIZE, dtype=torch.bool),
             "label": torch.zeros(2)}
    logits = torch.randn(2, 1, SIZE, SIZE)
    total, parts = mesorch.loss({"mask_logits": logits}, batch)
    assert set(parts) == {"bce"} and float(total) == pytest.approx(float(bce(logits, batch)))


def test_mesorch_cnn_branch_loads_efficientnet_lite0(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(2)
    state = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    path = tmp_path / "tf_efficientnet_lite0.pth"
    torch.save(state, path)
    model = create_detector("mesorch", variant="tiny", pretrained_path=str(path))
    own = model.cnn.body.state_dict()
    assert own, "empty CNN branch"
    for name, tensor in own.items():
        if name == "conv_stem.weight":                            # widened: RGB kept, the 3 extra channels zero
            assert tensor.shape[1] == 6
            assert torch.equal(tensor[:, :3], state[name]) and not tensor[:, 3:].any()
        else:
            assert torch.equal(tensor, state[name]), name
    assert str(path) in model.info.weights and model.info.mean == (0.5, 0.5, 0.5)
    batch = torch.randn(2, 3, SIZE, SIZE)
    assert model(batch)["mask_logits"].shape == (2, 1, SIZE, SIZE)


# --------------------------------------------------------------------------------------- paper, configs

def test_paper_variants_construct_with_the_published_geometry():
    torch.manual_seed(0)
    vit = create_detector("iml_vit", variant="paper", fixed_size=224)   # a small square keeps memory low
    assert vit.info.variant == "paper" and vit.info.fixed_size == 224
    assert len(vit.encoder.blocks) == 12 and vit.encoder.pos_embed.shape[-1] == 768
    assert [i for i, blk in enumerate(vit.encoder.blocks) if blk.window == 0] == [2, 5, 8, 11]
    assert {blk.window for blk in vit.encoder.blocks if blk.window} == {14}
    assert vit.head.pred.in_channels == 256
    del vit

    meso = create_detector("mesorch", variant="paper")
    assert meso.info.input_size == 512 and meso.info.variant == "paper"
    assert meso.cnn.channels == [96, 192, 384, 768] and meso.mit.channels == [64, 128, 320, 512]
    stages = [getattr(meso.mit.body, f"stages_{i}") for i in range(4)]
    assert [len(stage.blocks) for stage in stages] == [3, 4, 18, 3]    # MiT-B3 depths
    assert meso.gate.stem.out_channels == 192
    assert [m.in_channels for m in meso.heads[3].up] == [768, 384, 192]  # widths halve along the branch


@pytest.mark.parametrize("name", ["iml_vit", "mesorch"])
def test_config_builds_the_detector(name):
    from benchmarks.builders import detector_params

    dcfg = compose([f"detector={name}", "profile=cpu-quick"]).detector
    cfg = OmegaConf.to_container(dcfg, resolve=True)
    # cpu-quick asks for the offline ImageNet EfficientNet-Lite0 where the family has an ImageNet CNN encoder
    assert cfg["variant"] == "tiny" and cfg["pretrained_path"] == ("offline-efficientnet-lite0" if name == "mesorch" else None)
    model = create_detector(cfg["name"], **detector_params(dcfg))
    assert model.info.name == name
    paper = OmegaConf.to_container(compose([f"detector={name}", "profile=gpu-paper"]).detector, resolve=True)
    assert paper["variant"] == "paper"


@pytest.mark.parametrize("name", ["iml_vit", "mesorch"])
def test_unknown_option_and_variant_raise_with_the_known_ones(name):
    with pytest.raises(ValueError, match="known"):
        create_detector(name, no_such_option=1)
    with pytest.raises(ValueError, match="choose one of"):
        create_detector(name, variant="huge")
