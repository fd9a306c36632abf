"""SegFormer and TruFor specifics beyond the shared zoo tests: MiT faithfulness, decoder resolution,
confidence-weighted pooling, noise extractor, local weights and the paper geometries. Tiny inputs on CPU."""

from __future__ import annotations

import pytest
import torch

from detectors import create_detector
from detectors.mit import AllMLPDecoder, mit_encoder
from detectors.trufor import VARIANTS, NoiseExtractor, confidence_pooling, weighted_statistics

SIZE = 64


def _batch(b: int = 2, size: int = SIZE) -> dict:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(b, 1, size, size)
    mask[0, :, 8:30, 10:40] = 1
    valid = torch.ones(b, 1, size, size, dtype=torch.bool)
    valid[-1, :, :, -8:] = False
    return {"image": torch.rand(b, 3, size, size, generator=g), "mask": mask, "valid": valid,
            "label": (mask.flatten(1).amax(1) > 0).long()}


def test_mit_matches_smp_encoder_given_the_same_weights():
    smp = pytest.importorskip("segmentation_models_pytorch")
    ref = smp.encoders.get_encoder("mit_b0", weights=None).eval()
    ours = mit_encoder("mit_b0").eval()
    assert set(ref.state_dict()) == set(ours.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, got = ref(x)[2:], ours(x)  # smp prepends the input and an empty stride-2 map
    for i, (e, o) in enumerate(zip(expected, got)):
        assert o.shape == e.shape and o.shape[-2:] == (64 // 2 ** (i + 2), 96 // 2 ** (i + 2))
        torch.testing.assert_close(o, e, atol=1e-4, rtol=1e-4)


def test_decoder_predicts_at_quarter_resolution_and_models_upsample():
    enc = mit_encoder("mit_b0").eval()
    dec = AllMLPDecoder(enc.out_channels, 64).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert dec(enc(x)).shape == (2, 1, 16, 24)
        for name in ("segformer", "trufor"):
            model = create_detector(name, variant="tiny").eval()
            out = model(x)
            assert out["mask_logits"].shape == (2, 1, 64, 96), name
    assert out["conf_logits"].shape == (2, 1, 64, 96)


def test_noise_extractor_gives_a_three_channel_residual_at_input_size():
    net = NoiseExtractor(layers=5, width=16)
    assert net(torch.rand(2, 3, SIZE, 48)).shape == (2, 3, SIZE, 48)
    paper = VARIANTS["paper"]
    convs = [m for m in NoiseExtractor(paper["noise_layers"], paper["noise_width"]).modules()
             if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 17 and convs[1].out_channels == 64  # DnCNN depth and width of Noiseprint++


def test_confidence_weighted_pooling_follows_the_confident_region():
    anomaly = torch.full((1, 1, 32, 32), -4.0)
    anomaly[..., :, :16] = 4.0  # left half looks forged, right half pristine
    conf_left, conf_right = torch.full_like(anomaly, -8.0), torch.full_like(anomaly, -8.0)
    conf_left[..., :, :16] = 8.0
    conf_right[..., :, 16:] = 8.0
    left, right = confidence_pooling(anomaly, conf_left), confidence_pooling(anomaly, conf_right)
    assert left.shape == (1, 8)
    # anomaly statistics are features 4..7: soft min, soft max, weighted mean, weighted mean square
    assert float(left[0, 6]) > 3.9 and float(right[0, 6]) < -3.9
    assert float(left[0, 5]) > float(right[0, 5]) + 7  # the soft max ignores unconfident pixels
    uniform = weighted_statistics(anomaly)
    assert abs(float(uniform[0, 2])) < 1e-5  # no confidence: plain mean of +4 and -4 halves


def test_trufor_staged_gradients_keep_the_phase_split():
    torch.manual_seed(0)
    model = create_detector("trufor", variant="tiny").train()
    batch = _batch()
    out = model(model.normalize(batch["image"]))
    _, parts = model.loss(out, batch)
    assert set(parts) == {"wbce", "dice", "loc", "conf", "det"}
    phase3 = ((torch.sigmoid(out["conf_logits"]) - 0.5) ** 2).mean() + out["score_logits"].sum()
    phase3.backward()
    assert all(p.grad is None for p in model.encoder.parameters())  # encoder frozen for conf / det
    assert all(p.grad is None for p in model.noise_extractor.parameters())
    assert any(p.grad is not None for p in model.conf_decoder.parameters())
    assert any(p.grad is not None for p in model.detector.parameters())


def test_trufor_loss_ignores_invalid_pixels_and_accepts_both_conf_targets():
    batch = _batch()
    other = dict(batch, mask=batch["mask"].clone())
    other["mask"][-1, :, :, -8:] = 1  # differs only where valid is False
    for target in ("tcp", "hard"):
        torch.manual_seed(0)
        model = create_detector("trufor", variant="tiny", conf_target=target).eval()
        with torch.no_grad():
            out = model(model.normalize(batch["image"]))
            assert model.loss(out, batch)[1] == model.loss(out, other)[1]
    with pytest.raises(ValueError, match="conf_target"):
        create_detector("trufor", variant="tiny", conf_target="soft")


@pytest.mark.parametrize("name,streams", [("segformer", ("encoder",)), ("trufor", ("encoder.rgb", "encoder.noise"))])
def test_pretrained_path_round_trip(tmp_path, name, streams):
    torch.manual_seed(1)
    source = create_detector(name, variant="tiny")
    state = source.get_submodule(streams[0]).state_dict()
    path = tmp_path / "mit_b0.pth"
    torch.save({**state, "head.weight": torch.zeros(1000, 256)}, path)  # extra classifier keys are ignored
    torch.manual_seed(2)
    fresh = create_detector(name, variant="tiny", pretrained_path=str(path))
    assert str(path) in fresh.info.weights
    for stream in streams:
        loaded = fresh.get_submodule(stream).state_dict()
        assert set(loaded) == set(state)
        assert all(torch.equal(loaded[k], state[k]) for k in state), stream
    assert create_detector(name, variant="tiny").info.weights == "random init"
    with pytest.raises(ValueError, match="mit_b0.pth"):  # a B0 file does not fit the B2 paper geometry
        create_detector(name, variant="paper", pretrained_path=str(path))


@pytest.mark.parametrize("name,low,high", [("segformer", 20e6, 35e6), ("trufor", 55e6, 85e6)])
def test_paper_variants_construct_and_run(name, low, high):
    model = create_detector(name, variant="paper").eval()
    assert model.info.variant == "paper" and model.info.input_size == 512 and model.info.stride == 32
    assert low < sum(p.numel() for p in model.parameters()) < high
    with torch.no_grad():
        out = model(torch.randn(1, 3, SIZE, SIZE))
    assert out["mask_logits"].shape == (1, 1, SIZE, SIZE)


def test_unknown_variant_names_the_known_ones():
    for name in ("segformer", "trufor"):
        with pytest.raises(ValueError, match="paper"):
            create_detector(name, variant="huge")
