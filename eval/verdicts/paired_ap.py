"""Is model B's WIDER FACE AP really different from model A's? A paired bootstrap over val images.

Method
------
* **Paired**: each resample draws the val images with replacement once (multinomial weights, one
  per ground-truth image) and scores every prediction set on that same weighted image set, so
  what both models find hard or easy cancels out of the difference.
* **Vectorised**: the protocol of ``eval.widerface.protocol`` (greedy matching, 1000 score thresholds) is
  run once per prediction set. Because a prediction counted at a threshold is counted at every
  lower one, an image contributes a histogram "predictions / true positives / ignored matches
  whose score first reaches threshold t". A resample is then a weighted sum of those per-image
  histograms (a sparse matrix product), followed by a cumulative sum over thresholds and the VOC AP
  of the resulting PR curve, for all resamples at once.
* **Score normalisation**: the protocol min-max normalises scores over the whole prediction set.
  The bounds are computed once on the full set and kept for every resample (each prediction keeps
  its threshold bin). Re-normalising per resample would move the whole threshold grid whenever the
  image holding the extreme score is left out, mixing a change of operating points into the image
  sampling noise; keeping the bounds makes the full-set numbers exactly those of ``eval.widerface.protocol``.
* **Point estimate and CI**: ``delta = ap_b - ap_a`` on the full set (identical to two
  ``eval.widerface.protocol`` runs); the CI is the percentile interval of the resampled deltas (95% by
  default). Verdict: ``better`` (B above A) if the CI lies above 0, ``worse`` if below, else
  ``indistinguishable``. A vs A gives delta 0 and CI [0, 0] exactly.
* **mAP**: the mean of easy/medium/hard, computed per resample, so its CI is paired as well.

Several seeds per model
-----------------------
Pass a list of prediction sets per model (one per training seed). The point estimate is the mean
AP over seeds. Resamples share the same image weights across every seed of both models, and
``seed_mode`` says how the seed spread enters the CI:

* ``"two-level"`` (default): a two-level bootstrap. Each resample also draws each model's seeds with
  replacement (independently for A and B: seeds of two models are not paired) and averages the AP
  of the drawn seeds on the resampled images. The CI then covers "another training run" as well as
  "another image sample". With few seeds (3) this under-covers by about sqrt((n - 1) / n), the
  usual small-n bootstrap bias, so a seed-limited verdict stays conservative in wording only.
* ``"fixed"``: the seeds are taken as given; each resample averages all seeds. The CI covers image
  sampling only (what a single-seed comparison can ever report).

The output also lists every seed's full-set AP and their standard deviation, so the seed spread is
visible on its own.

CLI
---
``python -m eval.compare_ap --pred-a DIR [DIR ...] --pred-b DIR [DIR ...] [--gt DIR] --resamples N
[--seed S] [--json FILE]``; model names come from ``--model-a/--model-b`` or the network eval.widerface.predict
recorded in the folders; the JSON goes by default to ``results/compare_ap/<A>__<B>__<dataset>.json``,
where the conclusion reads it. ``python -m eval.compare_ap --results DIR`` compares every pair of models
that ``eval.results`` evaluated on the same data (seeds pooled) into ``DIR/compare_ap/``, the files
the conclusion reads.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike
from tqdm import tqdm

from core.config import display_name, model_rank
from core.data.wider_gt import SETTINGS, WiderGT, WiderGTError, load_wider_gt
from core.io.cli_paths import CliParser, fail, input_dir, output_file, read_problem, require, warn
from core.lab.artifacts import (
    COMPARE_DIR,
    DATASETS,
    DEFAULT_DATA,
    DEFAULT_RESULTS,
    EVAL_DIR,
    MANIFEST_JSON,
    ResultsFileError,
    atomic_write_json,
    detect_dataset,
)
from core.lab.roots import confined_files
from eval.verdicts.ci import ci_verdict, percentile_interval
from eval.widerface.protocol import counted_subsets, match_predictions, subset_name, subset_result
from eval.widerface.submission import PredictionFormatError, prediction_meta, read_predictions

PredictionSet = Mapping[str, Mapping[str, ArrayLike]]
SeedMode = Literal["two-level", "fixed"]
SEED_MODES: tuple[str, ...] = ("two-level", "fixed")
VERDICTS: tuple[str, ...] = ("better", "worse", "indistinguishable")
_CHUNK = 200  # resamples per sparse product: bounds memory at ~(sets x 7 x 1001 x 200) floats


def verdict(ci_low: float, ci_high: float) -> str:
    """B vs A: "better" if the whole CI is above 0, "worse" if below, else "indistinguishable"."""
    return ci_verdict(ci_low, ci_high, "better", "worse")


def voc_ap_rows(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``voc_ap`` for every row of (R, T) arrays at once (equal up to float summation order)."""
    r = recall.shape[0]
    mrec = np.hstack([np.zeros((r, 1)), recall, np.ones((r, 1))])
    mpre = np.hstack([np.zeros((r, 1)), precision, np.zeros((r, 1))])
    envelope = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
    return np.sum(np.diff(mrec, axis=1) * envelope[:, 1:], axis=1)


