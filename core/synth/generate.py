"""Synthetic face dataset in the exact WIDERFace / RetinaFace on-disk layout.

WIDERFace cannot be downloaded here, so tests, CI and the demo train and evaluate on drawn faces
(see ``synth_faces``) written exactly where the real data would be::

    DIR/train/images/<event>/<event_short>_<k>.jpg     DIR/train/label.txt
    DIR/val/images/<event>/<event_short>_<k>.jpg       DIR/val/label.txt   DIR/val/wider_val.txt
    DIR/ground_truth/wider_face_val.mat  wider_{easy,medium,hard}_val.mat
    DIR/manifest.json

``label.txt``: ``# <event>/<file>.jpg`` then one line per face,
``x y w h lx0 ly0 0.0 ... lx4 ly4 0.0 blur`` (20 numbers; the landmark group is all -1.0 when
absent; landmark order: left eye, right eye, nose, mouth left, mouth right, left/right in image
terms as RetinaFace uses). Every face, invalid ones included, is listed, as in the official
annotations; the val ``label.txt`` and the .mat files hold the same faces in the same order
(the .mat files group images by event, as the official ones do, and are written by
``core.data.wider_gt_write.write_wider_gt``, the project's single writer of that layout).

Easy / medium / hard keep lists (``gt_list``) mimic how WIDER FACE's settings grade faces by
size, blur and occlusion (h = box height in pixels)::

    invalid: h < 6 or more than 70 % of the face hidden    -> in no setting
    hard   = valid and h >= 10
    medium = hard and h >= 20 and occlusion < 2 (heavy) and blur < 2 (heavy)
    easy   = medium and h >= 50 and occlusion == 0

so easy is a subset of medium, which is a subset of hard. The attributes themselves (blur,
occlusion, pose, illumination, expression, invalid) record how each face was drawn.

Determinism: image k of a split is drawn from ``SeedSequence([seed, split_id, k])`` only, so the
same seed gives byte-identical label files and JPEGs, and image k does not depend on how many
images are generated. The dataset is built in a temporary sibling directory and renamed into
place at the end, so an interrupted run never leaves a half-written dataset at DIR.

CLI: ``python -m core.data.synth --out DIR --num-train N --num-val M --seed S``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.data.wider_gt import GTImage
from core.data.wider_gt_write import write_wider_gt
from core.io.cli_paths import CliParser, fail, output_dir
from core.lab.artifacts import DEFAULT_DATA, MANIFEST_JSON
from core.synth.backgrounds import add_clutter, make_background, paste_negatives
from core.synth.faces import DrawnFace, draw_face, face_extent, sample_style

SPLITS = {"train": 0, "val": 1}
Box = tuple[float, float, float, float]  # x0, y0, x1, y1
MANIFEST_VERSION = 1

HARD_MIN_PX = 10
MEDIUM_MIN_PX = 20
EASY_MIN_PX = 50


@dataclass(frozen=True)
class Event:
    """A scene type: WIDER groups images into events; ours vary crowd size, scale and backdrop."""

    name: str
    faces: tuple[int, int]  # faces per image, inclusive
    rel_size: tuple[float, float]  # face height range as a fraction of the image's short side
    min_px: float
    backgrounds: tuple[str, ...]
    clutter: float  # chance of extra clutter shapes over the background
    night: bool = False

    @property
    def short(self) -> str:
        """'0--Synthetic_Street' -> '0_Synthetic_Street', as WIDER names its files."""
        return self.name.replace("--", "_", 1)


EVENTS: tuple[Event, ...] = (
    Event("0--Synthetic_Street", (2, 8), (0.03, 0.35), 8, ("texture:brick", "texture:gravel", "clutter"), 0.6),
    Event("1--Synthetic_Indoor", (1, 6), (0.06, 0.5), 8, ("gradient", "clutter", "noise"), 0.8),
    Event("2--Synthetic_Crowd", (8, 15), (0.012, 0.12), 5, ("noise", "texture:gravel", "clutter"), 0.5),
    Event("3--Synthetic_Portrait", (1, 2), (0.3, 0.85), 8, ("gradient", "noise", "texture"), 0.3),
    Event("4--Synthetic_Park", (2, 8), (0.03, 0.4), 8, ("texture:grass", "noise"), 0.4),
    Event("5--Synthetic_Night", (1, 8), (0.04, 0.5), 8, ("texture", "clutter", "gradient", "noise"), 0.5, True),
)


@dataclass
class SynthImage:
    """One rendered image: where it goes in the layout, its JPEG bytes and its ground truth."""

    split: str
    index: int
    event: str
    name: str  # file name without .jpg
    width: int
    height: int
    jpeg: bytes
    faces: list[DrawnFace]

    @property
    def rel_path(self) -> str:
        return f"{self.event}/{self.name}.jpg"


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Per-image generator: image k never depends on the other images or on the counts."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


def keep_settings(face: DrawnFace) -> tuple[str, ...]:
    """The WIDER FACE settings a face counts in (rule in the module docstring)."""
    h = face.box[3]
    if face.invalid or h < HARD_MIN_PX:
        return ()
    if h < MEDIUM_MIN_PX or face.occlusion >= 2 or face.blur >= 2:
        return ("hard",)
    if h < EASY_MIN_PX or face.occlusion > 0:
        return ("medium", "hard")
    return ("easy", "medium", "hard")


def _place_faces(rng: np.random.Generator, ev: Event, width: int, height: int) -> tuple[list[tuple], list[Box]]:
    """Sizes, styles and centres of the faces, kept clear of each other's head-and-shoulders area.

    Returns (style, cx, cy, fw, fh) tuples and the xyxy regions they occupy (kept free of negatives).
    Big faces are placed first; a face that finds no room is shrunk and retried, then dropped.
    """
    short = min(width, height)
    lo = max(ev.min_px, ev.rel_size[0] * short)
    hi = max(lo + 1, min(ev.rel_size[1] * short, 0.9 * short))
    n = int(rng.integers(ev.faces[0], ev.faces[1] + 1))
    heights = sorted(np.exp(rng.uniform(math.log(lo), math.log(hi), n)), reverse=True)
    placed: list[tuple] = []
    boxes: list[Box] = []
    spans: list[Box] = []
    for fh in heights:
        style = sample_style(rng, fh)
        for _ in range(4):
            fw = fh * rng.uniform(0.74, 0.9) * (1 - 0.15 * abs(style.yaw))
            spot = _find_spot(rng, fw, fh, style.roll, width, height, boxes, spans)
            if spot is not None:
                cx, cy, box, span = spot
                placed.append((style, cx, cy, fw, fh))
                boxes.append(box)
                spans.append(span)
                break
            fh *= 0.7
    return placed, spans


def _find_spot(
    rng: np.random.Generator,
    fw: float,
    fh: float,
    roll: float,
    width: int,
    height: int,
    boxes: list[Box],
    spans: list[Box],
) -> tuple[float, float, Box, Box] | None:
    """A centre whose face box stays inside the image and off every other face's hair/shoulders."""
    hx, hy = face_extent(fw, fh, roll)
    if 2 * hx >= width - 2 or 2 * hy >= height - 2:
        return None
    for _ in range(30):
        cx, cy = float(rng.uniform(hx + 1, width - hx - 1)), float(rng.uniform(hy + 1, height - hy - 1))
        box = (cx - hx, cy - hy, cx + hx, cy + hy)
        span = (cx - fw - 0.1 * fh, cy - 0.85 * fh, cx + fw + 0.1 * fh, cy + 1.05 * fh)
        if not _hits(box, spans) and not _hits(span, boxes):
            return cx, cy, box, span
    return None


