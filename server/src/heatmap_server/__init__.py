"""The heatmap rendering service: renderer, batching, gRPC service and application."""

__all__ = ["__version__"]

__version__ = "0.2.0"
