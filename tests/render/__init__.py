"""Tests of heatmap_render (a package, so its module names cannot clash with other dirs)."""