def _hits(box: Box, others: list[Box]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in others)


def render_image(seed: int, split: str, index: int, min_size: int = 256, max_size: int = 640) -> SynthImage:
    """Draw image ``index`` of ``split``: background, negatives, faces, global camera effects."""
    rng = image_rng(seed, split, index)
    ev = EVENTS[int(rng.integers(len(EVENTS)))]
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    placed, spans = _place_faces(rng, ev, width, height)

    img = make_background(rng, width, height, str(rng.choice(ev.backgrounds)))
    if rng.random() < ev.clutter:
        add_clutter(rng, img, int(rng.integers(3, 20)))
    if ev.name.endswith("Portrait") and rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(2, 6)))  # shallow depth of field
    paste_negatives(rng, img, spans, int(rng.integers(0, 5)))

    if ev.night:  # the whole scene is dimmed below; a second per-face darkening would leave black blobs
        for style, *_ in placed:
            style.light = "" if style.light == "dark" else style.light
    faces = [draw_face(img, style, cx, cy, fw, fh, dark_scene=ev.night) for style, cx, cy, fw, fh in placed]

    out = img.astype(np.float32)
    if ev.night:
        out *= np.float32([rng.uniform(0.45, 0.65), rng.uniform(0.3, 0.45), rng.uniform(0.25, 0.4)])
    if rng.random() < 0.5:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(1, 6))
    out = np.clip(out * np.float32(rng.uniform(0.85, 1.15)) + np.float32(rng.uniform(-15, 15)), 0, 255)
    ok, buf = cv2.imencode(".jpg", out.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(75, 96))])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return SynthImage(split, index, ev.name, f"{ev.short}_{index}", width, height, buf.tobytes(), faces)


