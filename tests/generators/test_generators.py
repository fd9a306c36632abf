"""Registry-driven checks of every mask generator, and the eval-generators runner on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.manifest import PairsDataset
from benchmarks.data.transforms import Geometry
from benchmarks.generators.base import MaskGenerator, create_from_node, create_generator, list_generators
from benchmarks.generators.ops import otsu_threshold, soft_threshold
from benchmarks.evaluation.generators import evaluate_generator as evaluate
from benchmarks.generators.sanity import INSIDE_MIN, OUTSIDE_MAX, contract_pair, marked_inside_outside


def _pair(seed: int = 0, b: int = 2, size: int = 64):
    return contract_pair(seed, b, size)


# need a checkpoint (the config key that names it); tested here with freshly initialized heads
LEARNED = {"sigma": "generator.checkpoint", "grounding_only": "generator.checkpoint",
           "sigma_aligned": "generator.sigma.checkpoint"}


@pytest.fixture(scope="module")
def heads_checkpoints(tmp_path_factory) -> dict[str, str]:
    """Untrained SIGMA heads saved in the real checkpoint format (the contract does not need training)."""
    from sigma.annotator import save_checkpoint
    from sigma.model import SigmaConfig, SigmaNet

    folder = tmp_path_factory.mktemp("sigma-heads")
    torch.manual_seed(0)
    return {"sigma": str(save_checkpoint(folder / "sigma.pt", SigmaNet(SigmaConfig()), {})),
            "grounding_only": str(save_checkpoint(folder / "g.pt", SigmaNet(SigmaConfig(difference=False)), {})),
            "sigma_aligned": str(folder / "sigma.pt")}


def build(name: str, heads: dict[str, str]) -> MaskGenerator:
    from benchmarks.config import compose
    from benchmarks.builders import generator_from_config

    overrides = [f"generator={name}"] + ([f"{LEARNED[name]}={heads[name]}"] if name in LEARNED else [])
    return generator_from_config(compose(overrides)).eval()


@pytest.fixture(scope="module", params=sorted(list_generators()))
def generator(request, heads_checkpoints) -> MaskGenerator:
    return build(request.param, heads_checkpoints)


def test_contract_shapes_range_no_grad_determinism(generator):
    original, edited, truth = _pair()
    out = generator.generate(original, edited, ["make it red", ""], truth=truth)
    assert out.shape == (2, 1, 64, 64) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 and not out.requires_grad
    assert torch.equal(out, generator.generate(original, edited, ["make it red", ""], truth=truth))
    # an annotator finds this easy edit; sanity rows, untrained heads and the ladder's calibration rows (degraded
    # on purpose: tests/generators/test_ladder.py checks them) are exempt
    if generator.info.name not in {"empty", "full"} | set(LEARNED) and not generator.info.calibration:
        inside, outside = marked_inside_outside(out, truth)
        assert inside > INSIDE_MIN and outside < OUTSIDE_MAX, (generator.info.name, inside, outside)


def test_instruction_is_optional_and_batch_checked(generator):
    original, edited, truth = _pair(b=1)
    assert generator.generate(original, edited, None, truth=truth).shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match="instructions"):
        generator.generate(original, edited, ["a", "b"], truth=truth)


def test_generate_scored_returns_the_same_mask_and_a_quality_per_pair(generator):
    original, edited, truth = _pair()
    scored = generator.generate_scored(original, edited, ["make it red", ""], truth=truth)
    assert torch.equal(scored.mask, generator.generate(original, edited, ["make it red", ""], truth=truth))
    assert scored.quality.shape == (2,) and float(scored.quality.min()) >= 0 and float(scored.quality.max()) <= 1
    assert len(scored.diagnostics) == 2 and all(isinstance(d, dict) for d in scored.diagnostics)
    json.dumps(scored.diagnostics)  # JSON-ready, for a runner's per-pair log
    assert isinstance(generator.counters(), dict)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (9, 12), (17, 40)])
def test_tiny_and_odd_sized_pairs(generator, size):
    """Any size down to the generator's declared ``min_side`` works; below it the call says so."""
    g = torch.Generator().manual_seed(1)
    original = torch.rand(2, 3, *size, generator=g)
    edited = original.flip(-1)
    if min(size) < generator.min_side:
        with pytest.raises(ValueError, match=f"at least {generator.min_side} px"):
            generator.generate(original, edited, None, truth=torch.zeros(2, 1, *size))
        return
    out = generator.generate(original, edited, None, truth=torch.zeros(2, 1, *size))
    assert out.shape == (2, 1, *size) and torch.isfinite(out).all()


