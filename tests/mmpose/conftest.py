"""heatmap_render.mmpose against the real mmpose 1.3.2, in the venv `make mmpose-venv` builds.

The main venv has no mmpose (it is never a dependency of ours): there every test module of this
folder is reported as skipped, with the reason, without being imported (a module-level skip in
this file would break ``pytest tests/mmpose``, which loads it before collection). `make
test-mmpose` runs the folder in .venv-mmpose.

Two things here are not mmpose's own, both because that venv has ``mmcv-lite`` (``mmcv`` with
its compiled ops has no wheel on PyPI, only a source build of many minutes):

- ``mmcv.ops`` is stubbed when it cannot be imported. ``mmpose.models`` imports
  ``MultiScaleDeformableAttention`` from it at import time (``edpose_head.py``,
  ``deformable_detr_layers.py``) for the ED-Pose head alone; nothing these tests build uses
  it, and the stub's classes raise if anything ever instantiates them. mmdet 3.3.0 (installed
  without its requirements, as mmpose's RTMO head imports ``mmdet.utils``) imports as it is;
  ``mmdet.models`` would need the real ops (``nms``), so the tiny models here use mmpose's own
  ``CSPNeXt``, not RTMPose's ``mmdet.CSPNeXt``.
- mmpose and torch emit warnings at import and in their own code (``torch.jit.script`` is
  deprecated, mmcv-lite has no deformable attention, numpy casts of NaN); the project's pytest
  turns warnings into errors, so they are filtered for this folder only, by category and origin.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

import pytest


class _CompiledOpMissing:
    """Stands in for an ``mmcv.ops`` class; instantiating it is an error."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            f"{type(self).__name__} is a test stub: mmcv-lite has no compiled ops "
            "(tests/mmpose/conftest.py)"
        )


def stub_mmcv_ops() -> None:
    """Puts a stand-in ``mmcv.ops`` into ``sys.modules`` when the real one cannot load."""
    try:
        importlib.import_module("mmcv.ops")
    except ImportError:
        ops = types.ModuleType("mmcv.ops")
        ops.__doc__ = "Stub: mmcv-lite has no compiled ops (tests/mmpose/conftest.py)."
        for name in ("MultiScaleDeformableAttention", "DeformConv2d"):
            setattr(ops, name, type(name, (_CompiledOpMissing,), {}))
        sys.modules["mmcv.ops"] = ops


def _mmpose_missing() -> str | None:
    """Why mmpose cannot be used here, or None."""
    try:
        # mmpose.codecs, not mmpose alone: with tests/ on sys.path (pytest puts it there for
        # tests/conftest.py), this very folder imports as a namespace package named mmpose.
        importlib.import_module("mmpose.codecs")
    except ImportError as error:
        if getattr(sys.modules.get("mmpose"), "__file__", None) is None:
            sys.modules.pop("mmpose", None)  # that namespace package, if it was imported
        return (f"mmpose is not installed in this venv ({error}); `make test-mmpose` runs "
                "these tests against the real mmpose 1.3.2 in .venv-mmpose")
    return None


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # mmpose's and torch's import-time warnings, see above
    MMPOSE_MISSING = _mmpose_missing()
    if MMPOSE_MISSING is None:
        stub_mmcv_ops()
        import mmpose.models  # noqa: F401  (mmpose's models, before ours subclass them)
        from mmengine.registry import init_default_scope

        import heatmap_render.mmpose  # noqa: F401  (registers the drop-ins, as custom_imports)


if MMPOSE_MISSING is not None:

    class _SkippedModule(pytest.Module):
        """A test module of this folder, reported as skipped without being imported."""

        def collect(self):
            pytest.skip(MMPOSE_MISSING)

    def pytest_pycollect_makemodule(module_path, parent):
        return _SkippedModule.from_parent(parent, path=module_path)

else:
    # Nested configs (dict(type=...) inside a model) resolve in mmpose's registries.
    init_default_scope("mmpose")

# Warnings that mmpose's and torch's own code raises while these tests run it.
_FILTERS = (
    "ignore::DeprecationWarning:torch.*",
    "ignore::DeprecationWarning:mmengine.*",
    "ignore::UserWarning:mmengine.*",
    "ignore::UserWarning:mmcv.*",
    # mmpose's encoders cast NaN coordinates to int64 before they skip invisible keypoints.
    "ignore:invalid value encountered in cast:RuntimeWarning",
    # mmpose's CSPNeXt layers (csp_layer.py) still call torch.cuda.amp.autocast.
    "ignore:`torch.cuda.amp.autocast:FutureWarning",
    # GetBBoxCenterScale on datasets that give centres and scales (300-W), in mmpose's own runs.
    "ignore:Use the existing \"bbox_center\":UserWarning",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/mmpose/" in str(item.path).replace("\\", "/"):
            for spec in _FILTERS:
                item.add_marker(pytest.mark.filterwarnings(spec))
