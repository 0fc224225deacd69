"""Factorised renders on the device: profiles, profile tables and SimCC labels, into host arrays.

Nothing dense is rendered: a keypoint is two rows (profiles) or two label rows (SimCC). A group
whose work exceeds ``PIECE_WORK`` renders piece by piece (``pieces.factorised_pieces``) into host
arrays of the whole reply, calling ``between_pieces`` between them as dense renders do; a group of
one piece is rendered in one call and handed over as it comes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from heatmap_render import (
    RenderArgs,
    SimccArgs,
    profile_table_from_args,
    profiles_from_args,
    simcc_from_args,
)

from .jobs import RenderJob
from .pieces import ALL, factorised_pieces, piece_args

__all__ = ["by_job", "host_array", "render_profile_table", "render_profiles", "render_simcc"]

# Per job: its arrays in payload order, and its weights.
JobParts = list[tuple[list[np.ndarray], np.ndarray]]


def host_array(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.uint16)  # numpy has no bfloat16: ship the raw bits
    return tensor.cpu().numpy()


def by_job(outputs: list[np.ndarray], weights: np.ndarray, jobs: list[RenderJob]) -> JobParts:
    """Each job's slice (along B) of the group's host arrays and weights."""
    parts, offset = [], 0
    for job in jobs:
        rows = slice(offset, offset + job.args.batch)
        offset += job.args.batch
        parts.append(([array[rows] for array in outputs], weights[rows]))
    return parts


def _job_table(table: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One job's profiles: the rows of the group's ``table`` its ``index`` uses (in table order),
    and its index into them, uint32 as the wire has it. A mark per row and a running count: a
    kernel table has a few dozen rows per sigma (numpy, on the host: for arrays this small its
    calls cost a fraction of torch's)."""
    if table.shape[0] == index.size:
        return table, index.astype(np.uint32)  # one row per profile already: nothing to cut
    used = np.zeros(table.shape[0], dtype=bool)
    used[index.reshape(-1)] = True
    position = np.cumsum(used, dtype=np.uint32) - 1
    return table[used], position[index]


def _at(args: RenderArgs | SimccArgs, rows: slice, keys: slice) -> tuple[slice, ...]:
    """Where a piece goes in an array led by ``(B, [N,] K)``: ``[N,]`` as the keypoints came."""
    return (rows, ALL, keys) if args.has_instances else (rows, keys)


def _lead(args: RenderArgs | SimccArgs) -> tuple[int, ...]:
    batch, instances, keypoints, _ = args.keypoints.shape
    return (batch, instances, keypoints) if args.has_instances else (batch, keypoints)


def render_profiles(args: RenderArgs, jobs: list[RenderJob],
                    between_pieces: Callable[[], None]) -> JobParts:
    """Rows ``(B, N, K, H)`` then cols ``(B, N, K, W)``, float32, and the weights."""
    pieces = factorised_pieces(args)
    if len(pieces) == 1:
        profiles = profiles_from_args(args)
        outputs = [host_array(profiles.rows), host_array(profiles.cols)]
        return by_job(outputs, host_array(profiles.weights), jobs)
    batch, instances, keypoints, _ = args.keypoints.shape
    height, width = args.size
    rows_out = np.empty((batch, instances, keypoints, height), np.float32)
    cols_out = np.empty((batch, instances, keypoints, width), np.float32)
    weights = np.empty(_lead(args), np.float32)
    for number, (rows, keys) in enumerate(pieces):
        if number:
            between_pieces()
        part = profiles_from_args(piece_args(args, rows, keys))
        rows_out[rows, :, keys] = host_array(part.rows)
        cols_out[rows, :, keys] = host_array(part.cols)
        weights[_at(args, rows, keys)] = host_array(part.weights)
    return by_job([rows_out, cols_out], weights, jobs)


class _Tables:
    """One axis's tables from every piece, each once: a shared kernel table (the same tensor in
    every piece) is kept once, a piece's own rows are appended; ``offset`` places a piece's
    index into the joined table."""

    def __init__(self):
        self._parts: list[np.ndarray] = []
        self._held: list[torch.Tensor] = []  # alive, so that no address is reused meanwhile
        self._offsets: dict[tuple[int, tuple[int, ...]], int] = {}
        self._rows = 0

    def offset(self, table: torch.Tensor) -> int:
        key = (table.data_ptr(), tuple(table.shape))
        if key not in self._offsets:
            self._offsets[key] = self._rows
            self._parts.append(host_array(table))
            self._held.append(table)
            self._rows += table.shape[0]
        return self._offsets[key]

    def joined(self) -> np.ndarray:
        return self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts)


def render_profile_table(args: RenderArgs, jobs: list[RenderJob],
                         between_pieces: Callable[[], None]) -> JobParts:
    """Each job's distinct profiles, its index into them, and its weights."""
    pieces = factorised_pieces(args)
    if len(pieces) == 1:
        table = profile_table_from_args(args, compact=False)  # cut per job below, on the host
        tables = [host_array(table.row_table), host_array(table.col_table)]
        indices = [host_array(table.row_index), host_array(table.col_index)]
        weights = host_array(table.weights)
    else:
        joined = [_Tables(), _Tables()]
        indices = [np.empty(args.keypoints.shape[:3], np.int64) for _ in joined]
        weights = np.empty(_lead(args), np.float32)
        for number, (rows, keys) in enumerate(pieces):
            if number:
                between_pieces()
            part = profile_table_from_args(piece_args(args, rows, keys), compact=False)
            for axis, (table, index) in enumerate(
                    ((part.row_table, part.row_index), (part.col_table, part.col_index))):
                indices[axis][rows, :, keys] = host_array(index) + joined[axis].offset(table)
            weights[_at(args, rows, keys)] = host_array(part.weights)
        tables = [axis.joined() for axis in joined]
    parts, offset = [], 0
    for job in jobs:
        rows = slice(offset, offset + job.args.batch)
        offset += job.args.batch
        (row_table, row_index), (col_table, col_index) = (
            _job_table(values, index[rows]) for values, index in zip(tables, indices))
        parts.append(([row_table, col_table, row_index, col_index], weights[rows]))
    return parts


def render_simcc(args: SimccArgs, jobs: list[RenderJob], between_pieces: Callable[[], None],
                 to_wire: Callable[[torch.Tensor], torch.Tensor]) -> JobParts:
    """The x and y labels in the wire dtype (``to_wire``) on the host, and the weights."""
    pieces = factorised_pieces(args)
    if len(pieces) == 1:
        labels = simcc_from_args(args)
        outputs = [host_array(to_wire(labels.x_labels)), host_array(to_wire(labels.y_labels))]
        return by_job(outputs, host_array(labels.weights), jobs)
    lead = _lead(args)
    outputs: list[np.ndarray] = []
    weights = np.empty(lead, np.float32)
    for number, (rows, keys) in enumerate(pieces):
        if number:
            between_pieces()
        labels = simcc_from_args(piece_args(args, rows, keys))
        at = _at(args, rows, keys)
        for axis, values in enumerate((labels.x_labels, labels.y_labels)):
            stored = host_array(to_wire(values))
            if len(outputs) == axis:
                outputs.append(np.empty((*lead, stored.shape[-1]), stored.dtype))
            outputs[axis][at] = stored
        weights[at] = host_array(labels.weights)
    return by_job(outputs, weights, jobs)
