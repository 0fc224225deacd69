r"""``heatmap-client``: health checks, server info and renders of keypoint files.

    heatmap-client --target HOST:PORT health          # exit 0 only when SERVING
    heatmap-client --target HOST:PORT info
    heatmap-client --target HOST:PORT render face.pts --size 64 64 --input-size 1024 817 \
        --out hm.npy
    heatmap-client --target HOST:PORT render person_keypoints_val2017.json --all --out coco.npz

``render`` renders one image's keypoints (a ``.pts`` face, one image of a COCO file) or a whole
file (every image of a COCO file with ``--all``, a folder of ``.pts``, a ``.npy`` of any length),
in requests sized to the server's limits, written to the output as the replies arrive (see
:mod:`heatmap_client.cli_files`).

Exit status: 0 done, 1 not serving (health), 2 an error, 3 no keypoint landed on the heatmap
(nothing written: the targets would be all zeros).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from ._client import HeatmapClient
from ._errors import HeatmapError
from .cli_files import (
    DEFAULT_REQUEST_BYTES,
    NpyOutput,
    NpzOutput,
    plan_chunks,
    progress_bar,
    render_to,
    samples_per_request,
)
from .keypoint_files import (
    KeypointSet,
    as_instances,
    image_size,
    read_coco,
    read_keypoint_set,
)
from .options import AUTO_CODEC, RenderOptions
from .wire import CODEC_NAMES, COORDINATE_SPACES, DTYPE_NAMES, METHODS

__all__ = ["main"]

_EXAMPLES = """\
examples:
  one face; its image gives the input size and lies under the preview:
    heatmap-client render tests/data/face/einstein.pts --size 64 64 \\
        --image tests/data/face/einstein.jpg --out face.npy --png face.png
  every person of a COCO file, with the weights and each sample's image and annotation id:
    heatmap-client render tests/data/coco/test_coco.json --all --out people.npz
  one multi-person map per COCO image (weights (B, N, K), N the most people in an image):
    heatmap-client render tests/data/coco/test_coco.json --all --per image --out images.npz
  every face of a folder of .pts (300-W), sizes from the images beside them:
    heatmap-client render 300W/ --size 64 64 --out faces.npy --weights-out weights.npy
  a (B, K, 2) or (B, K, 3) .npy of any length, in as many requests as the server's limits need:
    heatmap-client render big.npy --size 32 32 --out big_heatmaps.npy

exit status: 0 done, 2 an error, 3 no keypoint landed on the heatmap (nothing written)
"""

_SUMMARY = """examples:
  heatmap-client --target HOST:PORT health     # exit 0 only when SERVING, else 1
  heatmap-client render tests/data/face/einstein.pts --size 64 64 \\
      --image tests/data/face/einstein.jpg --out face.npy
  heatmap-client render tests/data/coco/test_coco.json --all --out people.npz

