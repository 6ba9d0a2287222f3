"""Run a function in 2 CPU processes on the gloo backend, as DDP would, and collect results."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, fn: Callable, args: tuple, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        torch.save(fn(rank, world_size, *args), Path(out) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_distributed(fn: Callable[..., Any], *args: Any, world_size: int = 2) -> list[Any]:
    """Call ``fn(rank, world_size, *args)`` in ``world_size`` processes with an initialised gloo
    process group and return each rank's result (``fn`` must be a module-level function and its
    result picklable by ``torch.save``)."""
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(world_size, _free_port(), fn, args, out), nprocs=world_size)
        return [torch.load(Path(out) / f"{rank}.pt") for rank in range(world_size)]
