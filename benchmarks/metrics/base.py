"""A minimal torchmetrics-style base: declared states with their reduction, synced only when needed."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def check_threshold(threshold: float) -> float:
    """The decision threshold of a pixel metric, in (0, 1); a clear error otherwise."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return float(threshold)


class Metric:
    """States declared with ``add_state(name, default, reduction)``; ``reduction`` is ``sum`` or ``cat``.

    ``update()`` accumulates on whatever device the inputs are on; ``compute()`` merges the states of every
    process when a process group is initialised (all-reduce for ``sum``, all-gather for ``cat``) and works
    unchanged without one. No device is hard-coded.
    """

    # what update() takes, by the names a MetricSuite passes: pixel metrics the predicted mask, the truth and
    # the valid pixels; image-level ones the image score and the label
    inputs: tuple[str, ...] = ("mask", "truth", "valid")

    def __init__(self) -> None:
        self._defaults: dict[str, tuple[Any, str]] = {}

    def add_state(self, name: str, default: torch.Tensor | list, reduction: str) -> None:
        if reduction not in ("sum", "cat"):
            raise ValueError(f"state {name!r}: reduction must be 'sum' or 'cat', got {reduction!r}")
        if reduction == "cat" and not isinstance(default, list):
            raise ValueError(f"state {name!r}: a 'cat' state starts as an empty list")
        self._defaults[name] = (default, reduction)
        setattr(self, name, default.clone() if isinstance(default, torch.Tensor) else [])

    def reset(self) -> None:
        for name, (default, _) in self._defaults.items():
            setattr(self, name, default.clone() if isinstance(default, torch.Tensor) else [])

    def _to(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """A sum state moved to the device of the incoming data (first update decides)."""
        state = getattr(self, name)
        if state.device != like.device:
            state = state.to(like.device)
            setattr(self, name, state)
        return state

    def synced_states(self) -> dict[str, Any]:
        """States merged over processes (a copy; local states stay as they are)."""
        out: dict[str, Any] = {}
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        for name, (_, reduction) in self._defaults.items():
            value = getattr(self, name)
            if reduction == "sum":
                value = value.clone()
                if distributed:
                    dist.all_reduce(value, op=dist.ReduceOp.SUM)
            else:
                local = torch.cat(value) if value else torch.empty(0)
                if distributed:
                    local = _all_gather_cat(local)
                value = local
            out[name] = value
        return out

    def update(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def compute(self) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError


def _all_gather_cat(local: torch.Tensor) -> torch.Tensor:
    """Concatenate 1-D tensors of different lengths from every rank (pad to the longest, gather, trim)."""
    world = dist.get_world_size()
    size = torch.tensor([local.numel()], device=local.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=local.dtype, device=local.device)
    padded[: local.numel()] = local.flatten()
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])