heatmap-client render --help shows the whole-file forms (COCO, .pts folders, large .npy).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heatmap-client", description=__doc__.splitlines()[0], epilog=_SUMMARY,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    parser.add_argument("--target", default=env("HEATMAP_TARGET", "127.0.0.1:50051"),
                        help="server address (env HEATMAP_TARGET, default 127.0.0.1:50051)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="deadline per call in seconds (a whole file: the longest wait for "
                        "one reply)")
    parser.add_argument("--ready-timeout", type=float, default=10.0,
                        help="how long a call waits for a server that is not answering (one "
                        "restarting) before it fails; 0: fail at once (default 10)")
    parser.add_argument("--token-file", default=env("HEATMAP_TOKEN_FILE"),
                        help="file holding the bearer token (env HEATMAP_TOKEN_FILE)")
    parser.add_argument("--tls-ca", default=env("HEATMAP_TLS_CA"), help="CA certificate (PEM)")
    parser.add_argument("--tls-cert", default=env("HEATMAP_TLS_CERT"), help="client certificate")
    parser.add_argument("--tls-key", default=env("HEATMAP_TLS_KEY"), help="client key (PEM)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("health", help="exit 0 when the server is SERVING, 1 otherwise")
    commands.add_parser("info", help="print the server's version, device and limits as JSON")
    render = commands.add_parser(
        "render", help="render a keypoint file to .npy or .npz", epilog=_EXAMPLES,
        description="Renders the heatmaps (B, K, H, W) of one image's keypoints or of a whole "
        "file,\nin requests sized to the server's limits, written to the output as they arrive.\n"
        "Sizes are (H, W), height first (mmpose configs write (W, H)).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    render.add_argument("keypoints", help="COCO .json, iBUG .pts, a folder of .pts, or .npy")
    render.add_argument("--out", required=True,
                        help="heatmaps (B, K, H, W) float32 as .npy; or .npz, which also holds "
                        "the weights and the samples' index (image_id, annotation_id, name)")
    render.add_argument("--weights-out", help="weights (B, K) or (B, N, K) as .npy")
    render.add_argument("--all", action="store_true",
                        help="every annotated image of a COCO file (default: one image); a "
                        ".npy and a folder of .pts are always rendered whole")
    render.add_argument("--per", choices=("person", "image"),
                        help="COCO: a sample per person (default), or one multi-person map per "
                        "image (keypoints (B, N, K, 2), N the most people in one image)")
    render.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(64, 48),
                        help="heatmap size (default 64 48)")
    render.add_argument("--sigma", type=float, default=2.0,
                        help="Gaussian sigma in heatmap pixels (default 2)")
    render.add_argument("--method", default=METHODS.default, choices=METHODS.names)
    render.add_argument("--coords", default=None, choices=COORDINATE_SPACES.names,
                        help="default: pixel when the image size is known, else heatmap")
    render.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="size of the image the keypoints are pixels of, for every sample "
                        "(.pts and .npy hold image pixels; default: from the COCO file, --image, "
                        "or a folder's images); implies --coords pixel")
    render.add_argument("--image-id", type=int,
                        help="COCO image id (default: the image named by --image, else the first)")
    render.add_argument("--dtype", default=DTYPE_NAMES.default,
                        choices=DTYPE_NAMES.names, help="wire dtype (the output is float32)")
    render.add_argument("--codec", default=AUTO_CODEC, choices=(AUTO_CODEC, *CODEC_NAMES.names),
                        help="auto: separable for udp and dark, zstd for the others")
    render.add_argument("--batch", type=int, metavar="B",
                        help="samples per request (default: as many as the server's limits and "
                        "16 MiB of heatmaps allow)")
    render.add_argument("--progress", action=argparse.BooleanOptionalAction,
                        help="a progress bar on stderr (default: when it is a terminal and the "
                        "render takes several requests; needs tqdm)")
    render.add_argument("--png", help="write a preview PNG: heat and a dot per keypoint")
    render.add_argument("--image", help="the image the keypoints belong to: gives --input-size, "
                        "picks its COCO annotations by file name, and is drawn under the preview")
    render.add_argument("--png-channel", type=int, metavar="K",
                        help="preview keypoint K's channel alone (default: the max over all)")
    render.add_argument("--png-crop", action="store_true",
                        help="crop the preview to the keypoints")
    return parser


