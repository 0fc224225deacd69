"""Benchmark: mmpose's targets in the loader's workers, three ways, on mmpose's own pipelines.

For each case, mmpose's own train pipeline (its config, its transforms, real people) runs three
ways:

  GenerateTarget      the config as mmpose ships it: mmpose's codec in the workers
  Fast* codec         the same, codec type renamed to heatmap_render.mmpose's drop-in
  device preproc.     GenerateTarget dropped, PackPoseInputs(pack_transformed=True), and
                      DeviceTargetPreprocessor rendering the batch in the training process

and the table gives, per way (CPU times, so that other work on the machine does not count;
medians over rounds that interleave the ways): the pipeline's time per sample and the part of
it spent making targets (GenerateTarget), the workers' CPU per batch (pipeline +
pseudo_collate + pickling the batch into shared memory, as a DataLoader worker does), the target
bytes a batch carries from the workers, and, for the device preprocessor, its render time per
batch in the training process (here on this machine's CPU; on a GPU it is a few kernels).

Cases: S2 (COCO body, HRNet-w32 256x192, MSRAHeatmap 64x48, B=32), S4 (COCO-WholeBody K=133,
HRNet-w32 384x288, MSRAHeatmap 96x72, B=8), and RTMPose-m COCO 256x192 (SimCCLabel, B=32). The
pipelines run without their pixel-only transforms and with a blank image of the annotated size
instead of LoadImage (no image files ship with the repository; JPEG decoding would add the same
few ms per sample to every way). torch runs one thread, as in a DataLoader worker.

Usage: .venv-mmpose/bin/python bench/mmpose.py [--rounds 5] [--json PATH]   (make bench-mmpose)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib
import json
import os
import platform
import statistics
import sys
import time
import types
import warnings
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing  # noqa: F401  (registers the tensor reductions DataLoaders use)

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from report import cpu_model, git_commit, write_json  # noqa: E402

# This file is named mmpose.py: while its folder is on sys.path (Python puts a script's folder
# first), `import mmpose` would import this very file. report.py is in; take the folder off.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]

ROOT = Path(__file__).resolve().parents[1]
# (name, config under mmpose's configs, annotations, dataset class, batch size)
CASES = (
    ("S2 COCO body", "body_2d_keypoint/topdown_heatmap/coco/"
     "td-hm_hrnet-w32_8xb64-210e_coco-256x192.py", "tests/data/coco/test_coco.json",
     "CocoDataset", 32),
    ("S4 whole body", "wholebody_2d_keypoint/topdown_heatmap/coco-wholebody/"
     "td-hm_hrnet-w32_8xb64-210e_coco-wholebody-384x288.py",
     "tests/mmpose/data/test_coco_wholebody.json", "CocoWholeBodyDataset", 8),
    ("RTMPose-m COCO", "body_2d_keypoint/rtmpose/coco/rtmpose-m_8xb256-420e_coco-256x192.py",
     "tests/data/coco/test_coco.json", "CocoDataset", 32),
)
PIXEL_ONLY = {"LoadImage", "mmdet.YOLOXHSVRandomAug", "Albumentation", "PhotometricDistortion"}
WAYS = ("GenerateTarget", "Fast* codec", "device preproc.")


def load_mmpose():
    """mmpose with its models; ``mmcv.ops`` stubbed when mmcv-lite has no compiled ops (as in
    tests/mmpose/conftest.py, which says why that is safe: only the ED-Pose head needs them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            importlib.import_module("mmcv.ops")
        except ImportError:
            ops = types.ModuleType("mmcv.ops")
            for name in ("MultiScaleDeformableAttention", "DeformConv2d"):
                setattr(ops, name, type(name, (), {}))
            sys.modules["mmcv.ops"] = ops
        import mmpose.models  # noqa: F401
        from mmengine.registry import init_default_scope

        import heatmap_render.mmpose  # noqa: F401

        init_default_scope("mmpose")


def people(config_path: str, annotations: str, dataset_type: str) -> tuple:
    """mmpose's config and every annotated person of the file, as its dataset gives them."""
    import mmpose
    import mmpose.datasets as datasets
    from mmengine.config import Config

    configs = Path(mmpose.__file__).resolve().parent / ".mim" / "configs"
    cfg = Config.fromfile(str(configs / config_path))
    cls = getattr(datasets, dataset_type)
    dataset = cls(ann_file=str(ROOT / annotations), data_root="", data_mode="topdown",
                  metainfo=dict(from_file=str(configs.parent / cls.METAINFO["from_file"])),
                  pipeline=[], test_mode=False)
    sizes = {image["id"]: (image["height"], image["width"])
             for image in json.loads((ROOT / annotations).read_text())["images"]}
    infos = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        height, width = sizes[info["img_id"]]
        info["img"] = np.zeros((height, width, 3), np.uint8)
        info["img_shape"] = info["ori_shape"] = (height, width)
        infos.append(info)
    return cfg, infos


def pipelines(cfg) -> dict[str, list[dict]]:
    """The three ways' train pipelines (pixel-only transforms left out)."""
    theirs = [copy.deepcopy(step) for step in cfg.train_pipeline
              if step["type"] not in PIXEL_ONLY]
    fast = copy.deepcopy(theirs)
    for step in fast:
        if step["type"] == "GenerateTarget":
            step["encoder"]["type"] = "Fast" + step["encoder"]["type"]
    ours = [dict(step, pack_transformed=True) if step["type"] == "PackPoseInputs" else step
            for step in copy.deepcopy(theirs) if step["type"] != "GenerateTarget"]
    return dict(zip(WAYS, (theirs, fast, ours)))


def worker_batch(transforms, infos, batch_size: int, seed: int) -> tuple[dict, dict]:
    """One worker's batch: each sample through the transforms (timed per transform), then
    pseudo_collate and the pickling a DataLoader worker does to send it (tensors into shared
    memory). Returns the batch and the times."""
    from mmengine.dataset import pseudo_collate

    spent = {"pipeline": 0.0, "targets": 0.0}
    cpu_start = time.process_time()
    packed = []
    for index in range(batch_size):
        np.random.seed(seed + index)
        results = copy.deepcopy(infos[(seed + index) % len(infos)])
        for transform in transforms:
            start = time.thread_time()  # CPU: other processes on the machine do not count
            results = transform(results)
            took = time.thread_time() - start
            spent["pipeline"] += took
            if type(transform).__name__ == "GenerateTarget":
                spent["targets"] += took
        packed.append(results)
    batch = pseudo_collate(packed)
    pickled = ForkingPickler.dumps(batch)
    spent["worker_cpu"] = time.process_time() - cpu_start
    spent["pickled_bytes"] = len(pickled)
    return batch, spent


def target_bytes(batch: dict) -> int:
    """Bytes of the targets the batch carries (heatmaps, labels, weights)."""
    total = 0
    for sample in batch["data_samples"]:
        fields = getattr(sample, "gt_fields", None)
        for container in (fields, sample.gt_instance_labels):
            if container is not None:
                total += sum(value.numel() * value.element_size() for value in container.values()
                             if isinstance(value, torch.Tensor))
    return total


def measure(case: tuple, rounds: int) -> dict:
    from mmcv.transforms import Compose
    from mmpose.registry import MODELS

    name, config_path, annotations, dataset_type, batch_size = case
    cfg, infos = people(config_path, annotations, dataset_type)
    preprocessor = MODELS.build(dict(type="DeviceTargetPreprocessor", encoder=cfg.codec))
    ways = {way: Compose(pipeline).transforms for way, pipeline in pipelines(cfg).items()}
    rows: dict[str, list[dict]] = {way: [] for way in ways}
    for round_ in range(rounds + 1):  # round 0 warms up (kernel tables, imports, allocations)
        for way, transforms in ways.items():  # interleaved, so that drifts hit every way alike
            batch, spent = worker_batch(transforms, infos, batch_size, seed=1000 * round_)
            spent["target_bytes"] = target_bytes(batch)
            if way == WAYS[2]:
                start = time.process_time()
                preprocessor.render_into(batch["data_samples"])
                spent["render"] = time.process_time() - start
            if round_:
                rows[way].append(spent)
    result = {way: {key: statistics.median(row[key] for row in done) for key in done[0]}
              for way, done in rows.items()}
    return {"case": name, "batch": batch_size, "codec": cfg.codec["type"],
            "keypoints": int(infos[0]["keypoints"].shape[1]), "ways": result}


def report(results: list[dict], meta: dict) -> None:
    print(f"# mmpose targets: {meta['date']}, {meta['machine']}, commit {meta['commit']}, "
          f"mmpose {meta['mmpose']}, torch {meta['torch']}")
    print()
    print("| case | way | pipeline ms/sample | targets ms/sample | worker CPU ms/batch "
          "| target MB/batch from workers | render ms/batch in training process |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for case in results:
        label = f"{case['case']} ({case['codec']}, K={case['keypoints']}, B={case['batch']})"
        base = case["ways"][WAYS[0]]["worker_cpu"]
        for way, row in case["ways"].items():
            per_sample = 1e3 / case["batch"]
            render = f"{row['render'] * 1e3:.2f} (CPU)" if "render" in row else "-"
            ratio = "" if way == WAYS[0] else f" ({row['worker_cpu'] / base:.2f}x)"
            print(f"| {label} | {way} | {row['pipeline'] * per_sample:.3f} "
                  f"| {row['targets'] * per_sample:.3f} | {row['worker_cpu'] * 1e3:.1f}{ratio} "
                  f"| {row['target_bytes'] / 1e6:.2f} | {render} |")
            label = ""
    print()
    print("CPU times, medians of the rounds (interleaved). pipeline: mmpose's transforms per "
          "sample; targets: the GenerateTarget step of it; worker CPU: pipeline + "
          "pseudo_collate + pickling into shared memory, per batch (ratio to GenerateTarget's); "
          "render: DeviceTargetPreprocessor.render_into per batch, here on the CPU, one thread.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="batches per way (median)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    load_mmpose()
    import mmpose

    torch.set_num_threads(1)  # a DataLoader worker's setting
    warnings.simplefilter("ignore")  # mmpose's own deprecation and metainfo warnings
    meta = {"date": datetime.date.today().isoformat(), "commit": (git_commit() or "?")[:7],
            "machine": f"{cpu_model()}, {os.cpu_count()} cores, Python "
                       f"{platform.python_version()}",
            "mmpose": mmpose.__version__, "torch": torch.__version__}
    results = [measure(case, args.rounds) for case in CASES]
    report(results, meta)
    if args.json:
        write_json(args.json, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
