"""torch DataLoader support: heatmap targets rendered per batch, dense or as their profiles.

::

    from torch.utils.data import DataLoader
    from heatmap_client.torch import HeatmapCollate

    targets = HeatmapCollate("dns:///heatmap:50051", size=(64, 48), sigma=2.0,
                             coords="pixel", input_size=(256, 192), output="separable")
    loader = DataLoader(dataset, batch_size=64, num_workers=8, collate_fn=targets,
                        pin_memory=True)
    for batch in loader:
        heatmaps = batch["heatmaps"].to("cuda", non_blocking=True)  # (B, K, 64, 48), dense there

- :class:`HeatmapCollate`: the ``collate_fn`` (a service target, a client, or ``"local"``).
- :class:`SeparableHeatmaps`: the batch value of ``output="separable"``: profiles only, dense on
  ``.to(device)``.
- :func:`expand_profiles`: profiles ``(B, N, K, H)``, ``(B, N, K, W)`` to ``(B, K, H, W)``.

This package imports torch; ``import heatmap_client`` alone never does. Its modules import torch
absolutely, so this package's name never shadows the real one.
"""

from .collate import HeatmapCollate
from .expand import expand_profiles
from .separable import SeparableHeatmaps

__all__ = [
    "HeatmapCollate",
    "SeparableHeatmaps",
    "expand_profiles",
]
