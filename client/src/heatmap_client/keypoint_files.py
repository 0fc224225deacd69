"""Reading keypoints from the files landmark and pose data sets ship.

- COCO keypoint json (``annotations[i].keypoints`` = x, y, v triplets): all annotations of one
  image become ``(B, K, 2)`` with visibility ``(B, K)``. COCO's flag v (0 not labelled, 1 labelled
  but hidden, 2 visible) becomes the weight ``v > 0``, 0 or 1: never a weight of 2 (as mmpose
  clips it when it loads a dataset).
- iBUG ``.pts`` (a ``{ }`` block of ``x y`` lines, 0-based pixels): one face, ``(1, K, 2)``.
- ``.npy``: ``(K, 2)``, ``(B, K, 2)`` or ``(B, N, K, 2)`` coordinates, or ``(..., 3)`` with a
  visibility column (a weight in [0, 1]).

Whole files, for rendering every sample (:class:`KeypointSet`, :func:`read_keypoint_set`): every
annotated image of a COCO file, a sample per person or one multi-person sample per image; every
face of a folder of ``.pts`` files, sorted by name; every row of a ``.npy``, memory-mapped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "KeypointFile",
    "KeypointSet",
    "as_instances",
    "image_size",
    "read_coco",
    "read_coco_set",
    "read_keypoint_set",
    "read_keypoints",
    "read_npy",
    "read_pts",
    "read_pts_folder",
]

# The images a .pts file of a folder may have beside it (same name), which give its size.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class KeypointFile:
    """Keypoints ``(B, K, 2)`` (or ``(B, N, K, 2)``), visibility or None, image size if known."""

    keypoints: np.ndarray
    visibility: np.ndarray | None
    image_size: tuple[int, int] | None = None
    image_name: str | None = None


@dataclass(frozen=True)
class KeypointSet:
    """Every sample of a keypoint file or folder, in the order they are rendered and written.

    Attributes:
        keypoints: ``(B, K, 2)``, or ``(B, N, K, 2)`` for ``N`` instances per sample; image
            pixels unless the caller says otherwise (a ``.npy`` may be memory-mapped, any dtype).
        visibility: ``(B, K)`` or ``(B, N, K)`` weights in [0, 1], or None (every keypoint drawn).
        image_sizes: ``(B, 2)`` int64 ``(H, W)`` of each sample's image, 0 where unknown; or
            None when no sample's size is known.
        index: arrays ``(B,)`` that name each sample, saved beside the heatmaps in a ``.npz``:
            ``image_id`` and ``annotation_id`` (COCO), ``name`` (a ``.pts`` folder's files).
    """

    keypoints: np.ndarray
    visibility: np.ndarray | None
    image_sizes: np.ndarray | None = None
    index: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keypoints)

    @classmethod
    def of(cls, data: KeypointFile) -> KeypointSet:
        """The samples of one :class:`KeypointFile`, all of its image's size."""
        sizes = None
        if data.image_size is not None:
            sizes = np.tile(np.array(data.image_size, np.int64), (len(data.keypoints), 1))
        return cls(data.keypoints, data.visibility, sizes)


def as_instances(data: KeypointFile) -> KeypointFile:
    """One image's people ``(P, K, 2)`` as one sample of ``P`` instances, ``(1, P, K, 2)``: one
    multi-person heatmap (instances merge by maximum)."""
    visibility = None if data.visibility is None else data.visibility[None]
    return KeypointFile(data.keypoints[None], visibility, data.image_size, data.image_name)


def read_pts(path: str | Path) -> KeypointFile:
    """One face from an iBUG ``.pts`` file: keypoints ``(1, K, 2)`` in image pixels.

    Raises:
        ValueError: naming the file and line, for a missing ``{ }`` block, a line that is not two
            numbers, or a point count that differs from the ``n_points`` header.
    """
    lines = Path(path).read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "{") + 1
        stop = next(i for i in range(start, len(lines)) if lines[i].strip() == "}")
    except StopIteration:
        raise ValueError(f"{path}: not an iBUG .pts file (no {{ }} block)") from None
    declared = _declared_points(path, lines[: start - 1])
    points = []
    for number in range(start, stop):
        values = lines[number].split()
        if not values:
            continue
        if len(values) != 2:
            raise ValueError(f"{path}:{number + 1}: expected two numbers 'x y', got "
                             f"{len(values)}: {lines[number].strip()!r}")
        try:
            points.append([float(values[0]), float(values[1])])
        except ValueError:
            raise ValueError(f"{path}:{number + 1}: not a number in "
                             f"{lines[number].strip()!r}") from None
    if declared is not None and declared != len(points):
        raise ValueError(f"{path}: the header declares n_points {declared}, the {{ }} block "
                         f"holds {len(points)} points")
    return KeypointFile(np.array(points, np.float32).reshape(1, -1, 2), None)


