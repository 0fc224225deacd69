"""Reused output buffers: a fresh 35 MB tensor costs more in page faults than the whole render.

Buffers are flat storage per (dtype, device, pinned), handed out as views of the shape asked for,
so coalesced batches of varying sizes still reuse the same memory. A lease counts its users (the
requests of one coalesced render); the buffer goes back to the pool when the last one releases
it, i.e. after every slice of it has been encoded (codec ``none``: sent). The pool keeps at most
``max_bytes`` idle, and frees a buffer that nobody took for ``idle_s`` seconds: a burst of unusual
shapes must not leave its buffers resident for ever.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict

import torch

__all__ = ["BufferPool", "Lease"]


class Lease:
    """A pooled buffer shared by ``users`` holders; the last :meth:`release` returns it."""

    def __init__(self, pool: BufferPool, storage: torch.Tensor, key: tuple, users: int):
        self._pool = pool
        self._storage = storage
        self._key = key
        self._users = users
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._users <= 0:
                # One more release than holders would hand the buffer out while still in use.
                raise RuntimeError("lease released more often than it was taken")
            self._users -= 1
            done = self._users == 0
        if done:
            self._pool._give_back(self._storage, self._key)


def _nbytes(storage: torch.Tensor) -> int:
    return storage.numel() * storage.element_size()


class BufferPool:
    """Bounded pool of flat tensors.

    Args:
        max_bytes: bytes the pool may keep idle; more are freed instead of kept.
        idle_s: a buffer idle this long is freed (by :meth:`trim`, called on every take and
            give-back and by whoever owns the pool now and then).
    """

    def __init__(self, max_bytes: int = 256 << 20, idle_s: float = 30.0):
        self.max_bytes = max_bytes
        self.idle_s = idle_s
        # Per key, (storage, when it was given back), oldest first.
        self._free: dict[tuple, list[tuple[torch.Tensor, float]]] = defaultdict(list)
        self._idle_bytes = 0
        self._leased_bytes = 0
        self._lock = threading.Lock()
        self.allocations = 0

    def take(
        self,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        *,
        users: int = 1,
        pinned: bool = False,
    ) -> tuple[torch.Tensor, Lease]:
        """A ``shape`` view of a pooled buffer and the lease that gives it back."""
        count = math.prod(shape)
        key = (dtype, device, pinned)
        self.trim()
        with self._lock:
            candidates = self._free[key]
            fits = [i for i, (buffer, _) in enumerate(candidates) if buffer.numel() >= count]
            if fits:
                # The smallest buffer that fits, so large ones stay free for large batches.
                best = min(fits, key=lambda i: candidates[i][0].numel())
                storage, _ = candidates.pop(best)
                self._idle_bytes -= _nbytes(storage)
            else:
                storage = None
        if storage is None:
            # Round up so that batches of slightly different sizes share buffers.
            capacity = 1 << max(12, math.ceil(math.log2(max(count, 1))))
            storage = torch.empty(capacity, dtype=dtype, device=device, pin_memory=pinned)
            self.allocations += 1
        with self._lock:
            self._leased_bytes += _nbytes(storage)
        return storage[:count].view(shape), Lease(self, storage, key, users)

    def _give_back(self, storage: torch.Tensor, key: tuple) -> None:
        size = _nbytes(storage)
        with self._lock:
            self._leased_bytes -= size
            if self._idle_bytes + size <= self.max_bytes:
                self._free[key].append((storage, time.monotonic()))
                self._idle_bytes += size
        self.trim()

    def trim(self) -> int:
        """Frees the buffers idle for ``idle_s`` or more; returns the bytes freed."""
        cutoff = time.monotonic() - self.idle_s
        freed = 0
        with self._lock:
            for key, buffers in self._free.items():
                kept = [(buffer, since) for buffer, since in buffers if since > cutoff]
                freed += sum(_nbytes(buffer) for buffer, since in buffers if since <= cutoff)
                self._free[key] = kept
            self._idle_bytes -= freed
        return freed

    @property
    def leased_bytes(self) -> int:
        """Bytes of the buffers handed out and not yet given back."""
        with self._lock:
            return self._leased_bytes

    @property
    def idle_bytes(self) -> int:
        with self._lock:
            return self._idle_bytes

    @property
    def idle_buffers(self) -> int:
        with self._lock:
            return sum(len(buffers) for buffers in self._free.values())
