"""Shared dashboard plumbing: data roots, the weights sidebar, cached models. Every page imports this.

app.py renders the sidebar (`render_sidebar`) once per run; pages read the choice with
`current_selection()` and the folders with `get_roots()`. Nothing here takes a free-text path from the UI,
and text that names files goes through `rel_paths` (paths relative to their folder) before a page shows it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import COMPARED_MODELS, MODEL_ORDER, display_name
from core.lab.roots import RESULTS_ENV, RUNS_ENV, Roots, SourceError, iter_files, relative_text, resolve_roots
from dashboard.logic.weights import (
    CHECKPOINT_SUFFIX,
    CheckpointScan,
    WeightsOption,
    discover_weights,
    load_inference_model,
    read_manifest,
    run_steps,
    scan_checkpoints,
)

__all__ = ["Roots", "Selection", "WeightsOption", "get_roots", "render_sidebar", "current_selection", "get_model",
           "load_models", "get_scan", "display_name", "weights_fingerprint", "weights_options", "all_weights_options",
           "training_steps", "rel_paths", "rel_paths_frame", "key_token"]

Selection = dict[str, WeightsOption]
_CHOICE_PREFIX = "_ff_weights_choice_"  # plain session-state keys: survive page switches, unlike widget keys
_SELECTION_KEY = "_ff_selection"


def get_roots() -> Roots:
    """The active roots for this process (CLI args after `--`, env vars, then defaults)."""
    return _roots(tuple(sys.argv[1:]), os.environ.get(RESULTS_ENV, ""), os.environ.get(RUNS_ENV, ""))


@st.cache_resource(show_spinner=False)
def _roots(argv: tuple[str, ...], env_results: str, env_runs: str) -> Roots:
    env = {k: v for k, v in ((RESULTS_ENV, env_results), (RUNS_ENV, env_runs)) if v}
    return resolve_roots(argv, env)



def rel_paths(text: object) -> str:
    """`text` as a page may show it: every absolute path made relative to its data folder
    (core.lab.roots.relative_text), so that a visitor learns neither where the folders lie nor what lies
    outside them."""
    return relative_text(str(text), get_roots())


def key_token(value: str) -> str:
    """A widget-key fragment standing for `value` (e.g. a weights key, which holds a path): widget keys are sent
    to the browser as element ids, file paths must not be."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def rel_paths_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table with `rel_paths` applied to every text cell (a results CSV may name files by absolute path)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: rel_paths(v) if isinstance(v, str) else v)
    return out


def _weights_stamp(roots: Roots) -> tuple[tuple[str, int, int], ...]:
    """Cheap fingerprint (path, size, mtime) of every checkpoint: a new or rewritten file triggers a rescan."""
    stamp = []
    for root in roots.weights:
        for path in iter_files(root, CHECKPOINT_SUFFIX):
            try:
                st_ = path.stat()
            except OSError:
                continue
            stamp.append((str(path), st_.st_size, st_.st_mtime_ns))
    return tuple(stamp)


def get_scan(roots: Roots | None = None) -> CheckpointScan:
    """Checkpoints under the weights roots (re-read only when files change)."""
    roots = roots or get_roots()
    return _scan(_weights_stamp(roots), tuple(map(str, roots.weights)), roots)


@st.cache_data(show_spinner="Scanning checkpoints…", max_entries=8)
def _scan(stamp: tuple, weights_key: tuple[str, ...], _roots: Roots) -> CheckpointScan:
    """Keyed on the file fingerprint and the roots; `_roots` itself is not hashed."""
    return scan_checkpoints(_roots)


def weights_options(roots: Roots | None = None, models: tuple[str, ...] = COMPARED_MODELS
                    ) -> dict[str, list[WeightsOption]]:
    """Weights choices per model (real-face weights first, demo, matching checkpoints, random init); the
    compared models by default, `MODEL_ORDER` for pickers that offer every variant."""
    roots = roots or get_roots()
    scan = get_scan(roots)
    manifest = read_manifest(roots)
    return {name: discover_weights(name, roots, scan=scan, manifest=manifest) for name in models}


def all_weights_options(roots: Roots | None = None) -> dict[str, list[WeightsOption]]:
    return weights_options(roots, MODEL_ORDER)


def training_steps(option: WeightsOption, roots: Roots | None = None) -> list[WeightsOption]:
    """The checkpoints of `option`'s training run, one per epoch (`dashboard.logic.weights.run_steps`)."""
    roots = roots or get_roots()
    return run_steps(option, roots, scan=get_scan(roots), manifest=read_manifest(roots))