def _declared_points(path: str | Path, header: list[str]) -> int | None:
    for number, line in enumerate(header):
        key, _, value = line.partition(":")
        if key.strip() == "n_points":
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{path}:{number + 1}: n_points is not a whole number: "
                                 f"{value.strip()!r}") from None
    return None


def _coco(path: str | Path) -> tuple[dict, dict[int, list[dict]]]:
    """The file's images by id, and its annotations with keypoints by image id (file order)."""
    data = json.loads(Path(path).read_text())
    images = {image["id"]: image for image in data.get("images", [])}
    people: dict[int, list[dict]] = {}
    for annotation in data.get("annotations", []):
        if annotation.get("keypoints"):
            people.setdefault(annotation["image_id"], []).append(annotation)
    if not people:
        raise ValueError(f"{path}: no annotations with keypoints")
    return images, people


def _triplets(path: str | Path, annotations: list[dict], count: int | None = None) -> np.ndarray:
    """``(P, K, 3)`` float32 (x, y, v) of the annotations; every one must hold ``K`` triplets."""
    for annotation in annotations:
        values = len(annotation["keypoints"])
        if values % 3 or (count is not None and values != 3 * count):
            expected = f"{3 * count} values ({count} x, y, v triplets)" if count else \
                "x, y, v triplets"
            raise ValueError(f"{path}: annotation {annotation.get('id')} (image_id "
                             f"{annotation.get('image_id')}) has {values} keypoint values, "
                             f"expected {expected}")
        count = values // 3
    triplets = np.array([a["keypoints"] for a in annotations], dtype=np.float32)
    return triplets.reshape(len(annotations), -1, 3)


def _labelled(flags: np.ndarray) -> np.ndarray:
    """COCO's v (0 not labelled, 1 hidden, 2 visible) as a weight: 1 where labelled, never 2."""
    return (flags > 0).astype(np.float32)


def _size(image: dict | None) -> tuple[int, int] | None:
    return (int(image["height"]), int(image["width"])) if image else None


def read_coco(path: str | Path, image_id: int | None = None,
              image_name: str | None = None) -> KeypointFile:
    """Every person of one image of a COCO keypoint file: ``(B, K, 2)`` and visibility ``(B, K)``.

    With neither ``image_id`` nor ``image_name``, the first annotated image. The visibility is
    COCO's flag ``v > 0`` (1 for hidden and visible keypoints alike, never 2).

    Args:
        path: the COCO json.
        image_id: the image whose annotations to take.
        image_name: or the image by ``file_name`` (compared without folders), e.g. the file the
            preview is drawn over; when both are given they must name the same image.
    """
    images, people = _coco(path)
    if image_name is not None:
        named = _image_id_by_name(path, images, image_name)
        if image_id is not None and image_id != named:
            raise ValueError(f"{path}: image_id {image_id} is not {Path(image_name).name}, "
                             f"which is image_id {named}")
        image_id = named
    if image_id is None:
        image_id = next(iter(people))
    chosen = people.get(image_id)
    if not chosen:
        raise ValueError(f"{path}: no annotations with keypoints for image_id {image_id}")
    triplets = _triplets(path, chosen)
    image = images.get(image_id)
    name = image.get("file_name") if image else None
    return KeypointFile(triplets[..., :2].copy(), _labelled(triplets[..., 2]), _size(image), name)