class _Counts:
    """One prediction set as per-image threshold histograms.

    ``hist``: sparse (images, (1 + 2S) * (T + 1)): block 0 every prediction, block 1 + s the
    predictions ignored in subset s (matched to a non-counted face), block 1 + S + s its true
    positives; column t of a block counts predictions whose score first reaches threshold t
    (column T: never). ``full_ap``: AP per subset on the full set, by ``evaluate``'s own code.
    """

    def __init__(self, pred: PredictionSet, gt: WiderGT, masks: list[np.ndarray], iou: float, thresh_num: int):
        m = match_predictions(pred, gt, iou, thresh_num)
        width = thresh_num + 1
        rows, cols = [m.image], [m.start]
        tp_rows, tp_cols = [], []
        self.full_ap: list[float] = []
        for s, counted in enumerate(masks):
            proposal, true_positive = m.flags(counted)
            rows.append(m.image[~proposal])
            cols.append(m.start[~proposal] + (1 + s) * width)
            tp_rows.append(m.image[true_positive])
            tp_cols.append(m.start[true_positive] + (1 + len(masks) + s) * width)
            self.full_ap.append(subset_result(m, counted, str(s)).ap)
        r, c = np.concatenate(rows + tp_rows), np.concatenate(cols + tp_cols)
        shape = (len(gt), (1 + 2 * len(masks)) * width)
        self.hist = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=shape)
        self.hist.sum_duplicates()


def _resampled_ap(hist_t: sp.csr_matrix, faces: np.ndarray, weights: np.ndarray, n_sets: int, n_sub: int,
                  thresh_num: int) -> np.ndarray:
    """AP (sets, subsets, R) of every prediction set on R weighted image sets (weights (R, images))."""
    width = thresh_num + 1
    counts = (hist_t @ weights.T).reshape(n_sets, 1 + 2 * n_sub, width, -1)[:, :, :thresh_num]
    curves = np.cumsum(counts, axis=2).transpose(0, 1, 3, 2)  # (sets, blocks, R, T)
    n_faces = weights @ faces  # (R, subsets)
    out = np.empty((n_sets, n_sub, weights.shape[0]))
    for k in range(n_sets):
        for s in range(n_sub):
            proposals = curves[k, 0] - curves[k, 1 + s]
            tp = curves[k, 1 + n_sub + s]
            precision = np.zeros_like(tp)
            np.divide(tp, proposals, out=precision, where=proposals > 0)
            nf = n_faces[:, s : s + 1]
            recall = np.zeros_like(tp)
            np.divide(tp, nf, out=recall, where=nf > 0)
            out[k, s] = voc_ap_rows(recall, precision)
    return out


def _as_sets(pred: PredictionSet | Sequence[PredictionSet], side: str) -> list[PredictionSet]:
    sets = [pred] if isinstance(pred, Mapping) else list(pred)
    if not sets:
        raise ValueError(f"model {side}: no prediction set given")
    if not all(isinstance(p, Mapping) for p in sets):
        raise ValueError(f"model {side}: expected a prediction mapping event -> image -> boxes, or a list of them")
    return sets


def _summary(full: np.ndarray, boot: np.ndarray, confidence: float) -> dict[str, Any]:
    """full: (2,) AP of A and B on the full set; boot: (2, R) resampled APs."""
    deltas = boot[1] - boot[0]
    low, high = percentile_interval(deltas, confidence)
    return {
        "ap_a": float(full[0]), "ap_b": float(full[1]), "delta": float(full[1] - full[0]),
        "ci_low": low, "ci_high": high, "se": float(np.std(deltas, ddof=1)) if len(deltas) > 1 else 0.0,
        "verdict": verdict(low, high),
    }


