"""The batch path: mmpose's targets rendered for the whole batch on the training device.

mmpose renders targets in the data loader's workers (``GenerateTarget``, one sample and one
keypoint at a time) and ships dense heatmaps through the workers' queues. This preprocessor is
mmpose's ``PoseDataPreprocessor`` that, before the usual normalisation and padding, renders every
sample's targets in one call from the keypoints ``TopdownAffine`` transformed, on the device the
model trains on, and writes them where mmpose's heads and losses read them. A config drops
``GenerateTarget`` from its train pipeline, packs the transformed keypoints, and names this
preprocessor with the codec it dropped::

    codec = dict(type='MSRAHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2)
    model = dict(..., data_preprocessor=dict(type='DeviceTargetPreprocessor', encoder=codec,
                                             mean=[...], std=[...], bgr_to_rgb=True))
    train_pipeline = [..., dict(type='TopdownAffine', input_size=codec['input_size']),
                      dict(type='PackPoseInputs', pack_transformed=True)]

The targets are the codec's own (``targets.py``), in the same places and dtypes as the
``GenerateTarget`` path leaves them after ``PackPoseInputs`` and ``pseudo_collate``:
``data_samples[i].gt_fields.heatmaps`` ``(K, H, W)`` or ``gt_instance_labels.keypoint_x_labels``
/ ``keypoint_y_labels`` ``(N, K, L)``, and ``gt_instance_labels.keypoint_weights`` ``(N, K)``.
With ``renderer=`` a ``heatmap_client.HeatmapClient`` (or a config that builds one) the service
renders them instead; heatmaps then travel as their 1D profiles and become dense here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.structures import PixelData
from mmpose.models.data_preprocessors import PoseDataPreprocessor
from mmpose.registry import KEYPOINT_CODECS, MODELS

from ..errors import RenderArgumentError
from .targets import render_targets, target_spec

__all__ = ["DeviceTargetPreprocessor", "batch_keypoints", "write_targets"]


class _Shared:
    """Holds an object that deep copies as itself.

    mmengine deep-copies models (``EMAHook``'s averaged copy, which RTMPose's configs use); a
    service client holds a channel and must be shared by both copies, not cloned.
    """

    def __init__(self, value: Any):
        self.value = value

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self


def _field(sample: Any, name: str) -> Any:
    """``sample.gt_instances.<name>``, or None when the pipeline did not pack it."""
    instances = getattr(sample, "gt_instances", None)
    return None if instances is None else instances.get(name, None)


def _as_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def batch_keypoints(
    data_samples: Sequence[Any], keypoints_field: str, single_instance: bool
) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """The batch's keypoints and visibility, stacked, as ``GenerateTarget`` reads them.

    Args:
        data_samples: ``PoseDataSample`` per sample, as ``pseudo_collate`` gives them.
        keypoints_field: the ``gt_instances`` field with keypoints in input pixels
            (``transformed_keypoints``, packed by ``PackPoseInputs(pack_transformed=True)``).
        single_instance: refuse ``N != 1`` (mmpose's heatmap codecs do) instead of padding.

    Returns:
        ``keypoints (B, N, K, 2)``, ``visibility (B, N, K)`` and, per sample, whether its
        ``keypoints_visible`` was ``(N, K, 2)``: visibility and a visibility weight, of which
        ``GenerateTarget`` encodes with the first column. Samples with fewer instances than the
        batch's most are padded with invisible ones (SimCC only).

    Raises:
        RenderArgumentError: naming the field: missing, or shapes that do not stack.
    """
    points, visible, split = [], [], []
    for index, sample in enumerate(data_samples):
        keypoints = _field(sample, keypoints_field)
        if keypoints is None:
            raise RenderArgumentError(
                keypoints_field, f"data_samples[{index}].gt_instances has none: pack them with "
                "PackPoseInputs(pack_transformed=True) after TopdownAffine",
            )
        keypoints = _as_numpy(keypoints)[..., :2]
        visibility = _field(sample, "keypoints_visible")
        if visibility is None:
            visibility = np.ones(keypoints.shape[:2], dtype=np.float32)
        visibility = _as_numpy(visibility)
        split.append(visibility.ndim == 3 and visibility.shape[2] == 2)
        if split[-1]:
            visibility = visibility[..., 0]
        if keypoints.ndim != 3 or visibility.shape != keypoints.shape[:2]:
            raise RenderArgumentError(
                keypoints_field, f"data_samples[{index}]: expected (N, K, 2) keypoints and "
                f"(N, K) keypoints_visible, got {keypoints.shape} and {visibility.shape}",
            )
        if single_instance and keypoints.shape[0] != 1:
            raise RenderArgumentError(
                keypoints_field, f"data_samples[{index}] has {keypoints.shape[0]} instances; "
                "mmpose's heatmap codecs encode one per sample (top-down)",
            )
        points.append(keypoints)
        visible.append(visibility)
    counts = {part.shape[1] for part in points}
    if len(counts) > 1:
        raise RenderArgumentError(
            keypoints_field, f"samples disagree on the number of keypoints K: {sorted(counts)}"
        )
    most = max(part.shape[0] for part in points)
    if any(part.shape[0] != most for part in points):
        # Invisible padding instances render nothing; each sample keeps its own N below.
        points = [np.concatenate([part, np.zeros((most - len(part), *part.shape[1:]),
                                                 part.dtype)]) for part in points]
        visible = [np.concatenate([part, np.zeros((most - len(part), part.shape[1]),
                                                  part.dtype)]) for part in visible]
    return np.stack(points), np.stack(visible), split


def write_targets(data_samples: Sequence[Any], targets: dict[str, torch.Tensor],
                  instances: Sequence[int]) -> None:
    """Puts a batch's targets where ``PackPoseInputs`` puts the codec's: heatmaps into
    ``gt_fields`` (``PixelData``), labels and weights into ``gt_instance_labels``, each sample's
    a view of the batch tensor (mmpose's heads stack or concatenate them again)."""
    for index, sample in enumerate(data_samples):
        count = instances[index]
        labels = sample.gt_instance_labels
        for key, value in targets.items():
            if key == "heatmaps":
                if not hasattr(sample, "gt_fields"):
                    sample.gt_fields = PixelData()
                sample.gt_fields.set_field(value[index], key)
            else:
                labels.set_field(value[index, :count], key)


@MODELS.register_module()
class DeviceTargetPreprocessor(PoseDataPreprocessor):
    """``PoseDataPreprocessor`` that renders the batch's targets on the training device.

    Args:
        encoder: the codec config ``GenerateTarget`` had (``MSRAHeatmap``, ``UDPHeatmap`` with
            ``heatmap_type='gaussian'``, ``SimCCLabel`` or a ``Fast*`` twin), or a built codec.
        use_dataset_keypoint_weights: as ``GenerateTarget``'s: multiply the weights by the
            dataset's joint weights, read from each sample's ``dataset_keypoint_weights``
            metainfo (add that key to ``PackPoseInputs``' ``meta_keys``).
        keypoints_field: the ``gt_instances`` field holding keypoints in input pixels.
        renderer: None (render here), a ``heatmap_client.HeatmapClient``, or a config dict that
            ``MODELS`` builds into one (see docs/mmpose.md).
        **kwargs: ``PoseDataPreprocessor``'s (``mean``, ``std``, ``bgr_to_rgb``, ...).

    Targets are rendered when ``training``, and otherwise only when every sample carries
    ``keypoints_field`` (mmpose's validation needs none).

    Raises:
        RenderArgumentError: naming ``encoder`` for a codec not rendered here, or (when called)
            the field at fault in the batch.
    """

    def __init__(
        self,
        encoder: dict | Any,
        use_dataset_keypoint_weights: bool = False,
        keypoints_field: str = "transformed_keypoints",
        renderer: dict | Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(encoder, (list, tuple)):
            raise RenderArgumentError(
                "encoder", "one codec config: GenerateTarget's lists of encoders (multilevel or "
                "combined targets) are not rendered here",
            )
        self.encoder = KEYPOINT_CODECS.build(copy.deepcopy(encoder)) \
            if isinstance(encoder, dict) else encoder
        self.spec = target_spec(self.encoder)
        self.use_dataset_keypoint_weights = bool(use_dataset_keypoint_weights)
        self.keypoints_field = keypoints_field
        built = MODELS.build(renderer) if isinstance(renderer, dict) else renderer
        self._renderer = _Shared(built)

    @property
    def renderer(self) -> Any:
        """The service client targets come from, or None when they are rendered here."""
        return self._renderer.value

    def forward(self, data: dict, training: bool = False) -> dict:
        """Renders the batch's targets into ``data['data_samples']``, then runs
        ``PoseDataPreprocessor`` (which moves them along, and whose batch augmentations see
        them, as they would see ``GenerateTarget``'s)."""
        samples = data.get("data_samples")
        if samples and (training or all(_field(sample, self.keypoints_field) is not None
                                        for sample in samples)):
            self.render_into(samples)
        return super().forward(data=data, training=training)

    def render_into(self, data_samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Renders and writes the targets of ``data_samples`` (see the class); returns them
        batched: ``(B, K, H, W)`` heatmaps or ``(B, N, K, L)`` labels, ``(B, N, K)`` weights."""
        points, visible, split_visibility = batch_keypoints(
            data_samples, self.keypoints_field, self.spec.single_instance
        )
        device = self.device
        targets = render_targets(
            self.spec,
            torch.from_numpy(points).to(device, non_blocking=self._non_blocking),
            torch.from_numpy(visible).to(device, non_blocking=self._non_blocking),
            renderer=self.renderer,
        )
        if self.use_dataset_keypoint_weights:
            targets["keypoint_weights"] = targets["keypoint_weights"] * self._joint_weights(
                data_samples, device)
        instances = [len(_as_numpy(_field(sample, self.keypoints_field)))
                     for sample in data_samples]
        write_targets(data_samples, targets, instances)
        for sample, split in zip(data_samples, split_visibility):
            if split:
                # GenerateTarget keeps the first column as keypoints_visible; the second, which
                # it stores as keypoints_visible_weights, PackPoseInputs then leaves out: the
                # codec's label_mapping_table replaces its own, and none of these lists it.
                sample.gt_instances.keypoints_visible = _as_numpy(
                    sample.gt_instances.keypoints_visible)[..., 0]
        return targets

    @staticmethod
    def _joint_weights(data_samples: Sequence[Any], device: torch.device) -> torch.Tensor:
        """``(B, 1, K)``: each sample's ``dataset_keypoint_weights`` metainfo."""
        rows = []
        for index, sample in enumerate(data_samples):
            weights = sample.metainfo.get("dataset_keypoint_weights")
            if weights is None:
                raise RenderArgumentError(
                    "use_dataset_keypoint_weights", f"data_samples[{index}] has no "
                    "'dataset_keypoint_weights' metainfo: add it to PackPoseInputs' meta_keys",
                )
            rows.append(_as_numpy(weights))
        return torch.from_numpy(np.stack(rows)[:, None]).to(device)
