"""Registration and the aligned baselines (aligned_diff, aligned_semantic), on images built here."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.generators.aligned import AlignedDiff, AlignedSemantic
from benchmarks.generators.base import create_generator
from benchmarks.generators.registration import RegistrationConfig, apply, register, warp

GRID = np.array([[x, y] for x in np.linspace(16, 111, 6) for y in np.linspace(16, 111, 6)])


def texture(size: int = 128, seed: int = 0) -> np.ndarray:
    """A textured RGB float32 image in [0,1]: blurred noise at two scales plus a few solid discs."""
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 1.5)
    coarse = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 6.0)
    img = 0.6 * (fine - fine.mean()) / fine.std() * 0.15 + 0.4 * (coarse - coarse.mean()) / coarse.std() * 0.15 + 0.5
    for _ in range(6):
        cx, cy, r = rng.integers(10, size - 10, 2).tolist() + [int(rng.integers(4, 12))]
        cv2.circle(img, (cx, cy), r, rng.random(3).tolist(), -1)
    return np.clip(img, 0, 1).astype(np.float32)


def affine(size: int, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    m[:, 2] += shift
    return np.vstack([m, [0.0, 0.0, 1.0]])


def moved(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The image as an editor would hand it back: resampled through a known transform (original -> edited)."""
    h, w = image.shape[:2]
    return cv2.warpAffine(image, matrix[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def grid_error(estimate: np.ndarray, truth: np.ndarray, grid: np.ndarray = GRID) -> float:
    return float(np.linalg.norm(apply(estimate, grid) - apply(truth, grid), axis=1).max())


def as_batch(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("angle,scale,shift", [(0.0, 1.0, (0.4, -0.7)), (1.0, 1.0, (0.0, 0.0)),
                                               (-0.6, 1.006, (1.3, 0.45)), (0.15, 0.996, (-0.25, 0.6))])
@pytest.mark.parametrize("model", ["affine", "homography"])
def test_registration_recovers_a_known_shift_and_rotation(angle, scale, shift, model):
    image = texture()
    truth = affine(128, angle, scale, shift)
    reg = register(image, moved(image, truth), RegistrationConfig(model=model))
    if model == "affine":  # the default: the keypoint fit itself is good enough to be refined
        assert reg.method == "keypoints+ecc" and not reg.fallback and reg.inliers >= 15, reg
    else:  # ORB homographies on 128 px carry perspective noise (corners off by ~1 px): refused, ECC takes over
        assert reg.method in ("keypoints+ecc", "ecc"), reg
    assert grid_error(reg.matrix, truth) < 0.5, (reg.method, grid_error(reg.matrix, truth))


def test_warp_puts_the_original_on_the_edited_image():
    image = texture()
    truth = affine(128, 0.7, 1.0, (0.6, -0.3))
    edited = moved(image, truth)
    warped, valid = warp(image, register(image, edited).matrix, edited.shape[:2])
    assert valid[8:-8, 8:-8].all() and not valid.all()  # the uncovered border is flagged
    assert np.abs(warped - edited)[valid].mean() < 0.25 * np.abs(image - edited)[valid].mean()


def test_align_onto_warps_each_original_and_fills_the_uncovered_border_from_the_edited_image():
    from benchmarks.generators.aligned import align_onto
    from benchmarks.generators.registration import RegistrationLog

    image = texture()
    edited = moved(image, affine(128, 0.7, 1.0, (1.6, -1.3)))
    original, edited_t = as_batch(image, image), as_batch(edited, image)
    log = RegistrationLog("test")
    out = align_onto(original.double(), edited_t.double(), RegistrationConfig(), log)
    assert out.dtype == torch.float64 and out.shape == original.shape
    before, after = (original - edited_t).abs()[0].mean(), (out - edited_t).abs()[0].mean()
    assert after < 0.25 * before  # the moved pair is aligned
    assert torch.equal(out[1].float(), original[1])  # an aligned pair is left exactly as it is
    _, valid = warp(image, register(image, edited).matrix, edited.shape[:2])
    assert not valid.all() and torch.equal(out[0].permute(1, 2, 0)[torch.from_numpy(~valid)].float(),
                                           edited_t[0].permute(1, 2, 0)[torch.from_numpy(~valid)])
    assert log.as_dict()["pairs"] == 2


def test_a_pair_too_small_for_keypoints_falls_back_to_ecc_and_is_counted():
    image = texture(48, seed=3)
    truth = affine(48, 0.0, 1.0, (0.5, -0.4))
    edited = moved(image, truth)
    reg = register(image, edited)
    assert reg.fallback and reg.method == "ecc" and reg.reason in ("few_keypoints", "few_matches", "few_inliers")
    inner = np.array([[x, y] for x in (12, 24, 36) for y in (12, 24, 36)])
    assert grid_error(reg.matrix, truth, inner) < 0.5
    gen = create_generator("aligned_diff")
    out = gen.generate_scored(as_batch(image, image), as_batch(edited, edited))
    assert [d["registration"]["method"] for d in out.diagnostics] == ["ecc", "ecc"]
    assert gen.counters()["registration/fallback"] == 2 and gen.counters()["registration/method/ecc"] == 2


@pytest.mark.parametrize("size,reason", [(8, "too_small"), (64, "uniform")])
def test_tiny_or_uniform_pairs_keep_the_identity_and_are_counted(size, reason):
    if reason == "uniform":
        original, edited = np.full((size, size, 3), 0.4, np.float32), np.full((size, size, 3), 0.42, np.float32)
    else:
        original = texture(32)[:size, :size].copy()
        edited = original.copy()
    reg = register(original, edited)
    assert reg.method == "identity" and reg.reason == reason and reg.fallback
    gen = create_generator("aligned_diff")
    gen.generate(as_batch(original), as_batch(edited))
    assert gen.counters()[f"registration/fallback/{reason}"] == 1


def test_registration_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="resize the original"):
        register(texture(64), texture(48))


def test_implausible_keypoint_fits_are_refused():
    image = texture()
    far = affine(128, 40.0, 1.0, (0.0, 0.0))  # no editor round trip rotates by 40 degrees
    reg = register(image, moved(image, far))
    assert reg.fallback and reg.reason == "implausible_fit:displacement", reg


@pytest.mark.parametrize("name", ["aligned_diff", "aligned_semantic"])
def test_identical_images_give_an_empty_mask(name):
    image = as_batch(texture(), texture(seed=1))
    gen = create_generator(name)
    out = gen.generate_scored(image, image)
    assert float(out.mask.max()) < 0.5
    assert torch.allclose(out.quality, torch.ones(2))  # nothing marked, nothing near the threshold


def test_aligned_diff_marks_fewer_round_trip_pixels_than_pixel_diff():
    """Pairs whose only change is the simulated editor round trip (shift, resampling, texture, tone, JPEG)."""
    from benchmarks.synth.editor import RoundTripConfig, jpeg_roundtrip, round_trip
    from benchmarks.synth.photos import PhotoWorld, random_crop

    world = PhotoWorld()
    originals, editeds = [], []
    for i, name in enumerate(world.pools()["train"][:6]):  # train-pool photos: nothing here is a test image
        rng = np.random.default_rng([11, i])
        photo = random_crop(world.load(name), 256, rng)
        edited, quality = round_trip(photo, rng, RoundTripConfig())
        originals.append(photo.astype(np.float32) / 255)
        editeds.append(jpeg_roundtrip(edited, quality)[0].astype(np.float32) / 255)
    o, e = as_batch(*originals), as_batch(*editeds)
    aligned = float((create_generator("aligned_diff").generate(o, e) >= 0.5).float().mean())
    pixel = float((create_generator("pixel_diff").generate(o, e) >= 0.5).float().mean())
    assert aligned < 0.5 * pixel, (aligned, pixel)


def test_aligned_diff_finds_an_edit_under_misalignment():
    image = texture(seed=4)
    truth = np.zeros((128, 128), bool)
    truth[30:70, 50:100] = True
    edited = image.copy()
    edited[truth] = edited[truth][:, ::-1] * 0.5 + 0.3  # a recolour
    edited = moved(edited, affine(128, -0.4, 1.0, (0.3, 0.55)))
    truth = moved(truth.astype(np.float32), affine(128, -0.4, 1.0, (0.3, 0.55))) > 0.5
    mask = create_generator("aligned_diff").generate(as_batch(image), as_batch(edited))[0, 0].numpy() >= 0.5
    f1 = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert f1 > 0.85, f1


def test_aligned_semantic_marks_a_replaced_region_under_misalignment():
    image = texture(seed=5)
    donor = texture(seed=6)
    truth = np.zeros((128, 128), bool)
    truth[40:96, 24:88] = True
    edited = np.where(truth[..., None], donor, image)
    matrix = affine(128, 0.3, 1.0, (-0.5, 0.4))
    edited, truth = moved(edited, matrix), moved(truth.astype(np.float32), matrix) > 0.5
    out = create_generator("aligned_semantic").generate_scored(as_batch(image), as_batch(edited))
    mask = out.mask[0, 0].numpy() >= 0.5
    assert (mask & truth).sum() / truth.sum() > 0.7 and (mask & ~truth).sum() / (~truth).sum() < 0.1
    assert 0.0 <= float(out.quality[0]) <= 1.0 and "method" in out.diagnostics[0]["registration"]


def test_batch_of_mixed_content_and_device_round_trip():
    """Pairs in a batch are registered independently: one fallback does not change its neighbour's mask."""
    a, b = texture(seed=7), np.full((128, 128, 3), 0.5, np.float32)
    gen = create_generator("aligned_diff")
    together = gen.generate(as_batch(a, b), as_batch(moved(a, affine(128, 0.2, 1.0, (0.4, 0.0))), b))
    alone = gen.generate(as_batch(a), as_batch(moved(a, affine(128, 0.2, 1.0, (0.4, 0.0)))))
    assert torch.equal(together[:1], alone) and float(together[1].max()) < 0.5


def test_bad_parameters_name_the_key_and_a_fix():
    with pytest.raises(ValueError, match="tone='sharp'"):
        AlignedDiff(tone="sharp")
    with pytest.raises(ValueError, match="unknown key.*detecter"):
        AlignedDiff(registration={"detecter": "orb"})
    with pytest.raises(ValueError, match="layer_weights"):
        create_generator("aligned_semantic", layer_weights=[0, 0, 0])


def test_pairs_folder_with_a_resized_grey_original_runs_through_the_evaluation_loop(tmp_path):
    """Originals of another size are resized by the loader (and counted); grey PNGs become RGB."""
    from benchmarks.data.manifest import PairsDataset
    from benchmarks.evaluation.generators import evaluate_generator as evaluate

    image = (texture(64, seed=8) * 255).astype(np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:40, 20:44] = True
    edited = image.copy()
    edited[mask] = 255 - edited[mask]
    (tmp_path / "img").mkdir()
    Image.fromarray(edited).save(tmp_path / "img" / "e.png")
    Image.fromarray(image).resize((48, 48)).save(tmp_path / "img" / "o_small.png")
    Image.fromarray(image).convert("L").save(tmp_path / "img" / "o_grey.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "img" / "m.png")
    rows = [{"id": i, "original": f"img/{o}", "edited": "img/e.png", "instruction": "x", "mask": "img/m.png"}
            for i, o in (("small", "o_small.png"), ("grey", "o_grey.png"))]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("aligned_diff", "aligned_semantic"):
        result = evaluate(create_generator(name), PairsDataset(tmp_path, require_mask=True), progress=False)
        assert result.counts["original_resized"] == 1 and result.counts["pairs"] == 2
        assert result.metrics["f1_per_image"] > 0.3, (name, result.metrics)
        assert all(0.0 <= r["quality"] <= 1.0 for r in result.rows)


def _yaml(name: str) -> dict:
    from omegaconf import OmegaConf

    from benchmarks.config import config_dir

    return OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "generator" / f"{name}.yaml"))


@pytest.mark.parametrize("name,cls", [("aligned_diff", AlignedDiff), ("aligned_semantic", AlignedSemantic)])
def test_config_files_say_what_the_code_defaults_are(name, cls):
    """One source per default: the YAML repeats the constructor's defaults (and RegistrationConfig's), and
    records the split its values were chosen on."""
    cfg = _yaml(name)
    assert cfg.pop("name") == name and cfg.pop("chosen_on")
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    for key, value in cfg.items():
        if key == "registration":
            for rkey, rvalue in value.items():
                assert getattr(RegistrationConfig(), rkey) == rvalue, (name, rkey)
        else:
            want = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
            assert want == value, (name, key, value, want)
