"""Tables and diagrams for the Models page: parameters and FLOPs per part, and how each attention
variant wires its channel and spatial gates. Weights-independent, so computed once per process."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.config import MODEL_CONFIGS
from core.factory import parameter_counts
from core.flops import count_flops

MODELS: tuple[str, ...] = ("cbam", "eca_cbam", "eca_cbam_parallel", "none")
PART_LABELS: dict[str, str] = {
    "backbone": "backbone (MobileNetV1-0.25)",
    "attention_backbone": "attention, backbone stages",
    "bifpn": "BiFPN (52 ch, 3 cells)",
    "attention_bifpn": "attention, BiFPN outputs",
    "ssh": "SSH with DCNv2",
    "heads": "heads",
}


def parameter_table(models: tuple[str, ...] = MODELS) -> pd.DataFrame:
    """Long table: model, part, params (from `get_parameter_count`, the published breakdown)."""
    rows = []
    for name in models:
        counts = parameter_counts(name)
        for part, label in PART_LABELS.items():
            rows.append({"model": name, "display_name": MODEL_CONFIGS[name].display_name, "part": label,
                         "params": int(counts[part])})
    return pd.DataFrame(rows)


def flops_table(models: tuple[str, ...] = MODELS, input_hw: tuple[int, int] = (640, 640)) -> pd.DataFrame:
    """Long table: model, part, flops at `input_hw` (DCN FLOPs included analytically, see core.flops)."""
    rows = []
    for name in models:
        rep = count_flops(name, input_hw)
        for part, label in PART_LABELS.items():
            rows.append({"model": name, "display_name": MODEL_CONFIGS[name].display_name, "part": label,
                         "flops": int(rep.parts[part])})
    return pd.DataFrame(rows)


def summary_table(models: tuple[str, ...] = MODELS, input_hw: tuple[int, int] = (640, 640)) -> pd.DataFrame:
    """One row per model: total params, attention params, GFLOPs, attention MFLOPs, design in a phrase."""
    rows = []
    for name in models:
        counts = parameter_counts(name)
        rep = count_flops(name, input_hw)
        rows.append({
            "model": name,
            "display_name": MODEL_CONFIGS[name].display_name,
            "design": DESIGNS[name].summary,
            "params": int(counts["total"]),
            "attention_params": int(counts["attention"]),
            "GFLOPs": round(rep.total / 1e9, 3),
            "attention_MFLOPs": round(rep.parts["attention"] / 1e6, 3),
        })
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Design:
    """How one variant computes its attention: a phrase, the formulas, and a graphviz DOT diagram."""

    summary: str
    formulas: tuple[str, ...]
    dot: str


def _dot(body: str) -> str:
    return ("digraph G {\n rankdir=LR; bgcolor=transparent;\n"
            ' node [shape=box, style="rounded,filled", fillcolor="#f0f2f6", fontname="Helvetica", fontsize=11];\n'
            ' edge [fontname="Helvetica", fontsize=10];\n' + body + "}\n")


DESIGNS: dict[str, Design] = {
    "cbam": Design(
        summary="CBAM: channel MLP (r=16), then 7x7 spatial gate (sequential)",
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
        summary="ECA channel gate (1-D conv, k from C), then SAM spatial gate on the refined map (sequential)",
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
        summary="ECA and SAM side by side from the same input, fused into one hybrid mask (parallel)",
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
        summary="ablation: no attention (identity at the six taps)",
        formulas=(r"Y = X",),
        dot=_dot(' X [label="X (C×H×W)"]; Y [label="Y"]; X -> Y [label="identity"];\n'),
    ),
}
