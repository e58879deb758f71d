"""Tables and diagrams for the Models page: parameters and FLOPs per part, and how each attention
type wires its channel and spatial gates. Weights-independent, so computed once per process.

Variants and their one-line descriptions come from `core.config.MODEL_CONFIGS`; the formulas and
diagrams here are keyed by attention type (`ModelConfig.attention`), which several variants may share."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.config import MODEL_CONFIGS, MODEL_ORDER
from core.factory import parameter_counts
from core.flops import count_flops

PART_LABELS: dict[str, str] = {
    "backbone": "backbone (MobileNetV1-0.25)",
    "attention_backbone": "attention, backbone stages",
    "bifpn": "BiFPN (52 ch, 3 cells)",
    "fpn": "FPN (RetinaFace, 64 ch)",
    "attention_bifpn": "attention, BiFPN outputs",
    "ssh": "SSH (DCNv2; plain 3x3 in RetinaFace)",
    "heads": "heads",
}


def parameter_table(models: tuple[str, ...] = MODEL_ORDER) -> pd.DataFrame:
    """Long table: model, part, params (from `get_parameter_count`, the published breakdown)."""
    rows = []
    for name in models:
        counts = parameter_counts(name)
        for part, label in PART_LABELS.items():
            rows.append({"model": name, "display_name": MODEL_CONFIGS[name].display_name, "part": label,
                         "params": int(counts[part])})
    return pd.DataFrame(rows)


def flops_table(models: tuple[str, ...] = MODEL_ORDER, input_hw: tuple[int, int] = (640, 640)) -> pd.DataFrame:
    """Long table: model, part, flops at `input_hw` (DCN FLOPs included analytically, see core.flops)."""
    rows = []
    for name in models:
        rep = count_flops(name, input_hw)
        for part, label in PART_LABELS.items():
            rows.append({"model": name, "display_name": MODEL_CONFIGS[name].display_name, "part": label,
                         "flops": int(rep.parts[part])})
    return pd.DataFrame(rows)


def summary_table(models: tuple[str, ...] = MODEL_ORDER, input_hw: tuple[int, int] = (640, 640)) -> pd.DataFrame:
    """One row per model: total params, attention params, GFLOPs, attention MFLOPs, design in a phrase, and
    the published parameter count and WIDERFace val mAP where the registry has them (blank otherwise)."""
    rows = []
    for name in models:
        counts = parameter_counts(name)
        rep = count_flops(name, input_hw)
        published = MODEL_CONFIGS[name].published
        rows.append({
            "model": name,
            "display_name": MODEL_CONFIGS[name].display_name,
            "design": MODEL_CONFIGS[name].description,
            "params": int(counts["total"]),
            "attention_params": int(counts["attention"]),
            "GFLOPs": round(rep.total / 1e9, 3),
            "attention_MFLOPs": round(rep.parts["attention"] / 1e6, 3),
            "published_params": published.params if published else None,
            "published_mAP": published.mAP if published else None,
        })
    return pd.DataFrame(rows)


def part_pivot(table: pd.DataFrame, value: str) -> pd.DataFrame:
    """Wide form of `parameter_table` / `flops_table`: one row per part (in breakdown order), one
    column per model (in display order), and a final "total" row."""
    models = list(dict.fromkeys(table["model"]))
    wide = table.pivot(index="part", columns="model", values=value).loc[list(dict.fromkeys(table["part"])), models]
    wide.loc["total"] = wide.sum()
    return wide


@dataclass(frozen=True)
class Design:
    """How one attention type computes its masks: the formulas and a graphviz DOT diagram."""

    formulas: tuple[str, ...]
    dot: str


def _dot(body: str) -> str:
    return ("digraph G {\n rankdir=LR; bgcolor=transparent;\n"
            ' node [shape=box, style="rounded,filled", fillcolor="#f0f2f6", fontname="Helvetica", fontsize=11];\n'
            ' edge [fontname="Helvetica", fontsize=10];\n' + body + "}\n")


ATTENTION_DESIGNS: dict[str, Design] = {
    "cbam": Design(
        formulas=(
            r"M_c(X) = \sigma\big(\mathrm{MLP}(\mathrm{avg}(X)) + \mathrm{MLP}(\max(X))\big)",
            r"F = X \odot M_c(X)",
            r"M_s(F) = \sigma\big(\mathrm{BN}(f^{7\times7}[\bar F_c;\ \hat F_c])\big)",
            r"Y = F \odot M_s(F) = X \odot \underbrace{M_c(X)\, M_s(F)}_{\text{hybrid mask}}",
        ),
        dot=_dot(' X [label="X (C×H×W)"]; mc [label="channel gate\\nMLP C→C/16→C"]; mul1 [label="×", shape=circle];\n'
                 ' ms [label="spatial gate\\n7×7 conv + BN"]; mul2 [label="×", shape=circle]; Y [label="Y"];\n'
                 ' X -> mc; mc -> mul1 [label="M_c"]; X -> mul1; mul1 -> ms [label="F"]; mul1 -> mul2 [label="F"];\n'
                 ' ms -> mul2 [label="M_s(F)"]; mul2 -> Y;\n'),
    ),
    "eca_cbam": Design(
        formulas=(
            r"M_c(X) = \sigma\big(\mathrm{conv1d}_k(\mathrm{GAP}(X))\big)",
            r"k = \mathrm{odd}(t),\quad t = \lfloor(\log_2 C + 1)/2\rfloor",
            r"F = X \odot M_c(X)",
            r"M_s(F) = \sigma\big(f^{7\times7}[\bar F_c;\ \hat F_c]\big)",
            r"Y = F \odot M_s(F) = X \odot \underbrace{M_c(X)\, M_s(F)}_{\text{hybrid mask}}",
        ),
        dot=_dot(' X [label="X (C×H×W)"]; mc [label="ECA\\nGAP → 1-D conv k"]; mul1 [label="×", shape=circle];\n'
                 ' ms [label="SAM\\n7×7 conv"]; mul2 [label="×", shape=circle]; Y [label="Y"];\n'
                 ' X -> mc; mc -> mul1 [label="M_c"]; X -> mul1; mul1 -> ms [label="F"]; mul1 -> mul2 [label="F"];\n'
                 ' ms -> mul2 [label="M_s(F)"]; mul2 -> Y;\n'),
    ),
    "eca_cbam_parallel": Design(
        formulas=(
            r"M_c(X) = \sigma\big(\mathrm{conv1d}_k(\mathrm{GAP}(X))\big)",
            r"M_s(X) = \sigma\big(f^{7\times7}[\bar X_c;\ \hat X_c]\big)",
            r"M_{hyb} = M_c(X) \cdot M_s(X)",
            r"Y = X \odot M_{hyb}",
        ),
        dot=_dot(' X [label="X (C×H×W)"]; mc [label="ECA\\nGAP → 1-D conv k"]; ms [label="SAM\\n7×7 conv"];\n'
                 ' hyb [label="×", shape=circle]; mul [label="×", shape=circle]; Y [label="Y"];\n'
                 ' X -> mc; X -> ms; mc -> hyb [label="M_c"]; ms -> hyb [label="M_s(X)"];\n'
                 ' hyb -> mul [label="hybrid"]; X -> mul; mul -> Y;\n'),
    ),
    "none": Design(
        formulas=(r"Y = X",),
        dot=_dot(' X [label="X (C×H×W)"]; Y [label="Y"]; X -> Y [label="identity"];\n'),
    ),
}


def design(model: str) -> Design:
    """The formulas and diagram of a variant's attention type."""
    return ATTENTION_DESIGNS[MODEL_CONFIGS[model].attention]
