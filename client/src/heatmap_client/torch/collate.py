"""``HeatmapCollate``: a ``collate_fn`` that renders a whole batch's heatmap targets in one call.

::

    from torch.utils.data import DataLoader
    from heatmap_client.torch import HeatmapCollate

    targets = HeatmapCollate("dns:///heatmap:50051", size=(64, 48), sigma=2.0,
                             coords="pixel", input_size=(256, 192))
    loader = DataLoader(dataset, batch_size=64, num_workers=8, collate_fn=targets)
    for batch in loader:
        batch["heatmaps"]         # (B, K, 64, 48) float32 tensor
        batch["heatmap_weights"]  # (B, K) float32 (mmpose keypoint_weights, HRNet target_weight)

With ``output="separable"`` the batch carries a :class:`SeparableHeatmaps` instead, the targets'
row and column profiles (27-41x fewer bytes at the usual sizes) through the workers, pinning and
the copy to the device; ``batch["heatmaps"].to(device)`` returns the dense tensor there, bit for
bit the same. ``HeatmapCollate("local", ...)`` renders in the worker itself (needs the
``heatmap-render`` package, which ``heatmap-client[torch]`` installs), dense or separable.

Samples are dicts with ``keypoints`` ``(K, 2)`` (or ``(N, K, 2)``) and optionally ``visibility``
``(K,)`` (or ``(N, K)``); the batch is collated as torch's ``default_collate`` would, then rendered
by one ``Render`` call. Samples that are tuples work with integer keys: with
``keypoints_key=1, visibility_key=2`` a sample ``(image, keypoints, visibility)`` becomes the batch
``(images, keypoints, visibility, heatmaps, heatmap_weights)`` (``visibility_key=None`` when the
samples carry none).

The collate object pickles (spawned workers) and its client reopens its channel in every worker
process (forked workers), so one made, and even used, in the training script works as is. This
module imports torch; ``import heatmap_client`` alone never does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from heatmap_client import ArgumentError, HeatmapClient, RenderOptions
from heatmap_client.options import SimccOptions

from .._render_api import KeywordRenderer, RenderCalls
from .local import LocalRenderer
from .separable import SeparableHeatmaps, packed_size

__all__ = ["HeatmapCollate"]

# A deadline for every batch when the collate makes its own client from a target.
DEFAULT_TIMEOUT_S = 30.0

Key = str | int
LOCAL = "local"
OUTPUTS = ("dense", "separable")
TARGETS = ("heatmap", "simcc")
# mmpose's own batch names for SimCC targets (RTMPose's loss reads them).
SIMCC_KEYS = ("keypoint_x_labels", "keypoint_y_labels", "keypoint_weights")
# Dense dtypes a SeparableHeatmaps can expand into: the float32 product rounded once.
_SEPARABLE_DTYPES = ("float32", "float16", "bfloat16")


class HeatmapCollate:
    """A ``collate_fn`` that adds rendered heatmaps and weights to each batch.

    Args:
        client_or_target: a :class:`~heatmap_client.HeatmapClient`, anything with the same
            ``render(keypoints, **options)`` method (and ``render_profiles`` for
            ``output="separable"``), a target (``host:port``, ``dns:///name:port``,
            ``ipv4:a:p,b:p``) to make a client for, or ``"local"`` for the in-process renderer
            (needs the ``heatmap-render`` package).
        size: ``(H, W)`` of the heatmaps (mmpose configs write ``heatmap_size=(W, H)``); not
            used with ``target="simcc"``.
        sigma: a scalar, or one value per keypoint ``(K,)``, in heatmap pixels; with
            ``target="simcc"`` a number or ``(sigma_x, sigma_y)`` in label bins (mmpose's order).
        method: ``seed``, ``msra`` (default), ``udp`` or ``dark``.
        coords: ``heatmap`` (default), ``pixel`` (with ``input_size``) or ``normalized``.
        input_size: ``(H_in, W_in)`` of the network input, for ``coords="pixel"`` and for
            ``target="simcc"`` (mmpose configs write ``input_size=(W, H)``).
        keypoints_key: where the keypoints are in a sample: a dict key, or an index for tuples.
        visibility_key: where the visibility is (None: no visibility; a missing dict key is the
            same). A keypoint is drawn when its visibility is at least 0.5.
        heatmaps_key, weights_key: the dict keys the results are stored under.
        dtype: the wire dtype (``float32``, ``float16``, ``bfloat16``, ``uint16``, ``uint8``).
            With ``output="separable"``, the dtype ``.to(device)`` expands into (float32,
            float16 or bfloat16; other than float32 only with ``keep_dtype``).
        codec: the wire codec (``auto``, ``zstd``, ``none``, ``separable``; see
            :class:`~heatmap_client.RenderOptions`). ``output="separable"`` always receives
            zstd-packed profiles (codec ``separable``): ``auto``, ``zstd`` or
            ``separable``.
        keep_dtype: keep the wire dtype in the tensors instead of float32.
        output: ``dense`` (default): ``(B, K, H, W)`` tensors in the batch; ``separable``: a
            :class:`SeparableHeatmaps` of shape ``(B, K, H, W)`` holding only the profiles.
        target: ``heatmap`` (default) or ``simcc``: mmpose's ``SimCCLabel`` (RTMPose), keypoints
            in input pixels, added under mmpose's batch names ``keypoint_x_labels``
            ``(B, K, Wx)``, ``keypoint_y_labels`` ``(B, K, Hy)`` and ``keypoint_weights``.
        split_ratio, smoothing, label_smooth_weight, normalize: the SimCC options (see
            :class:`~heatmap_client.options.SimccOptions`).
        timeout: deadline in seconds for each batch's call (None: the client's own; 30 s for a
            client made from a target).
        collate_fn: collates the samples before rendering (default: torch's ``default_collate``).
    """

    def __init__(
        self,
        client_or_target: HeatmapClient | str | Any,
        *,
        size: tuple[int, int] | None = None,
        sigma: float | Sequence[float],
        method: str = "msra",
        coords: str = "heatmap",
        input_size: tuple[int, int] | None = None,
        keypoints_key: Key = "keypoints",
        visibility_key: Key | None = "visibility",
        heatmaps_key: str = "heatmaps",
        weights_key: str = "heatmap_weights",
        dtype: str = "float32",
        codec: str = "auto",
        keep_dtype: bool = False,
        timeout: float | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        output: str = "dense",
        target: str = "heatmap",
        split_ratio: float = 2.0,
        smoothing: str = "gaussian",
        label_smooth_weight: float = 0.0,
        normalize: bool = True,
    ):
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
        if target not in TARGETS:
            raise ArgumentError("target", f"expected one of {', '.join(TARGETS)}, got {target!r}")
        if sigma is None:
            raise ArgumentError("sigma", "required: a number, or one per keypoint")
        # Checked here, at construction, so that a bad option fails before the first batch.
        self.target = target
        self.options: RenderOptions | None = None
        self.simcc: SimccOptions | None = None
        if target == "simcc":
            if output != "dense":
                raise ArgumentError("output", "SimCC labels are 1D already: use output='dense'")
            if input_size is None:
                raise ArgumentError("input_size", "required with target='simcc': (H_in, W_in)")
            self.simcc = SimccOptions(
                input_size=input_size, sigma=sigma, split_ratio=split_ratio, smoothing=smoothing,
                label_smooth_weight=label_smooth_weight, normalize=normalize, dtype=dtype,
                codec=codec,
            )
            weights_key = SIMCC_KEYS[2] if weights_key == "heatmap_weights" else weights_key
        else:
            if size is None:
                raise ArgumentError("size", "required: (H, W) of the heatmaps")
            self.options = RenderOptions(
                size=size, sigma=sigma, method=method, coords=coords, input_size=input_size,
                dtype=dtype, codec=codec,
            )
        if output == "separable":
            _check_separable_options(dtype, codec, keep_dtype)
        self.client = _renderer(client_or_target, timeout, target, output)
        self.output = output
        self.keypoints_key = keypoints_key
        self.visibility_key = visibility_key
        self.heatmaps_key = heatmaps_key
        self.weights_key = weights_key
        self.keep_dtype = keep_dtype
        self.timeout = timeout
        self.collate_fn = default_collate if collate_fn is None else collate_fn

    def __repr__(self) -> str:
        options = self.simcc if self.target == "simcc" else self.options
        return f"HeatmapCollate({self.client!r}, output={self.output!r}, {options!r})"

    def __call__(self, samples: list[Any]) -> Any:
        """Collates ``samples`` and adds the batch's heatmaps ``(B, K, H, W)`` and weights."""
        return self.add_heatmaps(self.collate(samples))

    def collate(self, samples: list[Any]) -> Any:
        """Collates without rendering: the ``collate_fn`` to use with :meth:`prefetch`."""
        return self.collate_fn(samples)

    def add_heatmaps(self, batch: Any) -> Any:
        """Renders a collated batch's targets in one call and returns the batch with them added."""
        return self._attach(batch, self._render(batch))

    def prefetch(self, batches: Iterable[Any], depth: int = 1) -> Iterator[Any]:
        """Yields ``batches`` with heatmaps added, rendering the next ``depth`` ahead.

        For a loader whose ``collate_fn`` is :meth:`collate` (rendering then happens in this
        process, e.g. with ``num_workers=0``): while the training step consumes batch ``i``, the
        requests for batches ``i+1 .. i+depth`` are already in flight on background threads. Each
        batch is its own ``Render`` call, so round_robin spreads batches over replicas and the
        retry policy covers a replica that goes away; one long ``RenderStream`` would pin the
        epoch to one replica. With ``num_workers > 0`` the DataLoader already renders ahead
        (``prefetch_factor`` batches per worker), and ``HeatmapCollate`` itself is the collate_fn.
        """
        if depth < 1:
            raise ValueError(f"depth: must be >= 1, got {depth}")
        pending: deque[tuple[Any, Future]] = deque()
        with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="heatmap-prefetch") as pool:
            try:
                for batch in batches:
                    pending.append((batch, pool.submit(self._render, batch)))
                    if len(pending) > depth:
                        batch, future = pending.popleft()
                        yield self._attach(batch, future.result())
                while pending:
                    batch, future = pending.popleft()
                    yield self._attach(batch, future.result())
            finally:
                for _, future in pending:
                    future.cancel()

    def _lookup(self, batch: Any, key: Key, name: str, required: bool) -> Any:
        if isinstance(batch, Mapping):
            if key in batch:
                return batch[key]
        elif isinstance(batch, Sequence) and not isinstance(batch, str):
            if not isinstance(key, int):
                choices = f"{name}=<index>" + ("" if required else " or None")
                raise TypeError(
                    f"{name}: the batch is a {type(batch).__name__}, so samples are tuples; pass "
                    f"{choices}, got {key!r}"
                )
            if -len(batch) <= key < len(batch):
                return batch[key]
        else:
            raise TypeError(
                f"{name}: expected samples collated into a dict or a tuple, "
                f"got {type(batch).__name__}"
            )
        if required:
            raise KeyError(f"{name}: the batch has no {key!r}")
        return None

    def _render(self, batch: Any) -> tuple[torch.Tensor | SeparableHeatmaps, torch.Tensor]:
        keypoints = _to_numpy(self._lookup(batch, self.keypoints_key, "keypoints_key", True))
        visibility = None
        if self.visibility_key is not None:
            visibility = self._lookup(batch, self.visibility_key, "visibility_key", False)
            if visibility is not None:
                visibility = _to_numpy(visibility)
        if self.target == "simcc":
            return self._render_simcc(keypoints, visibility)
        if self.output == "separable":
            return self._render_profiles(keypoints, visibility)
        result = self.client.render_with(
            self.options, keypoints, visibility=visibility, timeout=self.timeout,
            keep_dtype=self.keep_dtype,
        )
        if hasattr(result, "to_torch"):
            return result.to_torch()
        return torch.as_tensor(result.heatmaps), torch.as_tensor(result.weights)

    def _render_profiles(
        self, keypoints: np.ndarray, visibility: np.ndarray | None
    ) -> tuple[SeparableHeatmaps, torch.Tensor]:
        result = self.client.render_profiles_with(
            self.options, keypoints, visibility=visibility, timeout=self.timeout
        )
        row_table, col_table, row_index, col_index = (torch.as_tensor(part)
                                                      for part in result.tables)
        weights = torch.as_tensor(result.weights)
        # The targets and their weights in one storage: a batch pays per storage it moves
        # between processes (a shared-memory segment and a file descriptor each way).
        size = packed_size(tuple(row_index.shape), (row_table.shape[1], col_table.shape[1]),
                           row_table.shape[0], col_table.shape[0])
        flat = torch.empty(size + weights.numel(), dtype=torch.float32)
        heatmaps = SeparableHeatmaps.from_table(row_table, row_index, col_table, col_index,
                                                dtype=self.options.dtype, out=flat[:size])
        return heatmaps, flat[size:].view(weights.shape).copy_(weights)

    def _render_simcc(
        self, keypoints: np.ndarray, visibility: np.ndarray | None
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        result = self.client.render_simcc_with(
            self.simcc, keypoints, visibility=visibility, timeout=self.timeout
        )
        labels = (torch.as_tensor(result.x_labels), torch.as_tensor(result.y_labels))
        return labels, torch.as_tensor(result.weights)

    def _attach(self, batch: Any, rendered: tuple[Any, torch.Tensor]) -> Any:
        targets, weights = rendered
        if self.target == "simcc":
            names, values = SIMCC_KEYS[:2], targets
        else:
            names, values = (self.heatmaps_key,), (targets,)
        if isinstance(batch, Mapping):
            return {**batch, **dict(zip(names, values)), self.weights_key: weights}
        return (*batch, *values, weights)


def _renderer(
    client_or_target: Any, timeout: float | None, target: str, output: str
) -> RenderCalls:
    """What renders the batches: a client made for a target, the local renderer, or the object
    given (one that only has the client's typed methods is adapted to take options whole)."""
    if isinstance(client_or_target, str) and client_or_target == LOCAL:
        return LocalRenderer()
    if isinstance(client_or_target, str):
        return HeatmapClient(
            client_or_target, timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout
        )
    if not callable(getattr(client_or_target, "render", None)):
        raise TypeError(
            "client_or_target: expected a HeatmapClient, an object with render(), or a target "
            f"string, got {type(client_or_target).__name__}"
        )
    needs = {"simcc": "render_simcc", "heatmap": "render"}[target]
    if output == "separable":
        needs = "render_profiles"
    if not callable(getattr(client_or_target, needs, None)):
        what = f"target={target!r}" if target == "simcc" else f"output={output!r}"
        raise TypeError(
            f"client_or_target: {what} needs {needs}(), which "
            f"{type(client_or_target).__name__} does not have"
        )
    if isinstance(client_or_target, RenderCalls):
        return client_or_target
    return KeywordRenderer(client_or_target)


def _check_separable_options(dtype: str, codec: str, keep_dtype: bool) -> None:
    if dtype not in _SEPARABLE_DTYPES:
        raise ValueError(
            f"dtype: output='separable' expands exactly into {', '.join(_SEPARABLE_DTYPES)}; "
            f"got {dtype!r} (fixed point is for dense replies)"
        )
    if dtype != "float32" and not keep_dtype:
        raise ValueError(
            f"keep_dtype: output='separable' with dtype={dtype!r} expands into {dtype} on "
            ".to(device); pass keep_dtype=True (or keep float32 and convert on the device)"
        )
    if codec not in ("auto", "zstd", "separable"):
        raise ValueError(
            f"codec: output='separable' receives zstd-packed profiles (codec 'separable'); "
            f"got {codec!r}"
        )


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
