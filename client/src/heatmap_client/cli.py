"""``heatmap-client``: health checks, server info and one-off renders from the command line.

    heatmap-client --target HOST:PORT health          # exit 0 only when SERVING
    heatmap-client --target HOST:PORT info
    heatmap-client --target HOST:PORT render face.pts --size 64 64 --sigma 2 --out hm.npy
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
from .keypoint_files import read_keypoints

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
    render.add_argument("--method", default="msra", choices=["seed", "msra", "udp", "dark"])
    render.add_argument("--coords", default=None, choices=["heatmap", "pixel", "normalized"],
                        help="default: pixel when the image size is known, else heatmap")
    render.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="input image size for --coords pixel (default: from the file or --image)")
    render.add_argument("--image-id", type=int, help="COCO image id (default: the first)")
    render.add_argument("--dtype", default="float32",
                        choices=["float32", "float16", "bfloat16", "uint16", "uint8"])
    render.add_argument("--codec", default="zstd", choices=["zstd", "none", "separable"])
    render.add_argument("--png", help="write a preview PNG (max over channels)")
    render.add_argument("--image", help="image to draw the preview over")
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


def _render(client: HeatmapClient, args: argparse.Namespace) -> int:
    data = read_keypoints(args.keypoints, args.image_id)
    input_size = tuple(args.input_size) if args.input_size else data.image_size
    if input_size is None and args.image:
        input_size = _image_size(args.image)
    coords = args.coords or ("pixel" if input_size else "heatmap")
    result = client.render(
        data.keypoints,
        size=tuple(args.size),
        sigma=args.sigma,
        method=args.method,
        coords=coords,
        input_size=input_size if coords == "pixel" else None,
        visibility=data.visibility,
        dtype=args.dtype,
        codec=args.codec,
    )
    np.save(args.out, result.heatmaps)
    if args.weights_out:
        np.save(args.weights_out, result.weights)
    if args.png:
        from .preview import save_preview

        save_preview(result.heatmaps, args.png, args.image)
    shape = "x".join(str(side) for side in result.heatmaps.shape)
    print(f"{args.out}: {shape} {result.heatmaps.dtype}, {result.wire_bytes} bytes on the wire, "
          f"server {result.timings.total_us} us")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
