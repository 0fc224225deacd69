"""heatmap_render for mmpose: drop-in codecs and a data preprocessor that renders on the device.

Importing this package registers, into mmpose's registries (a config does it with
``custom_imports = dict(imports=['heatmap_render.mmpose'])``):

- ``KEYPOINT_CODECS``: ``FastMSRAHeatmap`` (``unbiased=True``: DARK), ``FastUDPHeatmap`` and
  ``FastSimCCLabel``: mmpose's codecs with the same arguments and results, ``encode()`` one
  vectorised render instead of a loop over N x K keypoints (``codecs.py``);
- ``MODELS``: ``DeviceTargetPreprocessor``, which renders the whole batch's targets on the
  training device, so that the pipeline drops ``GenerateTarget`` and the data loader's workers
  render nothing (``preprocessor.py``).

mmpose is imported here and nowhere else in heatmap_render: ``import heatmap_render`` never
loads it, and heatmap-render does not depend on it. The preprocessor imports ``mmpose.models``,
which needs mmcv's compiled ops (``mmcv``, not ``mmcv-lite``). Sizes: mmpose's configs write
``(w, h)``; the codecs and the preprocessor take mmpose's arguments as mmpose does, and
convert once (``targets.py``).
"""

from .codecs import FastMSRAHeatmap, FastSimCCLabel, FastUDPHeatmap
from .preprocessor import DeviceTargetPreprocessor
from .targets import TargetSpec, render_targets, target_spec

__all__ = [
    "DeviceTargetPreprocessor",
    "FastMSRAHeatmap",
    "FastSimCCLabel",
    "FastUDPHeatmap",
    "TargetSpec",
    "render_targets",
    "target_spec",
]
