"""Processes and devices: this process's rank and the world size (from a process group, else torchrun's
environment), joining and leaving torchrun's process group, and the device a rank computes on."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def has_group() -> bool:
    """Whether a process group is initialised (collectives are available)."""
    return dist.is_available() and dist.is_initialized()


def rank_world() -> tuple[int, int]:
    """(rank, world size): from the process group, else ``RANK`` / ``WORLD_SIZE`` (independent processes
    that split the work by index), else (0, 1)."""
    if has_group():
        return dist.get_rank(), dist.get_world_size()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def is_main() -> bool:
    """Rank 0: the process that writes shared outputs and speaks."""
    return rank_world()[0] == 0


def barrier() -> None:
    """Wait for every process of the group; nothing without a group."""
    if has_group():
        dist.barrier()


def init_process_group() -> bool:
    """Join torchrun's process group (nccl on CUDA, else gloo); False when not launched that way or when
    a group already exists (then the caller does not own it)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or has_group():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def leave_process_group(joined: bool) -> None:
    """Destroy the group :func:`init_process_group` joined (`joined` is what it returned)."""
    if joined and has_group():
        dist.destroy_process_group()


def device_for(name: str) -> torch.device:
    """The device of a config's ``device`` value: ``auto`` is CUDA when available, else CPU; a CUDA device
    without an index is this rank's GPU (``LOCAL_RANK``, else the rank, modulo the GPUs present)."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if device.type == "cuda" and device.index is None:
        local = int(os.environ.get("LOCAL_RANK", rank_world()[0]))
        device = torch.device("cuda", local % max(1, torch.cuda.device_count()))
    return device