def _check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that contradict each other: a usage error (exit 2) before anything is read."""
    if args.command != "render":
        return
    if not args.png and (args.png_channel is not None or args.png_crop):
        parser.error("--png-channel and --png-crop shape the preview: add --png PREVIEW.png")
    coco = args.keypoints.lower().endswith(".json")
    if args.per and not coco:
        parser.error(f"--per {args.per}: only for a COCO .json (a .npy holds (B, N, K, 2) "
                     "instances itself)")
    if args.all and coco and (args.image_id is not None or args.image):
        parser.error("--all renders every image of the file: --image-id and --image pick one")
    if args.image and os.path.isdir(args.keypoints):
        parser.error("--image: a folder's faces take their sizes from the images beside them "
                     "(or give --input-size H W)")
    if args.weights_out and args.out.lower().endswith(".npz"):
        parser.error("--weights-out: the .npz of --out holds the weights already")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch: must be >= 1, got {args.batch}")


def _client(args: argparse.Namespace) -> HeatmapClient:
    token = None
    if args.token_file:
        with open(args.token_file) as handle:
            token = handle.read().strip()
    return HeatmapClient(args.target, timeout=args.timeout, ready_timeout=args.ready_timeout,
                         token=token, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                         tls_key=args.tls_key)


def _samples(args: argparse.Namespace) -> KeypointSet:
    """The samples to render, each with its image's size where the file, folder or flags tell
    it (``--input-size`` for all; ``--image`` for one image, checked against a COCO file)."""
    per = args.per or "person"
    if args.keypoints.lower().endswith(".json") and not args.all:
        data = read_coco(args.keypoints, args.image_id, args.image)
        if args.image and not args.input_size:
            size = image_size(args.image)
            if data.image_size is not None and data.image_size != size:
                raise ValueError(
                    f"--image {args.image} is {size[0]}x{size[1]} (H x W), but {args.keypoints} "
                    f"records {data.image_size[0]}x{data.image_size[1]} for {data.image_name}")
        samples = KeypointSet.of(as_instances(data) if per == "image" else data)
    else:
        samples = read_keypoint_set(args.keypoints, per)
    if not len(samples):
        raise ValueError(f"{args.keypoints}: no samples to render")
    size = args.input_size or (image_size(args.image) if args.image else None)
    if size is not None:
        sizes = np.tile(np.array(size, np.int64), (len(samples), 1))
        samples = dataclasses.replace(samples, image_sizes=sizes)
    return samples


def _coords(args: argparse.Namespace, samples: KeypointSet) -> str:
    """The coordinate space; for ``pixel``, every sample must have its image's size."""
    sizes = samples.image_sizes
    coords = args.coords or ("pixel" if sizes is not None else "heatmap")
    if coords == "pixel":
        if sizes is None:
            raise ValueError(
                "--coords pixel: pass --input-size H W (the image's size) or --image IMG")
        unknown = np.flatnonzero(~sizes.all(axis=1))
        if len(unknown):
            first, index = unknown[0], samples.index
            which = (index["name"][first] if "name" in index else
                     f"image_id {index['image_id'][first]}" if "image_id" in index else
                     f"sample {first}")
            raise ValueError(f"--coords pixel: no image size for {which} (no image beside it, "
                             "or none recorded): pass --input-size H W for every sample")
    return coords


def _off_map_hint(coords: str, samples: KeypointSet) -> str:
    if coords == "heatmap":
        return "image pixels? pass --input-size H W (or --image IMG)"
    if coords == "pixel":
        sizes = np.unique(samples.image_sizes, axis=0)
        if len(sizes) == 1:
            return f"is {sizes[0][0]} {sizes[0][1]} the image's size (H W)?"
        return "are the recorded image sizes (H W) those the keypoints are pixels of?"
    return f"{coords} coordinates lie in [-1, 1]"


def _heatmap_coordinates(args: argparse.Namespace, coords: str,
                         samples: KeypointSet) -> np.ndarray:
    """The keypoints in heatmap pixels, as the renderer maps them (for the preview's dots)."""
    height, width = args.size
    points = np.asarray(samples.keypoints, np.float64)
    if coords == "normalized":
        return 0.5 * (points + 1) * np.array([width, height])
    if coords == "normalized_edges":
        return ((points + 1) * np.array([width, height]) - 1) * 0.5
    if coords == "pixel":
        # (B, 2) (H, W) per sample, as (B, [1,] 1, 2) (W, H) against the keypoints.
        inputs = samples.image_sizes[:, ::-1].astype(np.float64)
        inputs = inputs.reshape(len(inputs), *([1] * (points.ndim - 2)), 2)
        if args.method == "udp":
            return points * (np.array([width - 1, height - 1]) / np.maximum(inputs - 1, 1))
        return points * (np.array([width, height]) / inputs)
    return points


def _output(args: argparse.Namespace,
            samples: KeypointSet) -> tuple[Path, NpyOutput | NpzOutput]:
    """The output file (``.npy`` added where it has no suffix, as ``np.save`` does) and its
    writer."""
    height, width = args.size
    shape = (len(samples), samples.keypoints.shape[-2], height, width)
    weights_shape = samples.keypoints.shape[:-1]
    out = Path(args.out)
    if out.suffix.lower() == ".npz":
        return out, NpzOutput(out, shape, weights_shape, samples.index)
    if out.suffix.lower() != ".npy":
        out = out.with_name(out.name + ".npy")
    weights = args.weights_out and Path(args.weights_out)
    if weights and weights.suffix.lower() != ".npy":
        weights = weights.with_name(weights.name + ".npy")
    return out, NpyOutput(out, shape, weights or None, weights_shape)