def read_coco_set(path: str | Path, per: str = "person") -> KeypointSet:
    """Every annotated image of a COCO keypoint file, in the order of its ``images`` list (then
    any image the annotations name that the list lacks, size unknown).

    Args:
        path: the COCO json.
        per: ``person``: a sample per annotation, ``(B, K, 2)``, each image's people in file
            order; index ``image_id`` and ``annotation_id``. ``image``: one sample per image,
            ``(B, N, K, 2)`` with ``N`` the most people in one image, the missing ones padded with
            visibility 0 (the renderer merges instances by maximum); index ``image_id``.

    The visibility is COCO's flag ``v > 0``: 0 or 1, never 2.

    Raises:
        ValueError: naming the file, for no annotated image, or annotations of different ``K``.
    """
    if per not in ("person", "image"):
        raise ValueError(f"per: expected 'person' or 'image', got {per!r}")
    images, people = _coco(path)
    order = [i for i in images if i in people] + [i for i in people if i not in images]
    count = len(people[order[0]][0]["keypoints"]) // 3
    groups = [_triplets(path, people[i], count) for i in order]
    sizes = np.array([_size(images.get(i)) or (0, 0) for i in order], np.int64)
    if per == "person":
        triplets = np.concatenate(groups)
        lengths = [len(group) for group in groups]
        index = {
            "image_id": np.repeat(np.array(order, np.int64), lengths),
            "annotation_id": np.array([a.get("id", -1) for i in order for a in people[i]],
                                      np.int64),
        }
        return KeypointSet(triplets[..., :2].copy(), _labelled(triplets[..., 2]),
                           _known(np.repeat(sizes, lengths, axis=0)), index)
    most = max(len(group) for group in groups)
    triplets = np.zeros((len(order), most, count, 3), np.float32)
    for row, group in enumerate(groups):
        triplets[row, : len(group)] = group
    return KeypointSet(triplets[..., :2].copy(), _labelled(triplets[..., 2]), _known(sizes),
                       {"image_id": np.array(order, np.int64)})


def _known(sizes: np.ndarray) -> np.ndarray | None:
    return sizes if sizes.any() else None


