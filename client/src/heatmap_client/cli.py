r"""``heatmap-client``: health checks, server info and one-off renders from the command line.

    heatmap-client --target HOST:PORT health          # exit 0 only when SERVING
    heatmap-client --target HOST:PORT info
    heatmap-client --target HOST:PORT render face.pts --size 64 64 --input-size 1024 817 \
        --out hm.npy

Exit status: 0 done, 1 not serving (health), 2 an error, 3 no keypoint landed on the heatmap
(nothing written: the targets would be all zeros).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from google.protobuf import json_format

from ._client import HeatmapClient
from ._errors import HeatmapError
from .keypoint_files import KeypointFile, read_keypoints
from .options import AUTO_CODEC, RenderOptions
from .wire import CODEC_NAMES, COORDINATE_SPACES, DTYPE_NAMES, METHODS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heatmap-client", description=__doc__.splitlines()[0])
    env = os.environ.get
    parser.add_argument("--target", default=env("HEATMAP_TARGET", "127.0.0.1:50051"),
                        help="server address (env HEATMAP_TARGET, default 127.0.0.1:50051)")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline per call in seconds")
    parser.add_argument("--token-file", default=env("HEATMAP_TOKEN_FILE"),
                        help="file holding the bearer token (env HEATMAP_TOKEN_FILE)")
    parser.add_argument("--tls-ca", default=env("HEATMAP_TLS_CA"), help="CA certificate (PEM)")
    parser.add_argument("--tls-cert", default=env("HEATMAP_TLS_CERT"), help="client certificate")
    parser.add_argument("--tls-key", default=env("HEATMAP_TLS_KEY"), help="client key (PEM)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("health", help="exit 0 when the server is SERVING, 1 otherwise")
    commands.add_parser("info", help="print the server's version, device and limits as JSON")
    render = commands.add_parser("render", help="render a keypoint file to .npy")
    render.add_argument("keypoints", help="COCO .json, iBUG .pts or .npy")
    render.add_argument("--out", required=True, help="heatmaps (B, K, H, W) as .npy")
    render.add_argument("--weights-out", help="weights as .npy")
    render.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(64, 48))
    render.add_argument("--sigma", type=float, default=2.0)
    render.add_argument("--method", default=METHODS.default, choices=METHODS.names)
    render.add_argument("--coords", default=None, choices=COORDINATE_SPACES.names,
                        help="default: pixel when the image size is known, else heatmap")
    render.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="size of the image the keypoints are pixels of (.pts and .npy hold "
                        "image pixels; default: from the COCO file or --image); implies --coords "
                        "pixel")
    render.add_argument("--image-id", type=int,
                        help="COCO image id (default: the image named by --image, else the first)")
    render.add_argument("--dtype", default=DTYPE_NAMES.default,
                        choices=DTYPE_NAMES.names)
    render.add_argument("--codec", default=AUTO_CODEC, choices=(AUTO_CODEC, *CODEC_NAMES.names),
                        help="auto: separable for udp and dark, zstd for the others")
    render.add_argument("--png", help="write a preview PNG: heat and a dot per keypoint")
    render.add_argument("--image", help="the image the keypoints belong to: gives --input-size, "
                        "picks its COCO annotations by file name, and is drawn under the preview")
    render.add_argument("--png-channel", type=int, metavar="K",
                        help="preview keypoint K's channel alone (default: the max over all)")
    render.add_argument("--png-crop", action="store_true",
                        help="crop the preview to the keypoints")
    return parser


def _client(args: argparse.Namespace) -> HeatmapClient:
    token = None
    if args.token_file:
        with open(args.token_file) as handle:
            token = handle.read().strip()
    return HeatmapClient(args.target, timeout=args.timeout, token=token,
                         tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key)


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width


def _input_size(args: argparse.Namespace, data: KeypointFile) -> tuple[int, int] | None:
    """(H, W) of the image the keypoints are pixels of, from the flag, the file or the image."""
    if args.input_size:
        return args.input_size[0], args.input_size[1]
    if args.image:
        size = _image_size(args.image)
        if data.image_size is not None and data.image_size != size:
            raise ValueError(f"--image {args.image} is {size[0]}x{size[1]} (H x W), but "
                             f"{args.keypoints} records {data.image_size[0]}x{data.image_size[1]} "
                             f"for {data.image_name}")
        return size
    return data.image_size


def _landed(weights: np.ndarray, visibility: np.ndarray | None) -> tuple[int, int]:
    """(keypoints drawn on the heatmap, keypoints labelled): weight 0 marks a window off the map."""
    drawn = np.ones(weights.shape, bool) if visibility is None else visibility >= 0.5
    return int(((weights > 0) & drawn).sum()), int(drawn.sum())


def _off_map_hint(coords: str, input_size: tuple[int, int] | None) -> str:
    if coords == "heatmap":
        return "image pixels? pass --input-size H W (or --image IMG)"
    if coords == "pixel":
        return f"is {input_size[0]} {input_size[1]} the image's size (H W)?"
    return "normalized coordinates lie in [-1, 1]"


def _heatmap_coordinates(keypoints: np.ndarray, args: argparse.Namespace, coords: str,
                         input_size: tuple[int, int] | None) -> np.ndarray:
    """``keypoints`` in heatmap pixels, as the renderer maps them (for the preview's dots)."""
    height, width = args.size
    points = np.asarray(keypoints, np.float64)
    if coords == "normalized":
        return 0.5 * (points + 1) * np.array([width, height])
    if coords == "pixel":
        if args.method == "udp":
            return points * np.array([(width - 1) / max(input_size[1] - 1, 1),
                                      (height - 1) / max(input_size[0] - 1, 1)])
        return points * np.array([width / input_size[1], height / input_size[0]])
    return points


def _render(client: HeatmapClient, args: argparse.Namespace) -> int:
    image_name = args.image if args.keypoints.lower().endswith(".json") and args.image else None
    data = read_keypoints(args.keypoints, args.image_id, image_name)
    count = data.keypoints.shape[-2]
    if args.png_channel is not None and not 0 <= args.png_channel < count:
        raise ValueError(f"--png-channel {args.png_channel}: {args.keypoints} has {count} "
                         f"keypoints per instance (0..{count - 1})")
    input_size = _input_size(args, data)
    coords = args.coords or ("pixel" if input_size else "heatmap")
    if coords == "pixel" and input_size is None:
        raise ValueError("--coords pixel: pass --input-size H W (the image's size) or --image IMG")
    options = RenderOptions(
        size=tuple(args.size),
        sigma=args.sigma,
        method=args.method,
        coords=coords,
        input_size=input_size if coords == "pixel" else None,
        dtype=args.dtype,
        codec=args.codec,
    )
    result = client.render(data.keypoints, visibility=data.visibility, **options.as_kwargs())
    landed, labelled = _landed(result.weights, data.visibility)
    if landed < labelled:
        hint = _off_map_hint(coords, input_size)
        print(f"heatmap-client: {landed} of {labelled} keypoints landed on the "
              f"{args.size[0]}x{args.size[1]} heatmap; {hint}", file=sys.stderr)
        if landed == 0 and labelled > 0:
            print(f"heatmap-client: {args.out} not written", file=sys.stderr)
            return 3
    np.save(args.out, result.heatmaps)
    if args.weights_out:
        np.save(args.weights_out, result.weights)
    if args.png:
        from .preview import save_preview

        save_preview(result.heatmaps, args.png, args.image,
                     keypoints=_heatmap_coordinates(data.keypoints, args, coords, input_size),
                     visibility=data.visibility, channel=args.png_channel, crop=args.png_crop)
    shape = "x".join(str(side) for side in result.heatmaps.shape)
    print(f"{args.out}: {shape} {result.heatmaps.dtype}, {result.wire_bytes} bytes on the wire, "
          f"server {result.timings.total_us} us")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.command == "render" and not args.png
            and (args.png_channel is not None or args.png_crop)):
        parser.error("--png-channel and --png-crop shape the preview: add --png PREVIEW.png")
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