def test_grey_pairs_stored_as_three_equal_channels(generator):
    """Grey photos reach generators as RGB with equal channels (the image reader converts them)."""
    g = torch.Generator().manual_seed(2)
    smooth = torch.nn.functional.interpolate(torch.rand(2, 1, 8, 8, generator=g), size=(64, 64), mode="bilinear",
                                             align_corners=False)
    truth = torch.zeros(2, 1, 64, 64)
    truth[:, :, 16:40, 20:44] = 1
    edited = torch.where(truth.bool(), 1 - smooth, smooth)
    out = generator.generate(smooth.expand(-1, 3, -1, -1), edited.expand(-1, 3, -1, -1), None, truth=truth)
    assert out.shape == (2, 1, 64, 64) and torch.isfinite(out).all()
    if generator.info.name not in {"empty", "full"} | set(LEARNED) and not generator.info.calibration:
        assert (out >= 0.5)[truth.bool()].float().mean() > 0.5, generator.info.name


def test_unknown_generator_lists_the_known_ones():
    with pytest.raises(ValueError, match="pixel_diff"):
        create_generator("magic")


def test_a_config_node_builds_its_generator_and_a_node_without_a_name_says_which_names_exist():
    node = {"name": "pixel_diff", "threshold": 0.2}
    assert create_from_node(node).info.name == "pixel_diff"
    assert create_from_node({"threshold": 0.2}, "pixel_diff").info.name == "pixel_diff"  # kind fixed by the caller
    with pytest.raises(ValueError, match="no 'name'.*pixel_diff"):
        create_from_node({"threshold": 0.2})
    with pytest.raises(TypeError):
        create_from_node({"name": "pixel_diff", "no_such_option": 1})


def test_otsu_and_soft_threshold():
    x = torch.cat([torch.full((1, 1, 8, 8), 0.1), torch.full((1, 1, 8, 8), 0.7)], dim=-1)
    thr = otsu_threshold(x)
    assert 0.1 < float(thr) < 0.7
    s = soft_threshold(x, thr)
    assert torch.equal(s >= 0.5, x >= thr)


def test_baselines_ignore_identical_images():
    original, _, _ = _pair()
    for name in ("pixel_diff", "pixel_diff_otsu", "ssim_diff", "feature_diff", "aligned_diff", "aligned_semantic"):
        assert float(create_generator(name).generate(original, original).max()) < 0.5, name


# ------------------------------------------------------------------------------------ the runner


def _write_pairs(root: Path, masks: dict[str, np.ndarray | None], size=(32, 32), mask_format="png") -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for item_id, mask in masks.items():
        orig = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        edit = orig.copy()
        if mask is not None and mask.shape == size:
            edit[mask > 0] = 255 - edit[mask > 0]
        Image.fromarray(orig).save(root / "img" / f"{item_id}_o.png")
        Image.fromarray(edit).save(root / "img" / f"{item_id}_e.png")
        row = {"id": item_id, "original": f"img/{item_id}_o.png", "edited": f"img/{item_id}_e.png", "instruction": "x"}
        if mask is not None:
            name = f"img/{item_id}_m.{mask_format}"
            arr = mask.astype(np.uint8) * 255
            if mask_format == "jpg":
                Image.fromarray(np.stack([arr] * 3, -1)).save(root / name, quality=60)  # RGB + JPEG artefacts
            else:
                Image.fromarray(arr).save(root / name)
            row["mask"] = name
        lines.append(json.dumps(row))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _box(size=(32, 32)):
    m = np.zeros(size, bool)
    m[8:20, 6:22] = True
    return m