def _image_id_by_name(path: str | Path, images: dict, image_name: str) -> int:
    wanted = Path(image_name).name
    found = [i for i, image in images.items() if Path(image.get("file_name", "")).name == wanted]
    if not found:
        names = ", ".join(
            sorted(Path(image.get("file_name", "")).name for image in images.values()))
        raise ValueError(f"{path}: no image with file_name {wanted!r} (it has: {names})")
    return found[0]


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file, from its header (needs Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        raise ValueError(f"{path}: reading an image's size needs Pillow: "
                         "pip install 'heatmap-client[preview]'") from None
    with Image.open(path) as image:
        return image.height, image.width


def read_pts_folder(path: str | Path) -> KeypointSet:
    """Every face of a folder of iBUG ``.pts`` files (300-W style, subfolders included), one
    sample each, sorted by their paths in the folder.

    A face's image size comes from the image beside its ``.pts`` (the same name, ``.png``,
    ``.jpg`` or ``.jpeg``), 0 where there is none. The index ``name`` holds the ``.pts`` paths
    relative to the folder.

    Raises:
        ValueError: naming the folder when it holds no ``.pts``, or the file and line of a bad
            one, or the file whose point count differs from the first file's.
    """
    folder = Path(path)
    files = sorted(folder.rglob("*.pts"), key=lambda file: file.relative_to(folder).as_posix())
    if not files:
        raise ValueError(f"{path}: no .pts files in this folder")
    faces = []
    for file in files:
        face = read_pts(file).keypoints[0]
        if faces and len(face) != len(faces[0]):
            raise ValueError(f"{file}: {len(face)} points, but {files[0]} has {len(faces[0])}")
        faces.append(face)
    sizes = np.zeros((len(files), 2), np.int64)
    for row, file in enumerate(files):
        beside = [file.with_suffix(suffix) for suffix in IMAGE_SUFFIXES]
        beside += [candidate.with_suffix(candidate.suffix.upper()) for candidate in beside]
        image = next((candidate for candidate in beside if candidate.is_file()), None)
        if image is not None:
            sizes[row] = image_size(image)
    names = np.array([file.relative_to(folder).as_posix() for file in files])
    return KeypointSet(np.stack(faces), None, _known(sizes), {"name": names})


def read_npy(path: str | Path, mmap: bool = False) -> KeypointFile:
    """Keypoints from a ``.npy``: ``(K, 2)``, ``(B, K, 2)`` or ``(B, N, K, 2)``, or ``(..., 3)``
    whose last column is the visibility, a weight in [0, 1].

    Args:
        path: the file.
        mmap: keep the array memory-mapped in its own dtype (for rendering a large file in
            chunks); otherwise float32 in memory.

    Raises:
        ValueError: naming the file, for another shape, or a visibility outside [0, 1] (COCO's
            flags 0/1/2 are labelled where v > 0: save ``v > 0``, not v).
    """
    array = np.load(path, mmap_mode="r" if mmap else None)
    if array.ndim == 2:
        array = array[None]
    if array.ndim not in (3, 4) or array.shape[-1] not in (2, 3) or array.dtype.kind not in "iuf":
        raise ValueError(f"{path}: expected numbers of shape (..., K, 2) or (..., K, 3), got "
                         f"{array.dtype} {array.shape}")
    if not mmap:
        array = array.astype(np.float32)
    if array.shape[-1] == 2:
        return KeypointFile(array, None)
    visibility = array[..., 2]
    if visibility.size:
        low, high = float(visibility.min()), float(visibility.max())
        if not (0 <= low and high <= 1):  # NaN fails both
            raise ValueError(
                f"{path}: the visibility column (the last of 3) must lie in [0, 1], got values "
                f"in [{low:g}, {high:g}]; COCO's flags 0/1/2 mean labelled where v > 0: save "
                "(v > 0) as the column")
    if mmap:
        return KeypointFile(array[..., :2], visibility)
    return KeypointFile(array[..., :2].copy(), visibility.copy())


def read_keypoints(path: str | Path, image_id: int | None = None,
                   image_name: str | None = None) -> KeypointFile:
    """Reads a COCO ``.json``, iBUG ``.pts`` or ``.npy`` keypoint file by its suffix.

    ``image_id`` and ``image_name`` pick the image of a COCO file (see ``read_coco``).
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return read_coco(path, image_id, image_name)
    if suffix == ".pts":
        return read_pts(path)
    if suffix == ".npy":
        return read_npy(path)
    raise ValueError(f"{path}: unknown keypoint format (expected .json, .pts or .npy)")


def read_keypoint_set(path: str | Path, per: str = "person") -> KeypointSet:
    """Every sample of a keypoint file or folder: a COCO ``.json`` (see :func:`read_coco_set`,
    ``per`` ``person`` or ``image``), a folder of ``.pts`` (:func:`read_pts_folder`), one ``.pts``
    face, or a ``.npy`` (memory-mapped, converted to float32 a chunk at a time by the caller)."""
    if Path(path).is_dir():
        return read_pts_folder(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return read_coco_set(path, per)
    if suffix == ".pts":
        return KeypointSet.of(read_pts(path))
    if suffix == ".npy":
        return KeypointSet.of(read_npy(path, mmap=True))
    raise ValueError(f"{path}: unknown keypoint format (expected .json, .pts, .npy or a folder "
                     "of .pts)")