def _per_request(client: HeatmapClient, args: argparse.Namespace, samples: KeypointSet,
                 options: RenderOptions) -> int:
    """Samples per request: ``--batch``, or the most the server's limits allow (asked once)."""
    limits = client.info().limits
    lead = samples.keypoints.shape[1:-1]
    if len(lead) == 2 and limits.max_instances and lead[0] > limits.max_instances:
        what = ("--per image: {} people in one image" if args.per == "image" else
                f"{args.keypoints}: {{}} instances per sample").format(lead[0])
        raise ValueError(f"{what}, over the server's max_instances of {limits.max_instances}")
    budget = 0 if args.batch else DEFAULT_REQUEST_BYTES
    most, bound = samples_per_request(limits, options, lead, heatmap_bytes=budget,
                                      visibility=samples.visibility is not None)
    if most < 1:
        raise ValueError(f"--size {args.size[0]} {args.size[1]}: one sample of {lead[-1]} "
                         f"keypoints is over the server's {bound}")
    if args.batch and args.batch > most:
        raise ValueError(f"--batch {args.batch}: the server's {bound} allows at most {most} "
                         "samples per request")
    return args.batch or most


def _render(client: HeatmapClient, args: argparse.Namespace) -> int:
    samples = _samples(args)
    count = samples.keypoints.shape[-2]
    if args.png_channel is not None and not 0 <= args.png_channel < count:
        raise ValueError(f"--png-channel {args.png_channel}: {args.keypoints} has {count} "
                         f"keypoints per instance (0..{count - 1})")
    coords = _coords(args, samples)

    @functools.cache
    def options_for(size: tuple[int, int] | None) -> RenderOptions:
        return RenderOptions(size=tuple(args.size), sigma=args.sigma, method=args.method,
                             coords=coords, input_size=size if coords == "pixel" else None,
                             dtype=args.dtype, codec=args.codec)

    plan = samples if coords == "pixel" else dataclasses.replace(samples, image_sizes=None)
    first = plan.image_sizes[0] if plan.image_sizes is not None else None
    options = options_for(None if first is None else (int(first[0]), int(first[1])))
    chunks = plan_chunks(plan, _per_request(client, args, samples, options), options_for)
    out, output = _output(args, samples)
    bar = progress_bar(len(samples), args.progress, name=out.name, requests=len(chunks))
    try:
        done = render_to(output, client, samples, chunks, bar=bar, idle_timeout=args.timeout,
                         heat=bool(args.png))
        bar.close()
        if done.landed < done.labelled:
            print(f"heatmap-client: {done.landed} of {done.labelled} keypoints landed on the "
                  f"{args.size[0]}x{args.size[1]} heatmap; {_off_map_hint(coords, plan)}",
                  file=sys.stderr)
            if done.landed == 0:
                output.discard()
                print(f"heatmap-client: {out} not written", file=sys.stderr)
                return 3
        output.commit()
    except BaseException:
        output.discard()  # no partial file is left behind
        raise
    finally:
        bar.close()
    if args.png:
        from .preview import save_preview

        save_preview(done.heat[None], args.png, args.image,
                     keypoints=_heatmap_coordinates(args, coords, plan),
                     visibility=samples.visibility, channel=args.png_channel, crop=args.png_crop)
    shape = "x".join(str(side) for side in (len(samples), count, *args.size))
    requests = f", {done.requests} requests" if done.requests > 1 else ""
    print(f"{out}: {shape} float32, {done.wire_bytes} bytes on the wire, "
          f"server {done.server_us} us{requests}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_flags(parser, args)
    client = _client(args)
    try:
        if args.command == "health":
            status = client.health(timeout=args.timeout)
            print(status)
            return 0 if status == "SERVING" else 1
        if args.command == "info":
            info = client.info()
            print(json.dumps(json_format.MessageToDict(info), indent=2))
            return 0
        return _render(client, args)
    except HeatmapError as error:
        print(f"heatmap-client: {error}", file=sys.stderr)
        return 1 if args.command == "health" else 2
    except (OSError, ValueError) as error:
        print(f"heatmap-client: {error}", file=sys.stderr)
        return 2
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
