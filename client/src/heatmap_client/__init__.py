"""Lightweight client for the heatmap rendering service.

Importing this package never imports torch: loader processes that only need numpy stay light.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