def test_oracle_scores_one_and_empty_zero(tmp_path):
    ds = PairsDataset(_write_pairs(tmp_path, {"a": _box(), "b": _box()}), Geometry("none"), require_mask=True)
    assert evaluate(create_generator("oracle"), ds, progress=False).metrics["f1_per_image"] == 1.0
    out = evaluate(create_generator("empty"), ds, progress=False).metrics
    assert out["f1_per_image"] == 0.0 and out["iou_per_image"] == 0.0


def test_missing_file_is_a_clear_error_or_a_counted_skip(tmp_path):
    root = _write_pairs(tmp_path, {"a": _box(), "b": _box()})
    (root / "img" / "b_e.png").unlink()
    ds = PairsDataset(root, Geometry("none"), require_mask=True)
    with pytest.raises(DataError, match="b_e.png"):
        evaluate(create_generator("oracle"), ds, progress=False)
    skips = SkipLog(tmp_path / "skipped.jsonl")
    result = evaluate(create_generator("oracle"), ds, on_error="skip", skip_log=skips, progress=False)
    assert result.counts["skipped"] == 1 and result.counts["pairs"] == 1 and skips.summary() == {"missing": 1}
    assert json.loads((tmp_path / "skipped.jsonl").read_text())["id"] == "b"


def test_mask_of_another_size_is_a_clear_error(tmp_path):
    root = _write_pairs(tmp_path, {"a": _box(), "b": _box((16, 32))})
    ds = PairsDataset(root, Geometry("none"), require_mask=True)
    with pytest.raises(DataError, match="masks must match"):
        evaluate(create_generator("oracle"), ds, progress=False)


def test_rgb_jpeg_mask_is_binarized_at_127(tmp_path):
    ds = PairsDataset(_write_pairs(tmp_path, {"a": _box()}, mask_format="jpg"), Geometry("none"), require_mask=True)
    sample = ds[0]
    assert torch.equal(sample["mask"][0].bool(), torch.from_numpy(_box()))
    assert evaluate(create_generator("oracle"), ds, progress=False).metrics["f1_per_image"] == 1.0


def test_all_zero_mask_is_excluded_and_counted(tmp_path):
    root = _write_pairs(tmp_path, {"a": _box(), "z": np.zeros((32, 32), bool)})
    ds = PairsDataset(root, Geometry("none"), require_mask=True)
    result = evaluate(create_generator("oracle"), ds, progress=False)
    assert result.counts["excluded_empty_gt"] == 1 and result.metrics["n_manipulated"] == 1
    assert result.metrics["f1_per_image"] == 1.0
    assert [r["f1"] for r in result.rows if r["id"] == "z"] == [None]


def test_every_registered_generator_has_a_config_that_builds_it(heads_checkpoints):
    from benchmarks.config import group_options

    for name in list_generators():
        assert name in group_options("generator"), f"configs/generator/{name}.yaml is missing"
        built = build(name, heads_checkpoints)
        assert isinstance(built, MaskGenerator) and built.info.name == name


def test_sigma_refuses_a_checkpoint_from_another_config(heads_checkpoints):
    from benchmarks.config import compose
    from benchmarks.builders import generator_from_config

    cfg = compose(["generator=sigma", f"generator.checkpoint={heads_checkpoints['sigma']}", "sigma.model.blocks=3"])
    with pytest.raises(ValueError, match="another SIGMA config.*blocks"):
        generator_from_config(cfg)


def test_sigma_without_a_checkpoint_says_how_to_make_one(tmp_path):
    from benchmarks.config import compose
    from benchmarks.builders import generator_from_config

    with pytest.raises(FileNotFoundError, match="bench train-sigma"):
        generator_from_config(compose(["generator=sigma", f"generator.checkpoint={tmp_path / 'none.pt'}"]))


