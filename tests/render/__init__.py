"""Tests of heatmap_server.render (a package, so its module names cannot clash with other dirs)."""
