"""The device worker: the one thread that owns the device, renders, converts and copies to host.

Everything that touches the device runs on this thread, so CUDA work is serialised without locks
and the asyncio event loop never waits on rendering. The worker hands back host numpy arrays in
wire storage order (C order, little-endian), ready for a codec.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch

from .render import RenderArgs, heatmaps_from_args, profiles_from_args

__all__ = [
    "DeviceWorker",
    "RenderJob",
    "Rendered",
    "resolve_device",
]

# Output dtypes the renderer produces directly; fixed point is quantised from float32.
_RENDER_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_FIXED_POINT = {"uint16": (65535, torch.uint16), "uint8": (255, torch.uint8)}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; otherwise ``torch.device(name)``, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    return device


@dataclass(frozen=True)
class RenderJob:
    """One request's checked render arguments and how its output travels.

    ``args`` carries the render dtype; ``wire_dtype`` names the storage on the wire (``uint16`` and
    ``uint8`` render in float32 and are quantised). ``separable`` asks for profiles only.
    """

    args: RenderArgs
    wire_dtype: str
    separable: bool
    arrived: float


@dataclass(frozen=True)
class Rendered:
    """Host arrays for a codec (the dense tensor, or rows then cols), weights and timings."""

    arrays: list[np.ndarray]
    weights: np.ndarray
    instances: int
    queue_us: int
    render_us: int
    coalesced_requests: int = 1


def _to_host(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.uint16)  # numpy has no bfloat16: ship the raw bits
    return tensor.cpu().numpy()


class DeviceWorker:
    """Runs render jobs one at a time on a dedicated thread bound to ``device``."""

    def __init__(self, device: torch.device):
        self.device = device
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")

    def _run(self, job: RenderJob) -> Rendered:
        started = time.perf_counter()
        args = job.args
        if args.keypoints.device != self.device:
            args = _on_device(args, self.device)
        instances = args.keypoints.shape[1]
        if job.separable:
            profiles = profiles_from_args(args)
            arrays = [_to_host(profiles.rows), _to_host(profiles.cols)]
            weights = profiles.weights
        else:
            result = heatmaps_from_args(args)
            heatmaps = result.heatmaps
            if job.wire_dtype in _FIXED_POINT:
                scale, storage = _FIXED_POINT[job.wire_dtype]
                heatmaps = torch.round(heatmaps * scale).to(storage)
            arrays = [_to_host(heatmaps)]
            weights = result.weights
        render_us = int((time.perf_counter() - started) * 1e6)
        return Rendered(
            arrays=arrays,
            weights=_to_host(weights),
            instances=instances,
            queue_us=int((started - job.arrived) * 1e6),
            render_us=render_us,
        )

    async def render(self, job: RenderJob) -> Rendered:
        """Renders ``job`` on the device thread without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, job)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _on_device(args: RenderArgs, device: torch.device) -> RenderArgs:
    return replace(args, keypoints=args.keypoints.to(device), visibility=args.visibility.to(device))


def render_dtype(wire_dtype: str) -> torch.dtype:
    """The dtype the renderer produces for a wire dtype."""
    return _RENDER_DTYPES.get(wire_dtype, torch.float32)
