"""The registry of variant facts (core.config): complete, consistent, and the only place a variant lives."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import asdict, replace
from pathlib import Path

import torch

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import (
    COMPARED_MODELS,
    LEGACY_BUILD,
    MODEL_CONFIGS,
    MODEL_ORDER,
    config_from_dict,
    model_color,
    model_rank,
)
from core.factory import build_model
from core.layers.spatial import SpatialGate

REPO = Path(__file__).resolve().parents[2]


def test_every_entry_is_presentable() -> None:
    colors = [cfg.color for cfg in MODEL_CONFIGS.values()]
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colors) and len(set(colors)) == len(colors)
    for name, cfg in MODEL_CONFIGS.items():
        assert cfg.name == name and cfg.display_name and cfg.description
    assert tuple(MODEL_CONFIGS) == MODEL_ORDER and set(COMPARED_MODELS) < set(MODEL_ORDER)
    assert model_color("not-a-model") not in colors and model_rank("not-a-model") == len(MODEL_ORDER)


def test_attention_settings_come_from_the_config() -> None:
    """CBAM's spatial gate has its BatchNorm because its entry says so; a changed setting changes the net."""
    bn = [isinstance(m.bn, torch.nn.BatchNorm2d) for m in build_model("cbam").modules() if isinstance(m, SpatialGate)]
    assert bn == [True] * 6
    from dataclasses import replace

    cfg = replace(MODEL_CONFIGS["cbam"], attn_reduction=8, attn_kernel_size=3, attn_spatial_bn=False)
    counts = build_model(cfg).get_parameter_count()
    assert counts["attention"] != build_model("cbam").get_parameter_count()["attention"]
    gates = [m for m in build_model(cfg).modules() if isinstance(m, SpatialGate)]
    assert all(g.conv.kernel_size == (3, 3) and isinstance(g.bn, torch.nn.Identity) for g in gates)


def test_old_checkpoint_config_without_attention_settings(tmp_path: Path) -> None:
    """A checkpoint written before the attention settings existed rebuilds the same CBAM network: the
    registry's attention settings, and this project's earlier choices (LEGACY_BUILD) where the variants
    now compute the source's function, since those are what it was trained with."""
    old = {k: v for k, v in asdict(MODEL_CONFIGS["cbam"]).items() if not k.startswith("attn_")
           and k not in ("description", "color", "compared", "published", *LEGACY_BUILD)}
    legacy = replace(MODEL_CONFIGS["cbam"], **LEGACY_BUILD)
    assert config_from_dict(old) == legacy != MODEL_CONFIGS["cbam"]
    model = build_model(legacy).eval()
    save_checkpoint(tmp_path / "m.pth", model)
    data = torch.load(tmp_path / "m.pth", weights_only=True)
    data["config"] = old
    torch.save(data, tmp_path / "old.pth")
    loaded, _ = load_checkpoint(tmp_path / "old.pth", expected_name="cbam")
    assert loaded.cfg == model.cfg
    x = torch.randn(1, 3, 72, 56) * 50
    with torch.no_grad():
        for a, b in zip(model(x), loaded.eval()(x), strict=True):
            assert torch.equal(a, b)
    assert config_from_dict(asdict(MODEL_CONFIGS["cbam"])) == MODEL_CONFIGS["cbam"]  # a current checkpoint


FIFTH = '''\
    "fifth": ModelConfig(
        name="fifth", display_name="Fifth variant", attention="none", color="#123456",
        description="a variant added by editing core/config.py only",
        published=PublishedResult(easy=90.0, medium=80.0, hard=70.0, mAP=80.0, params=475735, latency_ms=None,
                                  source="test entry"),
    ),
'''

PROBE = '''
import sys, types
from pathlib import Path
import core
src = Path("core/config.py").read_text()
end = src.index("\\n}\\n", src.index("MODEL_CONFIGS: dict[str, ModelConfig] = {"))  # the registry's closing brace
src = src[:end] + "\\n" + sys.argv[1].rstrip("\\n") + src[end:]
mod = types.ModuleType("core.config")
mod.__file__ = "core/config.py"
sys.modules["core.config"] = mod
core.config = mod
exec(compile(src, "core/config.py", "exec"), mod.__dict__)

from dashboard.logic.model_summary import summary_table, parameter_table
from eval.verdicts.reference import REFERENCE_ROWS
from eval.verdicts.tables import aggregate_seeds
from eval.runs.curves import curve_figure
from eval.verdicts.conclusion import build_conclusion
from dashboard.logic.inventory import build_inventory
from core.lab.roots import resolve_roots
import pandas as pd

s = summary_table()
assert s["model"].tolist()[-1] == "fifth", s["model"].tolist()
assert s.set_index("model").loc["fifth", "design"] == "a variant added by editing core/config.py only"
assert parameter_table(("fifth",))["params"].sum() == 475735
assert [r for r in REFERENCE_ROWS if r["model"] == "fifth"][0]["mAP"] == 80.0
rows = pd.DataFrame([{"dataset": "synthetic", "model": m, "seed": 0, "params": 1, "latency_ms": 1.0,
                      "easy": 1.0, "medium": 1.0, "hard": 1.0, "mAP": 1.0} for m in ("fifth", "cbam")])
agg = aggregate_seeds(rows)
assert agg["model"].tolist() == ["cbam", "fifth"] and agg["display_name"].tolist()[1] == "Fifth variant"
from core.config import MODEL_CONFIGS, COMPARED_MODELS
assert "fifth" in COMPARED_MODELS
inv = build_inventory(resolve_roots([], {}, repo_root=Path.cwd()))
assert "fifth" in inv.weights
print("OK")
'''


def test_a_fifth_variant_needs_only_a_config_entry() -> None:
    """Simulate editing core/config.py alone (one more registry entry) and check the tables pick it up."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(PROBE), FIFTH], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_variant_names_are_not_typed_outside_the_registry() -> None:
    """eval/ and dashboard/ hold no table keyed by variant name: the names appear only in core/config.py
    (exceptions: the formulas in dashboard/logic/model_summary.py, keyed by attention type, whose names the variants
    share; eval/deploy, whose importers map a source checkpoint's classes and files to the variant they hold)."""
    pattern = re.compile(r"""["'](cbam|eca_cbam|eca_cbam_parallel|retinaface_mnet)["']""")
    offenders = []
    for folder in ("eval", "dashboard"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.is_relative_to(REPO / "eval" / "deploy"):
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    allowed = [o for o in offenders if o.startswith("dashboard/logic/model_summary.py") and o.endswith(": Design(")]
    assert sorted(set(offenders) - set(allowed)) == []
