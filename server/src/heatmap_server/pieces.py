"""How a render is cut into pieces: each about ``PIECE_WORK`` element passes, a few ms on a CPU
core, so that between two pieces the device thread can serve lighter work that came meanwhile and
notice that every caller went away.

Work is counted as the reply layouts count it (``heatmap_client.wire.layouts``): a dense element
is one pass, a profile element ``PROFILE_ELEMENT_PASSES``, a SimCC label element
``SIMCC_ELEMENT_PASSES``. Dense renders are cut by whole samples, then one sample's keypoints, then
one keypoint's instances (merged by maximum); factorised ones (profiles, profile tables, SimCC
labels) by whole samples, then one sample's keypoints, every instance of them together.
"""

from __future__ import annotations

from dataclasses import replace

from heatmap_client.wire import PROFILE_ELEMENT_PASSES, SIMCC_ELEMENT_PASSES
from heatmap_render import RenderArgs, SimccArgs

__all__ = [
    "ALL",
    "PIECE_WORK",
    "dense_pieces",
    "factorised_pieces",
    "piece_args",
    "point_work",
]

# Element passes per piece.
PIECE_WORK = 16 * 1024 * 1024

ALL = slice(None)


def piece_args(args, rows: slice, keys: slice, instances: slice = ALL):
    """``args`` (:class:`RenderArgs` or :class:`SimccArgs`) for samples ``rows``, ``instances``
    and keypoints ``keys``: every per-sample field is ``(B, N, K, ...)``; per-keypoint sigmas are
    sliced along."""
    parts = {
        name: None if getattr(args, name) is None else getattr(args, name)[rows, instances, keys]
        for name in args.PER_SAMPLE_FIELDS
    }
    if isinstance(args, RenderArgs) and len(args.sigmas) > 1:
        parts["sigmas"] = args.sigmas[keys]
    return replace(args, **parts)


def point_work(args: RenderArgs | SimccArgs, dense: bool) -> int:
    """The work of one keypoint of one instance: its heatmap, its two profiles, or its labels."""
    if isinstance(args, SimccArgs):
        height, width = args.label_size
        return (height + width) * SIMCC_ELEMENT_PASSES
    height, width = args.size
    return height * width if dense else (height + width) * PROFILE_ELEMENT_PASSES


def dense_pieces(args: RenderArgs, min_pieces: int) -> list[tuple[slice, slice, slice]]:
    """(samples, keypoints, instances) slices of about ``PIECE_WORK`` each, and at least
    ``min_pieces`` batch slices. Whole samples where they fit; else one sample's keypoints; else
    one keypoint's instances, a few per piece (each later range is max-merged into the first)."""
    batch, instances, keypoints, _ = args.keypoints.shape
    height, width = args.size
    per_sample = instances * keypoints * height * width
    if per_sample == 0:
        return [(ALL, ALL, ALL)]  # nothing to draw, however many samples
    rows = max(1, min(-(-batch // min_pieces), PIECE_WORK // per_sample))
    if rows > 1 or per_sample <= PIECE_WORK or (keypoints <= 1 and instances <= 1):
        return [(slice(start, start + rows), ALL, ALL) for start in range(0, batch, rows)]
    per_keypoint = instances * height * width
    if per_keypoint <= PIECE_WORK or instances <= 1:
        keys = max(1, PIECE_WORK // per_keypoint)
        return [
            (slice(sample, sample + 1), slice(start, start + keys), ALL)
            for sample in range(batch)
            for start in range(0, keypoints, keys)
        ]
    # Merging a range costs one more pass over the plane: ranges of a few pieces' work.
    step = max(1, 8 * PIECE_WORK // (height * width))
    return [
        (slice(sample, sample + 1), slice(key, key + 1), slice(start, start + step))
        for sample in range(batch)
        for key in range(keypoints)
        for start in range(0, instances, step)
    ]


def factorised_pieces(args: RenderArgs | SimccArgs) -> list[tuple[slice, slice]]:
    """(samples, keypoints) slices of about ``PIECE_WORK`` each for a factorised render: whole
    samples where they fit, else one sample's keypoints (all their instances: at most
    ``max_instances`` times two profiles, far below a piece)."""
    batch, instances, keypoints, _ = args.keypoints.shape
    per_keypoint = instances * point_work(args, dense=False)
    per_sample = keypoints * per_keypoint
    if per_sample == 0 or batch * per_sample <= PIECE_WORK:
        return [(ALL, ALL)]
    if per_sample <= PIECE_WORK or keypoints <= 1:
        rows = max(1, PIECE_WORK // per_sample)
        return [(slice(start, start + rows), ALL) for start in range(0, batch, rows)]
    keys = max(1, PIECE_WORK // per_keypoint)
    return [
        (slice(sample, sample + 1), slice(start, start + keys))
        for sample in range(batch)
        for start in range(0, keypoints, keys)
    ]
