"""Where a batch keeps what ``HeatmapCollate`` reads and writes, for dict and tuple samples alike.

- :meth:`BatchFields.padded`: samples whose numbers of people differ are padded to the most
  people in the batch with people far off every heatmap (their visibility 0 where the samples
  have one, their sigma 1): such a person is never drawn and its weight is 0, so each sample's
  targets are what rendering it alone gives, and torch's ``default_collate`` can stack them.
- :meth:`BatchFields.inputs`: the collated keypoints, visibility and per-sample sigma, as the
  renderer takes them (a per-sample sigma ``()``, ``(N, 1)``, ``(K,)``, ... becomes the batch's
  ``(B, 1, 1)``, ``(B, N, 1)``, ``(B, 1, K)``, ...).
- :meth:`BatchFields.attach`: the rendered targets added to the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["PAD_COORDINATE", "BatchFields", "Key"]

Key = str | int

# A coordinate outside every heatmap, whatever the space, size and method (the renderer clamps
# coordinates this far off to its own bound): a padded person is never drawn and weighs 0.
PAD_COORDINATE = -1e6


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class BatchFields:
    """The keys (dict samples) or indices (tuple samples) of the keypoints, the visibility and a
    per-sample sigma; ``None`` for a field the samples do not carry."""

    def __init__(self, keypoints: Key, visibility: Key | None, sigma: Key | None):
        self.keypoints, self.visibility, self.sigma = keypoints, visibility, sigma

    def _get(self, batch: Any, key: Key, name: str, required: bool) -> Any:
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

    def _optional(self, batch: Any, key: Key | None, name: str) -> Any:
        return None if key is None else self._get(batch, key, name, False)

    # --- samples with different numbers of people ------------------------------------------

    def padded(self, samples: list[Any]) -> list[Any]:
        """``samples``, those with fewer people than the most in the batch padded with people
        who are never drawn; unchanged when every sample has as many (or none has people)."""
        counts = [_people(self._get(sample, self.keypoints, "keypoints_key", True))
                  for sample in samples]
        if len(set(counts)) <= 1 or None in counts:
            return samples
        most = max(counts)
        return [sample if count == most else self._pad(sample, most)
                for sample, count in zip(samples, counts)]

    def _pad(self, sample: Any, people: int) -> Any:
        keypoints = _numpy(self._get(sample, self.keypoints, "keypoints_key", True))
        missing = people - keypoints.shape[0]
        fields = {self.keypoints: np.concatenate([
            keypoints, np.full((missing, *keypoints.shape[1:]), PAD_COORDINATE, keypoints.dtype)
        ])}
        # Per person: a visibility (N, K), a sigma (N, 1) or (N, K); a sigma () or (K,) is the
        # sample's, shared by its people, and needs no padding.
        for key, fill, name in ((self.visibility, 0.0, "visibility_key"),
                                (self.sigma, 1.0, "sigma_key")):
            value = self._optional(sample, key, name)
            if value is not None and np.ndim(value) == 2:
                value = _numpy(value)
                pad = np.full((missing, *value.shape[1:]), fill, value.dtype)
                fields[key] = np.concatenate([value, pad])
        return _replaced(sample, fields)

    # --- what the renderer takes ------------------------------------------------------------

    def inputs(self, batch: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The batch's keypoints ``(B, [N,] K, 2)``, visibility (or None) and per-batch sigma
        (or None), as numpy arrays."""
        keypoints = _numpy(self._get(batch, self.keypoints, "keypoints_key", True))
        visibility = self._optional(batch, self.visibility, "visibility_key")
        if visibility is not None:
            visibility = _numpy(visibility)
        elif keypoints.ndim == 4:
            # Padded people in a batch without visibility: not asked to be drawn (their weight
            # is 0 either way, and they are no keypoints that missed the map).
            padded = keypoints[..., 0] == PAD_COORDINATE
            if padded.any():
                visibility = (~padded).astype(np.float32)
        # Asked for, a sigma must be there: without it every sample would render with none.
        sigma = None if self.sigma is None else self._get(batch, self.sigma, "sigma_key", True)
        if sigma is not None:
            sigma = _numpy(sigma).astype(np.float64)
            lead = keypoints.ndim - 2  # the sample's (N, K) or (K,)
            missing = lead - (sigma.ndim - 1)
            if missing < 0:
                raise ValueError(
                    f"sigma_key: a sample's sigma has shape {sigma.shape[1:]}, more axes than "
                    f"its keypoints' {keypoints.shape[1:-1]}"
                )
            sigma = sigma.reshape(sigma.shape[0], *([1] * missing), *sigma.shape[1:])
        return keypoints, visibility, sigma

    def tensors(self, batch: Any) -> list[torch.Tensor]:
        """The batch's keypoints and visibility as they are, where they are float32 tensors (what
        a separable target can share its storage with)."""
        found = [self._get(batch, self.keypoints, "keypoints_key", True),
                 self._optional(batch, self.visibility, "visibility_key")]
        return [value for value in found if isinstance(value, torch.Tensor)
                and value.dtype == torch.float32 and not value.requires_grad]

    # --- the targets, added ----------------------------------------------------------------

    def attach(self, batch: Any, named: list[tuple[str, Any]],
               replaced: dict[int, torch.Tensor] | None = None) -> Any:
        """``batch`` with the ``(key, value)`` targets added (dict batches: under their keys;
        tuple batches: appended in order), and the tensors whose ``id`` ``replaced`` names
        swapped for their stand-ins (the same values in a shared storage)."""
        if isinstance(batch, Mapping):
            items = {key: (replaced or {}).get(id(value), value) for key, value in batch.items()}
            return {**items, **dict(named)}
        items = [(replaced or {}).get(id(value), value) for value in batch]
        return (*items, *(value for _, value in named))


def _people(keypoints: Any) -> int | None:
    """N of a sample's ``(N, K, 2)`` keypoints; None for ``(K, 2)``."""
    shape = np.shape(keypoints)
    return shape[0] if len(shape) == 3 else None


def _replaced(sample: Any, fields: dict[Key, Any]) -> Any:
    if isinstance(sample, Mapping):
        return {**sample, **fields}
    items = list(sample)
    for key, value in fields.items():
        items[key] = value
    return tuple(items)
