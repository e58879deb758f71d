"""eval.verdicts.parameter_cache: parameter totals for the Overview and Conclusion pages, without torch on a
fresh clone, and never a stale count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import eval.verdicts.parameter_cache as pc
from core.config import MODEL_CONFIGS

ROOT = Path(__file__).resolve().parents[3]


def test_the_shipped_table_is_current() -> None:
    """Every registered variant is in assets/parameter_totals.json for its build settings, with the count
    of the model built now."""
    shipped = pc.shipped_totals()
    counted = pc.counted_totals(MODEL_CONFIGS)
    assert shipped == counted, (
        "assets/parameter_totals.json is stale; rewrite it with: .venv/bin/python -c "
        "'from eval.verdicts.parameter_cache import write_shipped; write_shipped()'")
    assert counted["cbam"] == 488_664 and counted["eca_cbam_parallel"] == 476_345


def test_a_fresh_clone_counts_without_torch(tmp_path: Path) -> None:
    """An empty cache folder (a first-ever app start): totals come from the shipped table, torch unimported."""
    env = {**os.environ, "FEATHERFACE_CACHE_DIR": str(tmp_path)}
    code = ("import sys; from eval.verdicts.parameter_cache import parameter_totals; t = parameter_totals(); "
            "print(t['cbam'], t['none'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["488664", "475735", "False"]
    assert not list(tmp_path.iterdir())  # nothing needed counting


def test_a_changed_entry_is_not_served_from_the_shipped_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant whose build settings differ from those the table was counted for is not read from it."""
    monkeypatch.setitem(MODEL_CONFIGS, "none", replace(MODEL_CONFIGS["none"], neck_channels=64))
    assert "none" not in pc.shipped_totals() and pc.shipped_totals()["cbam"] == 488_664


def test_a_variant_the_table_does_not_know_is_built_and_counted(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from core.factory import build_model

    probe = replace(MODEL_CONFIGS["none"], name="wide_probe", neck_channels=64)
    monkeypatch.setitem(MODEL_CONFIGS, "wide_probe", probe)
    expected = build_model(probe).get_parameter_count()["total"]
    assert expected != 475_735
    assert pc.parameter_totals(["wide_probe", "cbam"], cache=tmp_path) == {"wide_probe": expected, "cbam": 488_664}


@pytest.mark.parametrize("content", ["", "{damaged", "[1, 2]", '{"totals": {"cbam": {"total": "many"}}}'])
def test_a_damaged_shipped_table_costs_only_time(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "shipped.json"
    bad.write_text(content)
    assert pc.shipped_totals(bad) == {}
    assert pc.parameter_totals(["eca_cbam"], cache=tmp_path / "cache", shipped=bad) == {"eca_cbam": 476_345}


def test_without_the_shipped_table_counts_are_cached_per_version_of_the_model_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's cache answers while core/ is unchanged, and is recounted once it changes."""
    absent = tmp_path / "absent.json"
    first = pc.parameter_totals(cache=tmp_path, shipped=absent)
    assert first == pc.counted_totals(first) and first["eca_cbam"] == 476_345
    stored = json.loads((tmp_path / pc.FILE_NAME).read_text())
    stored["totals"]["eca_cbam"] = 1  # a planted value is served while the key matches ...
    (tmp_path / pc.FILE_NAME).write_text(json.dumps(stored))
    assert pc.parameter_totals(["eca_cbam"], cache=tmp_path, shipped=absent) == {"eca_cbam": 1}
    monkeypatch.setattr(pc, "code_key", lambda: "core/ changed")  # ... and recounted once the code changes
    assert pc.parameter_totals(["eca_cbam"], cache=tmp_path, shipped=absent) == {"eca_cbam": 476_345}
    (tmp_path / pc.FILE_NAME).write_text("{damaged")
    assert pc.parameter_totals(["none"], cache=tmp_path, shipped=absent) == {"none": 475_735}
