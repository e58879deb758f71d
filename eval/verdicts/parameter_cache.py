"""Parameter totals of the registry's variants without importing torch when the app starts.

Why: the Overview and Conclusion pages show each variant's parameter count, which needs torch (1.3-1.9 s
of CPU to import) and a model build per variant. Three sources, first hit wins:
1. `assets/parameter_totals.json`, shipped: one total per variant with a hash of the build settings it was
   counted for (`core.config.build_settings`). A variant whose entry changed is not served from it, and
   `tests/eval/verdicts/test_parameter_cache.py` rebuilds every variant and fails, naming `write_shipped`,
   when a code change moves a count. So a fresh clone opens the pages without torch.
2. The app's cache folder, keyed by a hash of every source file under core/ (a variant the shipped table
   does not know, e.g. one added in a fork).
3. Build the models and count (then stored as 2).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from core.config import MODEL_CONFIGS, build_settings
from core.io.atomic import atomic_write_text
from eval.runs.event_cache import cache_root

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"
SHIPPED = ROOT / "assets" / "parameter_totals.json"
FILE_NAME = "parameter_totals.json"


def code_key() -> str:
    """sha256 over the path and bytes of every core/**/*.py: what the parameter counts depend on."""
    digest = hashlib.sha256()
    for path in sorted(CORE.rglob("*.py")):
        digest.update(path.relative_to(CORE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_key(name: str) -> str:
    """sha256 of a registered variant's build settings: the shipped total is for this network only."""
    text = json.dumps(build_settings(MODEL_CONFIGS[name]), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def shipped_totals(path: Path = SHIPPED) -> dict[str, int]:
    """The shipped totals whose variant is registered with the build settings they were counted for."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["totals"]
        return {n: int(e["total"]) for n, e in entries.items()
                if n in MODEL_CONFIGS and e.get("build") == build_key(n) and isinstance(e.get("total"), int)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # absent or damaged: the other two sources still answer


def counted_totals(names: Iterable[str]) -> dict[str, int]:
    """Build each variant and count its parameters (imports torch)."""
    from core.factory import parameter_counts

    return {n: int(parameter_counts(n)["total"]) for n in names}


def write_shipped(path: Path = SHIPPED) -> dict[str, int]:
    """Recount every registered variant into the shipped table (run after a change that moves a count)."""
    totals = counted_totals(MODEL_CONFIGS)
    entries = {n: {"build": build_key(n), "total": t} for n, t in totals.items()}
    atomic_write_text(path, json.dumps({"note": "written by eval.verdicts.parameter_cache.write_shipped",
                                        "totals": entries}, indent=1) + "\n")
    return totals


def parameter_totals(names: Iterable[str] | None = None, cache: Path | None = None,
                     shipped: Path = SHIPPED) -> dict[str, int]:
    """`get_parameter_count()["total"]` per variant (every registry entry by default): from the shipped
    table, else the cache computed for this code (`cache` is its folder, default
    eval.runs.event_cache.cache_root()), else counted."""
    names = list(MODEL_CONFIGS) if names is None else list(names)
    found = {n: t for n, t in shipped_totals(shipped).items() if n in names}
    if len(found) == len(names):
        return {n: found[n] for n in names}
    path = (cache if cache is not None else cache_root()) / FILE_NAME
    key = code_key()
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("key") == key and all(isinstance(stored["totals"].get(n), int) for n in names):
            return {n: found.get(n, stored["totals"][n]) for n in names}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent, stale or damaged: count again
    totals = counted_totals(dict.fromkeys([*MODEL_CONFIGS, *names]))
    with contextlib.suppress(OSError):  # a read-only cache folder only costs time
        atomic_write_text(path, json.dumps({"key": key, "totals": totals}, indent=1), fsync=False)
    return {n: found.get(n, totals[n]) for n in names}
