"""Device choice: CUDA when present, else CPU; overridable by argument or FEATHERFACE_DEVICE."""

from __future__ import annotations

import os

import torch


def select_device(preference: str | None = None) -> torch.device:
    """"auto"/None picks cuda if available; "cpu", "cuda", "cuda:1" are honoured or fail clearly."""
    choice = (preference or os.environ.get("FEATHERFACE_DEVICE") or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} requested but CUDA is not available on this machine")
    return device


def device_name(device: torch.device) -> str:
    """Human-readable name for result rows (GPU model or CPU with thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
