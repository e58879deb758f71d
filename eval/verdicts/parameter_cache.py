"""Parameter totals of the registry's variants without importing torch on every app start.

Why: the Overview and Conclusion pages show each variant's parameter count, which needs torch (about
1.3 s of CPU to import) and a model build per variant. The totals only change when the model code does,
so they are kept in the app's cache folder keyed by a hash of every source file under core/; a changed
file (or a new variant in the registry) recomputes them once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from core.config import MODEL_CONFIGS
from core.io.atomic import atomic_write_text
from eval.runs.event_cache import cache_root

CORE = Path(__file__).resolve().parents[2] / "core"
FILE_NAME = "parameter_totals.json"


def code_key() -> str:
    """sha256 over the path and bytes of every core/**/*.py: what the parameter counts depend on."""
    digest = hashlib.sha256()
    for path in sorted(CORE.rglob("*.py")):
        digest.update(path.relative_to(CORE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def parameter_totals(names: Iterable[str] | None = None, cache: Path | None = None) -> dict[str, int]:
    """`get_parameter_count()["total"]` per variant (every registry entry by default), from the cache when
    it was computed for this code; `cache` is the cache folder (default: eval.runs.event_cache.cache_root())."""
    names = list(MODEL_CONFIGS) if names is None else list(names)
    path = (cache if cache is not None else cache_root()) / FILE_NAME
    key = code_key()
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("key") == key and all(isinstance(stored["totals"].get(n), int) for n in names):
            return {n: stored["totals"][n] for n in names}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent, stale or damaged: count again
    from core.factory import parameter_counts  # torch

    totals = {n: int(parameter_counts(n)["total"]) for n in dict.fromkeys([*MODEL_CONFIGS, *names])}
    with contextlib.suppress(OSError):  # a read-only cache folder only costs time
        atomic_write_text(path, json.dumps({"key": key, "totals": totals}, indent=1), fsync=False)
    return {n: totals[n] for n in names}