def render_sidebar() -> Selection:
    """Sidebar: one weights picker per compared model, labelled by source; the active data folders.

    Called once per run by app.py, before the page; pages read the choice with `current_selection()`.
    """
    roots = get_roots()
    options = weights_options(roots)
    selection: Selection = {}
    sb = st.sidebar
    sb.header("Weights")
    for name, opts in options.items():
        by_key = {o.key: o for o in opts}
        widget_key = f"ff_weights_{name}"
        stored = st.session_state.get(_CHOICE_PREFIX + name)
        if stored is not None and stored not in by_key:
            sb.warning(f"{display_name(name)}: the weights chosen before are gone or no longer readable; "
                       f"using {opts[0].label}.")
            stored = None
        if widget_key not in st.session_state or st.session_state[widget_key] not in by_key:
            st.session_state[widget_key] = stored if stored in by_key else opts[0].key
        chosen = sb.selectbox(display_name(name), list(by_key), key=widget_key,
                              format_func=lambda k, by_key=by_key: by_key[k].label)
        st.session_state[_CHOICE_PREFIX + name] = chosen
        selection[name] = by_key[chosen]
        if not selection[name].trained:
            sb.caption(f"⚠️ {name}: untrained weights, detections and masks are meaningless")
    skipped = get_scan(roots).skipped
    if skipped:
        with sb.expander(f"⚠️ {len(skipped)} checkpoint file(s) skipped"):
            for msg in skipped:
                st.caption(rel_paths(msg))
    with sb.expander("Data folders"):
        st.caption(f"results: `{_fmt(roots.results)}`")
        for p in roots.runs:
            st.caption(f"runs: `{_fmt(p)}`")
        for p in roots.weights:
            st.caption(f"weights: `{_fmt(p)}`")
        st.caption(f"Change with `streamlit run dashboard/app.py -- --results-dir DIR --runs-dir DIR` "
                   f"or {RESULTS_ENV} / {RUNS_ENV}.")
    st.session_state[_SELECTION_KEY] = selection
    return selection


def current_selection() -> Selection:
    """The weights chosen in the sidebar this run (the first option of each model when a page runs without
    app.py, e.g. a page file opened alone)."""
    selection = st.session_state.get(_SELECTION_KEY)
    if selection:
        return selection
    return {name: opts[0] for name, opts in weights_options().items()}


def _fmt(path: Path) -> str:
    return rel_paths(path) + ("" if path.exists() else "  (not found)")


def weights_fingerprint(option: WeightsOption) -> str:
    """Identity of the weights behind `option` (its key plus file size and mtime): a cache key for
    anything computed from the model, so a rewritten checkpoint is never served stale."""
    stamp = (0, 0)
    if option.path is not None:
        try:
            s = Path(option.path).stat()
            stamp = (s.st_size, s.st_mtime_ns)
        except OSError:
            pass
    return f"{option.key}|{stamp[0]}|{stamp[1]}"


def get_model(name: str, option: WeightsOption, fold_bn: bool = True):
    """Eval-mode model for `option`, BN folded by default (cached per file version); raises
    CheckpointError/SourceError. `fold_bn=False` keeps BatchNorm (e.g. for parameter counts)."""
    if option.model != name:
        raise ValueError(f"weights option for {option.model!r} given for model {name!r}")
    roots = get_roots()
    return _load_model(name, weights_fingerprint(option), tuple(map(str, roots.weights)), fold_bn, option, roots)


@st.cache_resource(show_spinner="Loading model…", max_entries=24)
def _load_model(name: str, fingerprint: str, weights_key: tuple[str, ...], fold_bn: bool, _option: WeightsOption,
                _roots: Roots):
    return load_inference_model(_option, _roots, fold_bn=fold_bn)


def load_models(selection: Selection, names: tuple[str, ...] | None = None) -> dict:
    """Models that loaded; each failure becomes an st.error naming the model and the reason."""
    from core.checkpoint import CheckpointError

    models = {}
    for name in names or tuple(selection):
        try:
            models[name] = get_model(name, selection[name])
        except (CheckpointError, SourceError, ValueError, OSError) as exc:
            st.error(f"**{display_name(name)}** could not be loaded from "
                     f"`{selection[name].label}`: {rel_paths(exc)}")
    return models


_THREADS_LOCK = threading.Lock()


@contextmanager
def interactive_torch_threads(n: int = 1) -> Iterator[None]:
    """Run interactive CPU inference on `n` intra-op threads, then restore the previous setting.

    Why: on a busy CPU (a training run or other users in the background) OpenMP's barriers made the
    Heatmaps page's three forward passes 5-10x slower with 2 threads than with 1 (measured: 5-11 s vs
    0.85 s for a 1024x768 image at load 5 on 2 cores); on an idle machine one thread costs ~30%.
    The lock keeps two sessions from interleaving set/restore.
    """
    import torch

    with _THREADS_LOCK:
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, n))
        try:
            yield
        finally:
            torch.set_num_threads(previous)
