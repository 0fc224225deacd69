"""Rendering a whole keypoint file for ``heatmap-client render``: in requests sized to the server's
limits, pipelined, and written to ``.npy`` or ``.npz`` as the replies arrive.

What this process holds is a few requests' worth of heatmaps, never the file's: each reply is
decoded, appended to the output and dropped. A ``.npy`` is numpy's header for the whole
``(B, K, H, W)`` array followed by the rows in order, written with plain file writes (a
memory-mapped output would count every page written in this process's resident memory until it
is unmapped). Output goes to a temporary file beside the target, renamed onto it once complete, so
an interrupted or failed run never leaves a file that looks whole.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from heatmap.v1 import heatmap_pb2 as pb

from ._client import HeatmapClient
from ._errors import HeatmapError
from .keypoint_files import KeypointSet
from .options import RenderOptions
from .requests import build_request
from .results import RenderResult
from .wire import layout_of

__all__ = [
    "DEFAULT_REQUEST_BYTES",
    "Chunk",
    "NpyOutput",
    "NpzOutput",
    "Rendered",
    "landed_counts",
    "plan_chunks",
    "progress_bar",
    "render_chunks",
    "render_to",
    "samples_per_request",
]

# Float32 heatmap bytes per request unless the server's limits ask for fewer: large enough that a
# request's overhead is noise, small enough that the replies in flight stay a few tens of MB.
DEFAULT_REQUEST_BYTES = 16 << 20
# Requests in flight on the stream: the server renders the next ones while this one is written.
WINDOW = 4


@dataclass(frozen=True)
class Chunk:
    """Samples ``start:stop`` of the set, rendered in one request with ``options``."""

    start: int
    stop: int
    options: RenderOptions

    def __len__(self) -> int:
        return self.stop - self.start


def _probe(options: RenderOptions, lead: tuple[int, ...], batch: int,
           visibility: bool) -> pb.RenderRequest:
    keypoints = np.zeros((batch, *lead, 2), np.float32)
    weights = np.zeros((batch, *lead), np.float32) if visibility else None
    return build_request(keypoints, options, visibility=weights)


def samples_per_request(limits: pb.Limits, options: RenderOptions, lead: tuple[int, ...], *,
                        visibility: bool,
                        heatmap_bytes: int = DEFAULT_REQUEST_BYTES) -> tuple[int, str]:
    """The most samples of ``lead`` keypoints (``(K,)`` or ``(N, K)``) one request may hold, and
    what binds it.

    The server's ``max_output_elements``, ``max_work_elements``, ``max_request_bytes`` and
    ``reply_budget_bytes`` (0: no limit), each cost counted from the request's reply layout as
    the server counts it: 0 samples (and the limit's name) when one sample is over one of them.
    Then at most ``heatmap_bytes`` of float32 heatmaps (0: no bound), but never less than one
    sample, so that this process holds a few requests' worth whatever the server allows.
    """
    one = _probe(options, lead, 1, visibility)
    layout = layout_of(one)
    per_sample_bytes = _probe(options, lead, 2, visibility).ByteSize() - one.ByteSize()
    overhead = one.ByteSize() - per_sample_bytes + 64  # + the length prefixes' growth
    request_bytes = max(limits.max_request_bytes - overhead, 0)
    costs = [
        ("max_output_elements", limits.max_output_elements, layout.output_elements),
        ("max_work_elements", limits.max_work_elements, layout.work),
        ("max_request_bytes", request_bytes if limits.max_request_bytes else 0, per_sample_bytes),
        ("reply_budget_bytes", limits.reply_budget_bytes, layout.held_bytes),
    ]
    fits = [(bound // cost, name) for name, bound, cost in costs if bound]
    most, bound = min(fits, default=(sys.maxsize, "no limit"))
    height, width = options.size
    own = max(heatmap_bytes // (lead[-1] * height * width * 4), 1) if heatmap_bytes else most
    if most >= 1 and own < most:
        return own, f"{heatmap_bytes >> 20} MiB of heatmaps"
    return most, bound


def plan_chunks(samples: KeypointSet, per_request: int,
                options_for: Callable[[tuple[int, int] | None], RenderOptions]) -> list[Chunk]:
    """The requests that render ``samples`` in order: runs of samples whose images have one size
    (they share ``options_for(size)``; size None where unknown), each cut into requests of at
    most ``per_request`` samples (a run's last one may be smaller)."""
    total = len(samples)
    sizes = samples.image_sizes
    if sizes is None:
        bounds = [0, total]
    else:
        changes = np.flatnonzero((sizes[1:] != sizes[:-1]).any(axis=1)) + 1
        bounds = [0, *changes.tolist(), total]
    chunks = []
    for first, last in zip(bounds[:-1], bounds[1:]):
        size = None if sizes is None or not sizes[first].all() else (
            int(sizes[first][0]), int(sizes[first][1]))
        options = options_for(size)
        chunks += [Chunk(start, min(start + per_request, last), options)
                   for start in range(first, last, per_request)]
    return chunks


def _rows(array: np.ndarray | None, chunk: Chunk) -> np.ndarray | None:
    """A chunk's rows as float32 in memory (from a memory-mapped file of any dtype too)."""
    return None if array is None else np.ascontiguousarray(array[chunk.start:chunk.stop],
                                                           np.float32)


def render_chunks(client: HeatmapClient, samples: KeypointSet, chunks: list[Chunk], *,
                  idle_timeout: float | None) -> Iterator[tuple[Chunk, RenderResult]]:
    """Each chunk with its result, in order: one ``render_with`` call for a single chunk,
    otherwise one ``render_many`` stream with up to :data:`WINDOW` requests in flight (bounded by
    ``idle_timeout`` per wait). A chunk's keypoints are read (and converted to float32) when the
    stream takes them, at most a window ahead of the replies."""
    if len(chunks) == 1:
        (chunk,) = chunks
        yield chunk, client.render_with(chunk.options, _rows(samples.keypoints, chunk),
                                        visibility=_rows(samples.visibility, chunk))
        return
    items = ({"keypoints": _rows(samples.keypoints, chunk),
              "visibility": _rows(samples.visibility, chunk), "options": chunk.options}
             for chunk in chunks)
    results = client.render_many(items, window=WINDOW, idle_timeout=idle_timeout)
    yield from zip(chunks, results)


class _Bar:
    """What the render loop calls on a progress bar, doing nothing (no bar shown)."""

    def update(self, count: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, show: bool | None, *, name: str, requests: int) -> Any:
    """A tqdm bar over ``total`` samples on stderr: with ``show`` None when stderr is a terminal
    and the render takes more than one request, always with True, never with False. Without tqdm
    (``pip install 'heatmap-client[progress]'``) no bar; a note says so when one was asked for."""
    if show is None:
        show = requests > 1 and sys.stderr.isatty()
    if not show:
        return _Bar()
    try:
        from tqdm import tqdm
    except ImportError:
        print("heatmap-client: --progress: no bar without tqdm "
              "(pip install 'heatmap-client[progress]')", file=sys.stderr)
        return _Bar()
    return tqdm(total=total, unit="sample", desc=name, file=sys.stderr, dynamic_ncols=True)


class _ArrayStream:
    """One ``.npy`` array written front to back into ``handle``: numpy's header for the whole
    ``shape``, then rows as they come, which must add up to ``shape[0]``."""

    def __init__(self, handle: BinaryIO, shape: tuple[int, ...], dtype: np.dtype):
        self.handle, self.dtype, self.shape = handle, np.dtype(dtype), shape
        self.rows = 0
        # Format 1.0, as np.save writes it (its header holds any (B, K, H, W) shape).
        npy_format.write_array_header_1_0(handle, {
            "descr": npy_format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": shape})

    def write(self, rows: np.ndarray) -> None:
        if rows.shape[1:] != self.shape[1:] or self.rows + len(rows) > self.shape[0]:
            raise ValueError(f"output: rows {rows.shape} do not continue an array of "
                             f"{self.shape} at row {self.rows}")
        self.handle.write(np.ascontiguousarray(rows, self.dtype).data.cast("B"))
        self.rows += len(rows)

    def check_complete(self) -> None:
        if self.rows != self.shape[0]:
            raise ValueError(f"output: {self.rows} of {self.shape[0]} rows written")


def _partial(path: Path) -> Path:
    """A temporary name beside ``path``, created with the permissions ``open`` gives."""
    return path.with_name(f".{path.name}.{os.getpid()}.part")


class NpyOutput:
    """Heatmaps ``(B, K, H, W)`` float32 to one ``.npy`` and, when asked, the weights to another,
    each written front to back into a temporary file beside it and renamed onto it by
    :meth:`commit` (:meth:`discard` removes them)."""

    def __init__(self, path: Path, shape: tuple[int, ...], weights_path: Path | None,
                 weights_shape: tuple[int, ...]):
        targets = [(path, shape)] + ([(weights_path, weights_shape)] if weights_path else [])
        self._files = []
        self._streams = []
        try:
            for target, target_shape in targets:
                try:
                    handle = open(_partial(target), "xb")
                except OSError as error:  # named as the user wrote it, not the temporary file
                    raise OSError(error.errno, error.strerror, str(target)) from None
                self._files.append((handle, target))
                self._streams.append(_ArrayStream(handle, target_shape, np.float32))
        except BaseException:
            self.discard()
            raise

    def write(self, heatmaps: np.ndarray, weights: np.ndarray) -> None:
        for stream, rows in zip(self._streams, (heatmaps, weights)):
            stream.write(rows)

    def commit(self) -> None:
        for stream in self._streams:
            stream.check_complete()
        for handle, target in self._files:
            handle.close()
            os.replace(handle.name, target)
        self._files = []

    def discard(self) -> None:
        for handle, _ in self._files:
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
        self._files = []


class NpzOutput:
    """``heatmaps`` ``(B, K, H, W)``, ``weights`` and the samples' index arrays in one ``.npz``
    (what ``np.load`` reads, as ``np.savez_compressed`` writes it, at zlib level 1): the heatmaps
    are compressed into the archive as they arrive, the weights gather in an unnamed temporary
    file and join them at :meth:`commit`, which renames the archive onto ``path``."""

    def __init__(self, path: Path, shape: tuple[int, ...], weights_shape: tuple[int, ...],
                 index: dict[str, np.ndarray]):
        self._path, self._index = path, index
        try:
            self._zip = zipfile.ZipFile(_partial(path), "x", zipfile.ZIP_DEFLATED,
                                        compresslevel=1)
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(path)) from None
        self._weights_file = None
        try:
            self._entry = self._zip.open("heatmaps.npy", "w", force_zip64=True)
            self._heatmaps = _ArrayStream(self._entry, shape, np.float32)
            self._weights_file = tempfile.TemporaryFile()
            self._weights = _ArrayStream(self._weights_file, weights_shape, np.float32)
        except BaseException:
            self.discard()
            raise

    def write(self, heatmaps: np.ndarray, weights: np.ndarray) -> None:
        self._heatmaps.write(heatmaps)
        self._weights.write(weights)

    def commit(self) -> None:
        self._heatmaps.check_complete()
        self._weights.check_complete()
        self._entry.close()
        self._weights_file.seek(0)
        with self._zip.open("weights.npy", "w", force_zip64=True) as entry:
            shutil.copyfileobj(self._weights_file, entry, 1 << 20)
        for name, values in self._index.items():
            with self._zip.open(f"{name}.npy", "w") as entry:
                npy_format.write_array(entry, np.asarray(values), allow_pickle=False)
        self._weights_file.close()
        self._zip.close()
        os.replace(self._zip.filename, self._path)

    def discard(self) -> None:
        if self._weights_file is not None:
            self._weights_file.close()
        entry = getattr(self, "_entry", None)
        if entry is not None and not entry.closed:
            entry.close()
        self._zip.close()
        Path(self._zip.filename).unlink(missing_ok=True)


def landed_counts(weights: np.ndarray, visibility: np.ndarray | None) -> tuple[int, int]:
    """(keypoints drawn on the heatmap, keypoints labelled): weight 0 marks a window off the map;
    a keypoint is labelled when its visibility is at least 0.5 (every one without visibility)."""
    drawn = np.ones(weights.shape, bool) if visibility is None else visibility >= 0.5
    return int(((weights > 0) & drawn).sum()), int(drawn.sum())


@dataclass
class Rendered:
    """What a whole render cost and drew, summed over its requests; ``heat`` ``(K, H, W)`` the
    max over every sample (for a preview; None when none was asked for)."""

    requests: int = 0
    wire_bytes: int = 0
    server_us: int = 0
    landed: int = 0
    labelled: int = 0
    heat: np.ndarray | None = None


def render_to(output: NpyOutput | NpzOutput, client: HeatmapClient, samples: KeypointSet,
              chunks: list[Chunk], *, bar: Any, idle_timeout: float | None,
              heat: bool = False) -> Rendered:
    """Renders ``chunks`` of ``samples`` into ``output`` as the replies arrive (not committed),
    advancing ``bar`` by each request's samples.

    Raises:
        HeatmapError: the server's status, saying which samples the failed request held.
    """
    done = Rendered()
    results = render_chunks(client, samples, chunks, idle_timeout=idle_timeout)
    while True:
        try:
            chunk, result = next(results)
        except StopIteration:
            return done
        except HeatmapError as error:
            if len(chunks) == 1:
                raise
            failed = chunks[done.requests]
            raise HeatmapError(error.code, f"{error.message} (samples {failed.start}:"
                               f"{failed.stop} of {len(samples)})", error.argument) from None
        output.write(result.heatmaps, result.weights)
        landed, labelled = landed_counts(result.weights, _rows(samples.visibility, chunk))
        done.landed += landed
        done.labelled += labelled
        done.requests += 1
        done.wire_bytes += result.wire_bytes
        done.server_us += result.timings.total_us
        if heat:
            most = result.heatmaps.max(axis=0)
            done.heat = most if done.heat is None else np.maximum(done.heat, most)
        bar.update(len(chunk))