def face_line(face: DrawnFace) -> str:
    """One RetinaFace label line (20 numbers)."""
    x, y, w, h = face.box
    if face.landmarks is None:
        marks = " ".join(["-1.0"] * 15)
    else:
        marks = " ".join(f"{lx:.3f} {ly:.3f} 0.0" for lx, ly in face.landmarks)
    return f"{x} {y} {w} {h} {marks} {float(face.blur):.1f}"


def _gt_image(im: SynthImage) -> GTImage:
    settings = [keep_settings(f) for f in im.faces]
    return GTImage(
        event=im.event,
        name=im.name,
        boxes=np.array([f.box for f in im.faces], dtype=np.float64).reshape(-1, 4),
        attributes={
            a: np.array([getattr(f, a) for f in im.faces], dtype=np.int64)
            for a in ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
        },
        keep={
            s: np.array([i for i, ks in enumerate(settings) if s in ks], dtype=np.int64)
            for s in ("easy", "medium", "hard")
        },
    )


def _render_job(job: tuple[int, str, int, int, int]) -> SynthImage:
    return render_image(*job)


def _render_all(jobs: list[tuple[int, str, int, int, int]], workers: int, progress: bool) -> Iterator[SynthImage]:
    bar = tqdm(total=len(jobs), desc="synth faces", unit="img", disable=not progress)
    try:
        if workers <= 1 or len(jobs) < 8:
            for job in jobs:
                yield _render_job(job)
                bar.update()
        else:
            # spawn, not fork: forking a parent whose OpenCV/tqdm threads hold locks can deadlock.
            ctx = multiprocessing.get_context("spawn")
            # One OpenCV thread per process: the pool already uses every core it is given.
            with ctx.Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
                for im in pool.imap(_render_job, jobs, chunksize=4):
                    yield im
                    bar.update()
    finally:
        bar.close()


def _check_target(out: Path, overwrite: bool) -> None:
    if out.is_file() or out.is_symlink():
        raise FileExistsError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite (overwrite=True) to replace it")


def cli_command(out: Path, num_train: int, num_val: int, seed: int, min_size: int, max_size: int) -> str:
    """The CLI call that reproduces a dataset, recorded in manifest.json."""
    args = ["python", "-m", "core.data.synth", "--out", str(out)]
    for flag, value in (
        ("--num-train", num_train),
        ("--num-val", num_val),
        ("--seed", seed),
        ("--min-size", min_size),
        ("--max-size", max_size),
    ):
        args += [flag, str(value)]
    return shlex.join(args)