def compare_predictions(
    pred_a: PredictionSet | Sequence[PredictionSet],
    pred_b: PredictionSet | Sequence[PredictionSet],
    gt: WiderGT,
    *,
    dataset: str,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    seed_mode: SeedMode = "two-level",
    breakdown: bool = False,
    iou_thresh: float = 0.5,
    thresh_num: int = 1000,
    progress: bool = False,
) -> dict[str, Any]:
    """Paired bootstrap of AP(B) - AP(A) over the images of ``gt`` (fractions, like ``eval.widerface.protocol``).

    ``pred_a`` / ``pred_b``: one prediction set (event -> image -> (N, 5) ``x y w h score``) or a
    list of them, one per training seed. Returns ``{"settings": {easy, medium, hard, mAP: {ap_a,
    ap_b, delta, ci_low, ci_high, se, verdict, ap_a_seeds, ap_b_seeds, seed_sd_a, seed_sd_b}},
    "breakdown": {...same per hard-set attribute subset, if asked}, ...method fields}``.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if seed_mode not in SEED_MODES:
        raise ValueError(f"seed_mode must be one of {SEED_MODES}, got {seed_mode!r}")
    if len(gt) < 2:
        raise ValueError(f"a bootstrap over images needs at least 2 ground-truth images, got {len(gt)}")
    sets_a, sets_b = _as_sets(pred_a, "A"), _as_sets(pred_b, "B")
    subsets = [(g, label, mask) for g, label, mask in counted_subsets(gt) if breakdown or g == "setting"]
    names = [subset_name(g, label) for g, label, _ in subsets]
    masks = [mask for *_, mask in subsets]
    counts = [_Counts(p, gt, masks, iou_thresh, thresh_num) for p in (*sets_a, *sets_b)]
    n_a, n_sets, n_sub = len(sets_a), len(counts), len(masks)

    face_image = np.repeat(np.arange(len(gt)), [im.num_faces for im in gt.images])
    faces = np.stack([np.bincount(face_image[m], minlength=len(gt)) for m in masks], axis=1).astype(np.float64)
    hist_t = sp.hstack([c.hist for c in counts], format="csr").T.tocsr()

    image_ss, seed_ss = np.random.SeedSequence(seed).spawn(2)
    image_rng, seed_rng = np.random.default_rng(image_ss), np.random.default_rng(seed_ss)
    n_img = len(gt)
    ap_sets = np.empty((n_sets, n_sub, resamples))
    for lo in tqdm(range(0, resamples, _CHUNK), desc="bootstrap", unit="chunk", disable=not progress):
        r = min(_CHUNK, resamples - lo)
        draws = image_rng.integers(0, n_img, size=(r, n_img))
        weights = np.bincount((draws + n_img * np.arange(r)[:, None]).ravel(), minlength=r * n_img)
        ap_sets[:, :, lo : lo + r] = _resampled_ap(hist_t, faces, weights.reshape(r, n_img).astype(np.float64),
                                                   n_sets, n_sub, thresh_num)

    def seed_weights(n: int) -> np.ndarray:
        """(R, n) weights over a model's seeds, each row summing to 1."""
        if seed_mode == "fixed" or n == 1:
            return np.full((resamples, n), 1.0 / n)
        return seed_rng.multinomial(n, np.full(n, 1.0 / n), size=resamples) / n

    w_a, w_b = seed_weights(n_a), seed_weights(n_sets - n_a)
    boot = np.stack([np.einsum("ksr,rk->sr", ap_sets[:n_a], w_a),
                     np.einsum("ksr,rk->sr", ap_sets[n_a:], w_b)])  # (2, subsets, R)
    per_seed = np.array([c.full_ap for c in counts])  # (sets, subsets)
    full = np.stack([per_seed[:n_a].mean(axis=0), per_seed[n_a:].mean(axis=0)])  # (2, subsets)

    def entry(full_2: np.ndarray, boot_2: np.ndarray, seeds_a: np.ndarray, seeds_b: np.ndarray) -> dict[str, Any]:
        return _summary(full_2, boot_2, confidence) | {
            "ap_a_seeds": [float(v) for v in seeds_a], "ap_b_seeds": [float(v) for v in seeds_b],
            "seed_sd_a": float(np.std(seeds_a, ddof=1)) if len(seeds_a) > 1 else None,
            "seed_sd_b": float(np.std(seeds_b, ddof=1)) if len(seeds_b) > 1 else None,
        }

    settings: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for s, name in enumerate(names):
        target = settings if name in SETTINGS else extra
        target[name] = entry(full[:, s], boot[:, s], per_seed[:n_a, s], per_seed[n_a:, s])
    idx = [names.index(s) for s in SETTINGS]
    settings["mAP"] = entry(full[:, idx].mean(axis=1), boot[:, idx].mean(axis=1),
                            per_seed[:n_a, idx].mean(axis=1), per_seed[n_a:, idx].mean(axis=1))
    return {
        "dataset": dataset,
        "settings": settings,
        "breakdown": extra,
        "num_images": len(gt),
        "num_faces": gt.num_faces,
        "seeds_a": n_a,
        "seeds_b": n_sets - n_a,
        "resamples": resamples,
        "seed": seed,
        "confidence": confidence,
        "seed_mode": seed_mode if max(n_a, n_sets - n_a) > 1 else "single seed",
        "iou_thresh": iou_thresh,
        "thresh_num": thresh_num,
        "method": "paired bootstrap over val images (percentile CI); scores normalised once on the full set",
    }


