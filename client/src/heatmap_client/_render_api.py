"""The render methods, written once for :class:`HeatmapClient`, :class:`AsyncHeatmapClient` and
the in-process renderer of ``HeatmapCollate("local")``.

Each typed method (``render``, ``render_profiles``, ``render_simcc``) checks its arguments into an
options object (:class:`RenderOptions`, :class:`SimccOptions`) and hands it to its ``*_with`` twin
(``render_with(options, keypoints, ...)``), which is what code holding options already calls (the
collate, the CLI). The network clients implement the twins by building a request and supplying how
it travels (``_call`` blocks and returns the result, or returns an awaitable of it); the local
renderer implements them by rendering. ``render_many`` items are dicts of :meth:`render`'s keyword
arguments, or ``{"keypoints": ..., "options": RenderOptions(...)}``; with ``"profiles": True`` an
item is a :meth:`render_profiles` call.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import numpy as np

from .off_map import OffMapCheck
from .options import RenderOptions, SimccOptions, made_options, profiles_codec, split_sigma
from .replies import PendingReply
from .requests import build_request, build_simcc_request
from .wire.vocabulary import METHODS, ArgumentError

__all__ = ["KeywordRenderer", "RemoteRenderCalls", "RenderCalls", "pending_from_item"]

ResultT = TypeVar("ResultT")
ProfilesT = TypeVar("ProfilesT")
SimccT = TypeVar("SimccT")

_PER_REQUEST = ("keypoints", "visibility")
_PER_RESULT = ("keep_dtype", "out")
# An item with "profiles": True is a render_profiles call (a ProfilesResult comes back).
_PROFILES = "profiles"


def pending_from_item(item: Mapping[str, Any], request_id: int) -> PendingReply:
    """A ``render_many`` item (``render``'s keyword arguments as a dict) as its pending reply.

    Raises:
        ArgumentError: naming an unknown key, or any option ``RenderOptions`` refuses.
    """
    if not isinstance(item, Mapping):
        raise ArgumentError(
            "requests", f"items are dicts of render()'s arguments, got {type(item).__name__}"
        )
    options = item.get("options")
    known = set(_PER_REQUEST) | set(_PER_RESULT) | {_PROFILES}
    known |= {"options", "sigma"} if options is not None else set(RenderOptions.names())
    unknown = sorted(set(item) - known)
    if unknown:
        raise ArgumentError(unknown[0], f"not an argument of render() (known: {sorted(known)})")
    if "keypoints" not in item:
        raise ArgumentError("keypoints", "required in every render_many item")
    sigma_map = None
    if options is None:
        given = {name: item[name] for name in RenderOptions.names() if name in item}
        if "sigma" in given:
            given["sigma"], sigma_map = split_sigma(given["sigma"])
        options = RenderOptions(**given)
    elif not isinstance(options, RenderOptions):
        raise ArgumentError("options", f"expected RenderOptions, got {type(options).__name__}")
    else:
        sigma_map = item.get("sigma")
    profiles = bool(item.get(_PROFILES, False))
    if profiles:
        for name in _PER_RESULT:
            if name in item:
                raise ArgumentError(name, "not an argument of render_profiles() (profiles are "
                                          "float32 and decoded into their own arrays)")
        options = options.profiles()  # float32, in the codec that carries them cheapest
    request = build_request(
        item["keypoints"], options, visibility=item.get("visibility"), sigma_map=sigma_map,
        request_id=request_id,
    )
    if profiles:
        return PendingReply(request, profiles=True)
    return PendingReply(request, keep_dtype=item.get("keep_dtype", False), out=item.get("out"))


class RenderCalls(Generic[ResultT, ProfilesT, SimccT]):
    """``render``, ``render_profiles`` and ``render_simcc``: the arguments are checked here, at
    the call, and every error names the argument as written; the ``*_with`` twins do the work."""

    def _checked(self, result: Any, options: RenderOptions, visibility: Any) -> Any:
        """``result`` (or, awaitable, what it gives) after the off-map check: this renderer
        warns once when most keypoints a batch asked to draw landed off the heatmap."""
        check = getattr(self, "_off_map_check", None)
        if check is None:
            check = self._off_map_check = OffMapCheck()
        if inspect.isawaitable(result):
            return _checked_later(result, check, options, visibility)
        check(result, options, visibility)
        return result

    def render_with(
        self, options: RenderOptions, keypoints: Any, *, visibility: Any = None,
        sigma: Any = None, timeout: float | None = None, keep_dtype: bool = False,
        out: np.ndarray | None = None,
    ) -> ResultT:
        """:meth:`render` with its options already made; ``sigma`` is this batch's own array
        (only when ``options.sigma`` is None)."""
        raise NotImplementedError

    def render_profiles_with(
        self, options: RenderOptions, keypoints: Any, *, visibility: Any = None,
        sigma: Any = None, timeout: float | None = None,
    ) -> ProfilesT:
        """:meth:`render_profiles` with its options already made (dtype and codec are not used:
        profiles are float32, codec ``separable``)."""
        raise NotImplementedError

    def render_simcc_with(
        self, options: SimccOptions, keypoints: Any, *, visibility: Any = None,
        timeout: float | None = None,
    ) -> SimccT:
        """:meth:`render_simcc` with its options already made."""
        raise NotImplementedError

    def render(
        self,
        keypoints: Any,
        *,
        size: tuple[int, int],
        sigma: Any,
        method: str = "msra",
        coords: str = "heatmap",
        input_size: tuple[int, int] | None = None,
        visibility: Any = None,
        dtype: str = "float32",
        codec: str = "auto",
        timeout: float | None = None,
        keep_dtype: bool = False,
        out: np.ndarray | None = None,
    ) -> ResultT:
        """Renders one batch of heatmaps ``(B, K, H, W)``.

        Args:
            keypoints: ``(B, K, 2)`` or ``(B, N, K, 2)`` (x, y) in ``coords``.
            size, method, coords, input_size, dtype, codec: see :class:`RenderOptions`
                (sizes are ``(H, W)``; mmpose configs write ``(W, H)``).
            sigma: in heatmap pixels: a number or ``(K,)`` (see :class:`RenderOptions`), or this
                batch's own array that broadcasts against ``keypoints.shape[:-1]``: ``(B, N, 1)``
                per instance, ``(B, 1, 1)`` per sample, ``(B, N, K)``; ``(B, 1)`` or ``(B, K)``
                for ``(B, K, 2)`` keypoints. Arrays travel as float64.
            visibility: ``(B, K)`` or ``(B, N, K)``; a keypoint is drawn when it is >= 0.5.
            timeout: deadline in seconds (None: the client's default).
            keep_dtype: return the wire storage instead of float32 (see :class:`RenderResult`).
            out: a C-contiguous array of the result's shape and dtype to decode into.

        Returns:
            a :class:`RenderResult` (awaitable on :class:`AsyncHeatmapClient`).

        Raises:
            ArgumentError: a ``ValueError`` naming the argument, before anything is sent.
            HeatmapError: the server's status; ``argument`` names the argument at fault.
        """
        shared, per_batch = split_sigma(sigma)
        options = made_options(
            RenderOptions, size=size, sigma=shared, method=method, coords=coords,
            input_size=input_size, dtype=dtype, codec=codec,
        )
        return self.render_with(options, keypoints, visibility=visibility, sigma=per_batch,
                                timeout=timeout, keep_dtype=keep_dtype, out=out)

    def render_profiles(
        self,
        keypoints: Any,
        *,
        size: tuple[int, int],
        sigma: Any,
        method: str = "msra",
        coords: str = "heatmap",
        input_size: tuple[int, int] | None = None,
        visibility: Any = None,
        timeout: float | None = None,
    ) -> ProfilesT:
        """Renders one batch as its 1D profiles; the server renders nothing dense.

        Arguments as :meth:`render`. The profiles are 27-41x fewer numbers than the dense tensor at
        common sizes, and travel as few bytes as exactness allows (codec ``profile_table`` for
        ``seed`` and ``msra``, whose profiles repeat, ``separable`` for ``udp`` and ``dark``);
        ``result.dense()`` gives exactly what :meth:`render` would.

        Returns:
            a :class:`ProfilesResult` (awaitable on :class:`AsyncHeatmapClient`).
        """
        shared, per_batch = split_sigma(sigma)
        options = made_options(
            RenderOptions, size=size, sigma=shared, method=method, coords=coords,
            input_size=input_size,
            codec=profiles_codec(method) if method in METHODS.names else "separable",
        )
        return self.render_profiles_with(options, keypoints, visibility=visibility,
                                         sigma=per_batch, timeout=timeout)

    def render_simcc(
        self,
        keypoints: Any,
        input_size: tuple[int, int],
        sigma: Any,
        *,
        split_ratio: float = 2.0,
        smoothing: str = "gaussian",
        label_smooth_weight: float = 0.0,
        normalize: bool = True,
        visibility: Any = None,
        dtype: str = "float32",
        codec: str = "zstd",
        timeout: float | None = None,
    ) -> SimccT:
        """Renders one batch of SimCC labels, as mmpose's ``SimCCLabel.encode`` (RTMPose).

        Args:
            keypoints: ``(B, K, 2)`` or ``(B, N, K, 2)`` (x, y) in input-image pixels.
            input_size: ``(H_in, W_in)`` (mmpose configs write ``input_size=(W, H)``).
            sigma: in label bins, a number or ``(sigma_x, sigma_y)`` in mmpose's order.
            split_ratio, smoothing, label_smooth_weight, normalize, dtype, codec: see
                :class:`SimccOptions`.
            visibility: ``(B, K)`` or ``(B, N, K)``; a keypoint is drawn when it is >= 0.5.
            timeout: deadline in seconds (None: the client's default).

        Returns:
            a :class:`SimccResult` with float32 ``x_labels`` ``(B, [N,] K, Wx)``, ``y_labels``
            ``(B, [N,] K, Hy)`` and ``weights`` (awaitable on :class:`AsyncHeatmapClient`).

        Raises:
            ArgumentError: a ``ValueError`` naming the argument, before anything is sent.
            HeatmapError: the server's status; ``argument`` names the argument at fault.
        """
        options = made_options(
            SimccOptions, input_size=input_size, sigma=sigma, split_ratio=split_ratio,
            smoothing=smoothing, label_smooth_weight=label_smooth_weight, normalize=normalize,
            dtype=dtype, codec=codec,
        )
        return self.render_simcc_with(options, keypoints, visibility=visibility, timeout=timeout)


async def _checked_later(result: Any, check: OffMapCheck, options: RenderOptions,
                         visibility: Any) -> Any:
    done = await result
    check(done, options, visibility)
    return done


class RemoteRenderCalls(RenderCalls[ResultT, ProfilesT, SimccT]):
    """The ``*_with`` methods of a network client: a request built from the options, and its
    reply read by ``_call`` (which the sync and the asyncio client each supply)."""

    def _call(self, pending: PendingReply, timeout: float | None) -> Any:
        raise NotImplementedError

    def render_with(self, options, keypoints, *, visibility=None, sigma=None, timeout=None,
                    keep_dtype=False, out=None):
        request = build_request(keypoints, options, visibility=visibility, sigma_map=sigma)
        result = self._call(PendingReply(request, keep_dtype=keep_dtype, out=out), timeout)
        return self._checked(result, options, visibility)

    def render_profiles_with(self, options, keypoints, *, visibility=None, sigma=None,
                             timeout=None):
        request = build_request(keypoints, options.profiles(), visibility=visibility,
                                sigma_map=sigma)
        result = self._call(PendingReply(request, profiles=True), timeout)
        return self._checked(result, options, visibility)

    def render_simcc_with(self, options, keypoints, *, visibility=None, timeout=None):
        request = build_simcc_request(keypoints, options, visibility=visibility)
        return self._call(PendingReply(request), timeout)


class KeywordRenderer(RenderCalls[Any, Any, Any]):
    """Any object with the client's typed methods (``render(keypoints, size=..., sigma=...,
    ...)``), given the ``*_with`` methods: the options are spread into keyword arguments here,
    the one place they are."""

    def __init__(self, renderer: Any):
        self.renderer = renderer

    def __repr__(self) -> str:
        return repr(self.renderer)

    def render_with(self, options, keypoints, *, visibility=None, sigma=None, timeout=None,
                    keep_dtype=False, out=None):
        kwargs = options.as_kwargs()
        if sigma is not None:
            kwargs["sigma"] = sigma
        return self.renderer.render(keypoints, visibility=visibility, timeout=timeout,
                                    keep_dtype=keep_dtype, **kwargs)

    def render_profiles_with(self, options, keypoints, *, visibility=None, sigma=None,
                             timeout=None):
        kwargs = {name: value for name, value in options.as_kwargs().items()
                  if name not in ("dtype", "codec")}
        if sigma is not None:
            kwargs["sigma"] = sigma
        return self.renderer.render_profiles(keypoints, visibility=visibility, timeout=timeout,
                                             **kwargs)

    def render_simcc_with(self, options, keypoints, *, visibility=None, timeout=None):
        return self.renderer.render_simcc(keypoints, visibility=visibility, timeout=timeout,
                                          **options.as_kwargs())