def generate_dataset(
    out: Path,
    num_train: int,
    num_val: int,
    seed: int,
    *,
    min_size: int = 256,
    max_size: int = 640,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> Path:
    """Write a synthetic WIDERFace-layout dataset to ``out`` (atomically) and return ``out``.

    ``workers`` > 1 renders in a process pool; the output is identical for any worker count.
    Raises FileExistsError if ``out`` is non-empty and ``overwrite`` is False.
    """
    out = Path(out)
    if num_train < 0 or num_val < 0 or seed < 0:
        raise ValueError("image counts and seed must be >= 0")
    if not 64 <= min_size <= max_size:
        raise ValueError(f"need 64 <= min_size <= max_size, got {min_size}, {max_size}")
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private (0700); the renamed dataset should be readable
    try:
        jobs = [
            (seed, split, k, min_size, max_size)
            for split, n in (("train", num_train), ("val", num_val))
            for k in range(n)
        ]
        labels: dict[str, list[str]] = {"train": [], "val": []}
        val_images: list[SynthImage] = []
        counts = {split: {"images": 0, "faces": 0} for split in SPLITS}
        for split in SPLITS:
            (tmp / split / "images").mkdir(parents=True)
        for im in _render_all(jobs, workers, progress):
            folder = tmp / im.split / "images" / im.event
            folder.mkdir(exist_ok=True)
            (folder / f"{im.name}.jpg").write_bytes(im.jpeg)
            labels[im.split].append(f"# {im.rel_path}")
            labels[im.split].extend(face_line(f) for f in im.faces)
            counts[im.split]["images"] += 1
            counts[im.split]["faces"] += len(im.faces)
            if im.split == "val":
                im.jpeg = b""  # keep only what the ground truth needs
                val_images.append(im)
        for split, lines in labels.items():
            (tmp / split / "label.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        (tmp / "val" / "wider_val.txt").write_text("".join(f"/{im.rel_path}\n" for im in val_images), encoding="utf-8")
        # The .mat layout groups images by event; the order inside an event stays generation order.
        order = {ev.name: i for i, ev in enumerate(EVENTS)}
        grouped = sorted(val_images, key=lambda im: (order[im.event], im.index))
        write_wider_gt(tmp / "ground_truth", [_gt_image(im) for im in grouped])
        manifest = {
            "dataset": "synthetic",
            "generator": "core.synth.generate",
            "version": MANIFEST_VERSION,
            "seed": seed,
            "counts": counts,
            "image_size": [min_size, max_size],
            "events": [ev.name for ev in EVENTS],
            "command": cli_command(out, num_train, num_val, seed, min_size, max_size),
        }
        (tmp / MANIFEST_JSON).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _swap_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished temp dir to ``out``; an old dataset is moved aside first, then deleted."""
    old = None
    if out.exists():
        _check_target(out, overwrite)  # re-check: something may have appeared while we rendered
        if any(out.iterdir()):
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        else:
            out.rmdir()
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_parser() -> CliParser:
    parser = CliParser(
        prog="python -m core.data.synth",
        description="Generate a synthetic face dataset in the exact WIDERFace/RetinaFace layout.",
    )
    parser.add_argument("--out", type=output_dir, default=str(DEFAULT_DATA),
                        help=f"dataset directory to create (default {DEFAULT_DATA}, where every command looks)")
    parser.add_argument("--num-train", type=int, default=200, help="training images (default 200)")
    parser.add_argument("--num-val", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical files)")
    parser.add_argument("--min-size", type=int, default=256, help="smallest image side in px (default 256)")
    parser.add_argument("--max-size", type=int, default=640, help="largest image side in px (default 640)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="render processes (output does not depend on it; default min(2, CPUs))",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = generate_dataset(
            args.out,
            args.num_train,
            args.num_val,
            args.seed,
            min_size=args.min_size,
            max_size=args.max_size,
            overwrite=args.overwrite,
            workers=args.workers,
            progress=not args.quiet,
        )
    except (FileExistsError, ValueError) as exc:
        return fail(exc)
    manifest = json.loads((out / MANIFEST_JSON).read_text(encoding="utf-8"))
    c = manifest["counts"]
    print(
        f"wrote {out}: {c['train']['images']} train / {c['val']['images']} val images, "
        f"{c['train']['faces'] + c['val']['faces']} faces"
    )
    return 0
