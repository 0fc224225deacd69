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
- :func:`expand_profiles`: profiles ``(B, N, K, H)``, ``(B, N, K, W)`` to ``(B, K, H, W)`` (the
  renderer's own, ``heatmap_render.expand_profiles``).

This package imports torch and the renderer (``pip install 'heatmap-client[torch]'`` installs both);
``import heatmap_client`` alone imports neither. Its modules import torch absolutely, so this
package's name never shadows the real one.
"""

try:
    import torch  # noqa: F401  (the helpers' dependency, named in the message below)

    import heatmap_render
except ImportError as error:  # pragma: no cover - exercised by the packaging tests
    raise ImportError(
        f"heatmap_client.torch needs torch and heatmap-render ({error}): "
        "pip install 'heatmap-client[torch]'"
    ) from None

from .collate import HeatmapCollate
from .separable import SeparableHeatmaps

expand_profiles = heatmap_render.expand_profiles

__all__ = [
    "HeatmapCollate",
    "SeparableHeatmaps",
    "expand_profiles",
]
