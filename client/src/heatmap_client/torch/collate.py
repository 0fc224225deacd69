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

Samples are dicts with ``keypoints`` ``(K, 2)`` (or ``(N, K, 2)``, samples with different numbers of
people padded with people never drawn) and optionally ``visibility`` ``(K,)`` (or ``(N, K)``) and a
per-sample sigma (``sigma_key``); the batch is collated as torch's ``default_collate`` would, then
its targets are made in one call. Samples that are tuples work with integer keys: with
``keypoints_key=1, visibility_key=2`` a sample ``(image, keypoints, visibility)`` becomes the batch
``(images, keypoints, visibility, heatmaps, heatmap_weights)`` (``visibility_key=None`` when the
samples carry none).

The collate object pickles (spawned workers) and its client reopens its channel in every worker
process (forked workers), so one made, and even used, in the training script works as is. This
module imports torch; ``import heatmap_client`` alone never does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from torch.utils.data import default_collate

from heatmap_client import ArgumentError, HeatmapClient, RenderOptions
from heatmap_client.options import SimccOptions

from .._channel import DEFAULT_READY_TIMEOUT_S
from .._render_api import KeywordRenderer, RenderCalls
from .batches import BatchFields, Key
from .local import LocalRenderer
from .targets import SIMCC_KEYS, DenseTargets, SeparableTargets, SimccTargets

__all__ = ["HeatmapCollate"]

# A deadline for every batch when the collate makes its own client from a target.
DEFAULT_TIMEOUT_S = 30.0

LOCAL = "local"
OUTPUTS = ("dense", "separable")
TARGETS = ("heatmap", "simcc")
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
            Give it, or ``sigma_key``.
        method: ``seed``, ``msra`` (default), ``udp`` or ``dark``.
        coords: ``heatmap`` (default), ``pixel`` (with ``input_size``) or ``normalized``.
        input_size: ``(H_in, W_in)`` of the network input, for ``coords="pixel"`` and for
            ``target="simcc"`` (mmpose configs write ``input_size=(W, H)``).
        keypoints_key: where the keypoints are in a sample: a dict key, or an index for tuples.
        visibility_key: where the visibility is (None: no visibility; a missing dict key is the
            same). A keypoint is drawn when its visibility is at least 0.5.
        sigma_key: where each sample's own sigma is, instead of one ``sigma`` for all: a number
            per sample, ``(K,)`` per keypoint, or per person ``(N, 1)`` (CID's and CenterNet's
            box-sized Gaussians: ``heatmap_render.sigma_from_box(boxes)[:, None]``) or
            ``(N, K)``.
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
        ready_timeout: for a client made from a target, how long a batch waits for a server that
            restarts (see :class:`~heatmap_client.HeatmapClient`; 60 s, 0: no wait, None: no
            bound). A client given keeps its own.
        collate_fn: collates the samples before rendering (default: torch's ``default_collate``).
    """

    def __init__(
        self,
        client_or_target: HeatmapClient | str | Any,
        *,
        size: tuple[int, int] | None = None,
        sigma: float | Sequence[float] | None = None,
        method: str = "msra",
        coords: str = "heatmap",
        input_size: tuple[int, int] | None = None,
        keypoints_key: Key = "keypoints",
        visibility_key: Key | None = "visibility",
        sigma_key: Key | None = None,
        heatmaps_key: str = "heatmaps",
        weights_key: str = "heatmap_weights",
        dtype: str = "float32",
        codec: str = "auto",
        keep_dtype: bool = False,
        timeout: float | None = None,
        ready_timeout: float | None = DEFAULT_READY_TIMEOUT_S,
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
        if (sigma is None) == (sigma_key is None):
            raise ArgumentError(
                "sigma", "give a sigma (a number, or one per keypoint) or a sigma_key (each "
                "sample's own), one of them" if sigma is None else "give either sigma or "
                "sigma_key, not both"
            )
        # Checked here, at construction, so that a bad option fails before the first batch; the
        # kind of targets is chosen here once.
        self.target, self.output = target, output
        self.options: RenderOptions | None = None
        self.simcc: SimccOptions | None = None
        if target == "simcc":
            if output != "dense":
                raise ArgumentError("output", "SimCC labels are 1D already: use output='dense'")
            if input_size is None:
                raise ArgumentError("input_size", "required with target='simcc': (H_in, W_in)")
            if sigma_key is not None:
                raise ArgumentError("sigma_key", "SimCC labels take one sigma per axis")
            self.simcc = SimccOptions(
                input_size=input_size, sigma=sigma, split_ratio=split_ratio, smoothing=smoothing,
                label_smooth_weight=label_smooth_weight, normalize=normalize, dtype=dtype,
                codec=codec,
            )
            weights_key = SIMCC_KEYS[2] if weights_key == "heatmap_weights" else weights_key
            self.targets = SimccTargets(self.simcc, weights_key)
        else:
            if size is None:
                raise ArgumentError("size", "required: (H, W) of the heatmaps")
            self.options = RenderOptions(
                size=size, sigma=sigma, method=method, coords=coords, input_size=input_size,
                dtype=dtype, codec=codec,
            )
            keys = (heatmaps_key, weights_key)
            if output == "separable":
                _check_separable_options(dtype, codec, keep_dtype)
                self.targets = SeparableTargets(self.options, keys)
            else:
                self.targets = DenseTargets(self.options, keep_dtype, keys)
        self.client = _renderer(client_or_target, timeout, target, output, ready_timeout)
        self.fields = BatchFields(keypoints_key, visibility_key, sigma_key)
        self.heatmaps_key, self.weights_key = heatmaps_key, weights_key
        self.timeout = timeout
        self.collate_fn = default_collate if collate_fn is None else collate_fn

    def __repr__(self) -> str:
        options = self.simcc if self.target == "simcc" else self.options
        return f"HeatmapCollate({self.client!r}, output={self.output!r}, {options!r})"

    def __call__(self, samples: list[Any]) -> Any:
        """Collates ``samples`` and adds the batch's heatmaps ``(B, K, H, W)`` and weights."""
        return self.add_heatmaps(self.collate(samples))

    def collate(self, samples: list[Any]) -> Any:
        """Collates without rendering: the ``collate_fn`` to use with :meth:`prefetch`. Samples
        with fewer people than the most in the batch are padded with people never drawn."""
        return self.collate_fn(self.fields.padded(samples))

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

    def _render(self, batch: Any) -> tuple[list, dict]:
        keypoints, visibility, sigma = self.fields.inputs(batch)
        return self.targets.render(self.client, keypoints, visibility, sigma, self.timeout,
                                   self.fields.tensors(batch))

    def _attach(self, batch: Any, rendered: tuple[list, dict]) -> Any:
        named, replaced = rendered
        return self.fields.attach(batch, named, replaced)


def _renderer(
    client_or_target: Any, timeout: float | None, target: str, output: str,
    ready_timeout: float | None,
) -> RenderCalls:
    """What renders the batches: a client made for a target, the local renderer, or the object
    given (one that only has the client's typed methods is adapted to take options whole)."""
    made = isinstance(client_or_target, str) and client_or_target != LOCAL
    if ready_timeout != DEFAULT_READY_TIMEOUT_S and not made:
        raise ArgumentError("ready_timeout", "only for a client made from a target (a client "
                                             "given keeps its own)")
    if isinstance(client_or_target, str) and client_or_target == LOCAL:
        return LocalRenderer()
    if isinstance(client_or_target, str):
        return HeatmapClient(
            client_or_target, timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout,
            ready_timeout=ready_timeout,
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