def gt_dataset(gt_dir: Path, override: str | None = None) -> str:
    """Dataset label of a ground-truth folder: manifest.json in it or in its parent (the data root)."""
    for root in (gt_dir, gt_dir.parent):
        if (root / MANIFEST_JSON).is_file():
            return detect_dataset(root, override)
    return override or "widerface"


def _pair_name(model_a: str | None, model_b: str | None, dataset: str) -> str:
    return f"{model_a or 'A'}__{model_b or 'B'}__{dataset}.json"


def seed_count_warning(n_a: int, n_b: int, name_a: str = "A", name_b: str = "B") -> str | None:
    """A warning when A and B have different numbers of seeds: the side with fewer has a spread that is unknown
    (one run) or rests on fewer runs, so the interval understates the uncertainty of the difference."""
    if n_a == n_b:
        return None
    few, many, n_few, n_many = (name_a, name_b, n_a, n_b) if n_a < n_b else (name_b, name_a, n_b, n_a)
    spread = ("is unknown (a single run)" if n_few == 1 else f"rests on {n_few} runs only")
    return (f"unequal seed counts, {many} {n_many} and {few} {n_few}: the seed spread of {few} {spread}, so the "
            f"interval understates the uncertainty of the difference; give {few} {n_many} seeds too")


def compare_results(
    results_root: Path | str,
    base: Path | str = ".",
    resamples: int = 1000,
    seed: int = 0,
    seed_mode: SeedMode = "two-level",
    progress: bool = True,
) -> tuple[list[Path], list[str]]:
    """Every pair of models evaluated on the same data under ``<results>/eval/`` -> ``<results>/compare_ap/``.

    Reads each eval.results JSON for its model, dataset, data folder and predictions folder (paths
    relative to ``base``, where eval.results ran); seeds of a model on the same data are pooled as
    seeds. For each pair (A before B in the registry order) writes ``<A>__<B>__<dataset>.json`` with
    the hard-set breakdown. Returns (files written, warnings for what was skipped and why).
    """
    results_root, base = Path(results_root), Path(base)
    groups: dict[tuple[str, str], dict[str, list[Path]]] = {}
    warnings: list[str] = []
    for path in sorted((results_root / EVAL_DIR).glob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            model, dataset, data = str(payload["model"]), str(payload["dataset"]), str(payload["dataset_path"])
            named = Path(payload["predict"]["predictions"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.append(f"{path}: skipped, not an eval.results file ({read_problem(exc)})")
            continue
        folder = named if named.is_absolute() else base / named
        if not folder.is_dir():
            warnings.append(f"{path}: skipped, predictions folder {folder} is absent")
            continue
        groups.setdefault((dataset, data), {}).setdefault(model, []).append(folder)
    written = []
    for (dataset, data), by_model in groups.items():
        models = sorted(by_model, key=model_rank)
        if len(models) < 2:
            continue
        data_dir = Path(data) if Path(data).is_absolute() else base / data
        try:
            gt = load_wider_gt(data_dir / "ground_truth")
            preds = {m: [read_predictions(d, gt, strict=True).predictions for d in by_model[m]] for m in models}
        except (WiderGTError, PredictionFormatError) as exc:
            warnings.append(f"{dataset} at {data}: skipped ({exc})")
            continue
        for a, b in itertools.combinations(models, 2):
            if unequal := seed_count_warning(len(by_model[a]), len(by_model[b]), a, b):
                warnings.append(f"{dataset}: {unequal}")
            result = compare_predictions(preds[a], preds[b], gt, dataset=dataset, resamples=resamples, seed=seed,
                                         seed_mode=seed_mode, breakdown=True, progress=progress)
            result |= {"model_a": a, "model_b": b, "data": data,
                       "pred_a": [d.as_posix() for d in by_model[a]], "pred_b": [d.as_posix() for d in by_model[b]]}
            out = results_root / COMPARE_DIR / _pair_name(a, b, dataset)
            atomic_write_json(out, result)
            written.append(out)
    return written, warnings


def load_reports(results_root: Path | str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every ``<results>/compare_ap/*.json`` with its models named; unreadable files become warnings."""
    reports = []
    paths, warnings = confined_files(Path(results_root) / COMPARE_DIR, "*.json", results_root)
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or not data.get("dataset"):
                raise ValueError("needs 'settings' and 'dataset'")
            parts = path.stem.split("__")
            data["model_a"] = data.get("model_a") or (parts[0] if len(parts) >= 2 else None)
            data["model_b"] = data.get("model_b") or (parts[1] if len(parts) >= 2 else None)
            if not data["model_a"] or not data["model_b"]:
                raise ValueError("models not named (model_a/model_b or an <A>__<B>__<dataset>.json name)")
            reports.append(data | {"path": path.as_posix()})
        except (OSError, ValueError, TypeError) as exc:
            warnings.append(f"{path}: unreadable AP comparison ({read_problem(exc)}), skipped")
    return reports, warnings


def difference_table(reports: Sequence[Mapping[str, Any]], breakdown: bool = False) -> pd.DataFrame:
    """One row per report and subset, AP in points: B - A, its CI, verdict, seeds and their spread."""
    rows = []
    for r in reports:
        subsets = dict(r["settings"]) | (dict(r.get("breakdown") or {}) if breakdown else {})
        for name, e in subsets.items():
            sd = [e.get("seed_sd_a"), e.get("seed_sd_b")]
            rows.append({
                "dataset": r["dataset"], "B - A": f"{display_name(r['model_b'])} - {display_name(r['model_a'])}",
                "subset": name, "AP A": 100 * e["ap_a"], "AP B": 100 * e["ap_b"], "delta": 100 * e["delta"],
                "CI low": 100 * e["ci_low"], "CI high": 100 * e["ci_high"], "verdict": e["verdict"],
                "seeds": f"{r.get('seeds_a', 1)} / {r.get('seeds_b', 1)}",
                "seed sd A / B": " / ".join("-" if v is None else f"{100 * v:.2f}" for v in sd),
                "CI covers": "images + seeds" if r.get("seed_mode") == "two-level" else "images only",
            })
    order = {s: i for i, s in enumerate((*SETTINGS, "mAP"))}
    frame = pd.DataFrame(rows, columns=["dataset", "B - A", "subset", "AP A", "AP B", "delta", "CI low", "CI high",
                                        "verdict", "seeds", "seed sd A / B", "CI covers"])
    rank = frame["subset"].map(lambda s: order.get(s, len(order)))
    return frame.assign(_r=rank).sort_values(["dataset", "B - A", "_r"], kind="stable").drop(columns="_r") \
        .reset_index(drop=True)


def _print(result: Mapping[str, Any]) -> None:
    print(f"{result['dataset']}: {result['num_images']} images, {result['resamples']} paired resamples, "
          f"{100 * result['confidence']:g}% CI, {result.get('model_b') or 'B'} - {result.get('model_a') or 'A'} "
          f"({result['seed_mode']})")
    print(f"{'subset':<16}{'AP A':>8}{'AP B':>8}{'delta':>9}{'CI low':>9}{'CI high':>9}  verdict")
    for name, r in (result["settings"] | result["breakdown"]).items():
        print(f"{name:<16}{r['ap_a']:>8.4f}{r['ap_b']:>8.4f}{r['delta']:>+9.4f}{r['ci_low']:>+9.4f}"
              f"{r['ci_high']:>+9.4f}  {r['verdict']}")


def build_parser() -> CliParser:
    parser = CliParser(
        prog="python -m eval.compare_ap",
        description="Paired bootstrap over val images of the WIDER FACE AP difference B - A, with a verdict.",
    )
    parser.add_argument("--pred-a", nargs="+", type=input_dir, help="prediction dir(s) of A (one per seed)")
    parser.add_argument("--pred-b", nargs="+", type=input_dir, help="prediction dir(s) of B (one per seed)")
    parser.add_argument("--gt", type=input_dir, default=None,
                        help=f"folder with the four wider_*_val.mat files (default {DEFAULT_DATA}/ground_truth)")
    parser.add_argument("--json", type=output_file, default=None,
                        help=f"output JSON file, written atomically (default {DEFAULT_RESULTS}/{COMPARE_DIR}/"
                             "<A>__<B>__<dataset>.json, where eval.verdicts.conclusion reads it)")
    parser.add_argument("--results", type=input_dir,
                        help=f"instead of --pred-a/--pred-b/--gt/--json: every model pair of <results>/eval/*.json "
                             f"whose predictions are present -> <results>/{COMPARE_DIR}/<A>__<B>__<dataset>.json")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed-mode", choices=SEED_MODES, default="two-level",
                        help="with several seeds: resample them too (two-level) or take them as given (fixed)")
    parser.add_argument("--breakdown", action="store_true", help="also the hard-set attribute and scale subsets")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="default: manifest.json in --gt or its parent, else widerface")
    parser.add_argument("--model-a", help="name of A (default: the network recorded in its prediction folder)")
    parser.add_argument("--model-b", help="name of B (default: the network recorded in its prediction folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.results is not None:
        if args.pred_a or args.pred_b or args.gt or args.json:
            parser.error("--results replaces --pred-a/--pred-b/--gt/--json")
        written, warnings = compare_results(args.results, resamples=args.resamples, seed=args.seed,
                                            seed_mode=args.seed_mode)
        for w in warnings:
            warn(w)
        for path in written:
            _print(json.loads(path.read_text(encoding="utf-8")))
            print(f"-> {path}\n")
        if not written:
            return fail(f"no pair of models with predictions on the same data under {args.results / 'eval'}")
        return 0
    missing = [f"--{n.replace('_', '-')}" for n in ("pred_a", "pred_b") if not getattr(args, n)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (or --results DIR)")
    if args.gt is None:
        args.gt = DEFAULT_DATA / "ground_truth"
        require(parser, "--gt", args.gt, "input_dir")
    model_a, model_b = args.model_a or _network(args.pred_a), args.model_b or _network(args.pred_b)
    if args.json is None and not (model_a and model_b):
        parser.error("name the models (--model-a/--model-b; the prediction folders do not record one network each) "
                     "or the output (--json FILE)")
    if unequal := seed_count_warning(len(args.pred_a), len(args.pred_b), model_a or "A", model_b or "B"):
        warn(unequal)
    try:
        dataset = gt_dataset(args.gt, args.dataset)
        if args.json is None:
            require(parser, "--json", DEFAULT_RESULTS / COMPARE_DIR / _pair_name(model_a, model_b, dataset),
                    "output_file")
        gt = load_wider_gt(args.gt)
        pred_a = [read_predictions(d, gt, strict=True).predictions for d in args.pred_a]
        pred_b = [read_predictions(d, gt, strict=True).predictions for d in args.pred_b]
        result = compare_predictions(pred_a, pred_b, gt, dataset=dataset, resamples=args.resamples, seed=args.seed,
                                     confidence=args.confidence, seed_mode=args.seed_mode, breakdown=args.breakdown,
                                     progress=True)
    except (WiderGTError, PredictionFormatError, ResultsFileError, ValueError) as exc:
        return fail(exc)
    result |= {"model_a": model_a, "model_b": model_b,
               "pred_a": [d.as_posix() for d in args.pred_a], "pred_b": [d.as_posix() for d in args.pred_b]}
    out = args.json if args.json is not None else DEFAULT_RESULTS / COMPARE_DIR / _pair_name(model_a, model_b, dataset)
    atomic_write_json(out, result)
    _print(result)
    print(f"-> {out}")
    return 0


def _network(folders: Sequence[Path]) -> str | None:
    """The one network eval.widerface.predict recorded for these folders, or None if absent or mixed."""
    names = {prediction_meta(f).get("network") for f in folders}
    return names.pop() if len(names) == 1 else None