@pytest.mark.parametrize("name", sorted(LEARNED))
@pytest.mark.parametrize("hw", [(16, 640), (640, 16), (17, 333), (16, 16)])
def test_learned_generators_take_extreme_aspect_ratios_down_to_the_stride(name, hw, heads_checkpoints):
    """Any side from the backbone's stride (16 px) up, any aspect ratio: a mask of the input's size, finite."""
    gen = build(name, heads_checkpoints)
    assert gen.min_side == 16
    g = torch.Generator().manual_seed(0)
    original = torch.rand(1, 3, *hw, generator=g)
    edited = original.clone()
    edited[..., : hw[0] // 2, : hw[1] // 2] = 0.9
    out = gen.generate(original, edited, ["make the top left corner white"])
    assert out.shape == (1, 1, *hw) and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_sigma_runs_on_empty_instructions_and_odd_sizes(heads_checkpoints):
    """An empty or missing instruction leaves the difference stream working; sizes need not be multiples of 16."""
    gen = build("sigma", heads_checkpoints)
    original, edited, _ = _pair(b=2, size=50)
    out = gen.generate(original, edited, ["", "remove the red thing in the top left"])
    assert out.shape == (2, 1, 50, 50) and torch.isfinite(out).all()
    assert torch.equal(gen.generate(original, edited, None), gen.generate(original, edited, ["", ""]))


def test_sigma_can_register_the_pair_first_and_counts_how(heads_checkpoints):
    from benchmarks.config import compose
    from benchmarks.builders import generator_from_config

    base = ["generator=sigma", f"generator.checkpoint={heads_checkpoints['sigma']}"]
    plain = generator_from_config(compose(base)).eval()
    registered = generator_from_config(compose([*base, "+generator.registration={model: affine}"])).eval()
    original, edited, _ = _pair(b=2, size=64)
    out = registered.generate(original, edited, ["", "remove it"])
    assert out.shape == (2, 1, 64, 64) and torch.isfinite(out).all()
    assert plain.counters() == {} and registered.counters()["registration/pairs"] == 2
    assert "registered" in registered.info.summary and "registered" not in plain.info.summary


def test_sigma_can_average_its_mask_over_rescaled_and_mirrored_copies(heads_checkpoints):
    from benchmarks.config import compose
    from benchmarks.builders import generator_from_config

    base = ["generator=sigma", f"generator.checkpoint={heads_checkpoints['sigma']}"]
    plain = generator_from_config(compose(base)).eval()
    same = generator_from_config(compose([*base, "+generator.tta={scales: [1.0]}"])).eval()
    tta = generator_from_config(compose([*base, "+generator.tta={scales: [1.0, 0.75], flip: true}"])).eval()
    original, edited, _ = _pair(b=2, size=50)
    want = plain.generate(original, edited, ["", "remove it"])
    assert torch.equal(same.generate(original, edited, ["", "remove it"]), want)
    out = tta.generate(original, edited, ["", "remove it"])
    assert out.shape == want.shape and torch.isfinite(out).all() and not torch.equal(out, want)
    assert "scales 1, 0.75 with left-right flips" in tta.info.summary and "averaged" not in plain.info.summary


def test_prior_check_swaps_instructions_and_scores_the_prior_against_the_truth(heads_checkpoints):
    from benchmarks.perf.prior_check import InstructionSwap

    original, edited, _ = _pair(b=3, size=64)
    seen = {}
    for kind in ("own", "empty", "other"):
        swap = InstructionSwap(build("sigma", heads_checkpoints), kind)
        assert swap._text(["a", "b", "c"]) == {"own": ["a", "b", "c"], "empty": ["", "", ""],
                                               "other": ["b", "c", "a"]}[kind]
        truth = torch.zeros(3, 1, 64, 64)
        truth[..., :32, :32] = 1
        out = swap(original, edited, ["remove the top left square", "recolour it", ""], truth=truth)
        assert out.shape == (3, 1, 64, 64)
        stats = swap.prior_stats()
        assert 0 <= stats["prior_auc"] <= 1 and 0 <= stats["gate_out"] <= 1
        seen[kind] = stats["gate_in"]
    assert seen["own"] != seen["empty"]  # the prior reads the words
