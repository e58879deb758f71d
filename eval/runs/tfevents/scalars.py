"""Scalar values column-wise (tag codes, step, value, wall time): what decoding returns, the disk cache
stores and the Convergence page reads, without a Python object per value."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Scalars:
    """Scalar values of some records, column-wise; `code` indexes `tags`. `record` is each value's record
    index within the decoded batch (for purges); `starts` are the record byte offsets of the batch."""

    tags: tuple[str, ...]
    code: np.ndarray
    step: np.ndarray
    value: np.ndarray
    wall_time: np.ndarray

    def __len__(self) -> int:
        return len(self.code)

    def take(self, keep: np.ndarray) -> Scalars:
        return Scalars(self.tags, self.code[keep], self.step[keep], self.value[keep], self.wall_time[keep])

    def frame(self) -> pd.DataFrame:
        """(tag, step, value, wall_time), the tag categorical."""
        return pd.DataFrame({"tag": pd.Categorical.from_codes(self.code, categories=_categories(self.tags)),
                             "step": self.step, "value": self.value, "wall_time": self.wall_time})


def _categories(tags: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(tags), dtype=object)


def empty_arrays() -> Scalars:
    return Scalars((), np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.float64))


def concat_scalars(parts: list[Scalars]) -> Scalars:
    """One Scalars from several (tag vocabularies merged)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_arrays()
    if len(parts) == 1:
        return parts[0]
    vocab: dict[str, int] = {}
    codes = []
    for p in parts:
        lut = np.array([vocab.setdefault(t, len(vocab)) for t in p.tags], dtype=np.int32)
        codes.append(lut[p.code])
    return Scalars(tuple(vocab), np.concatenate(codes), *(np.concatenate([getattr(p, c) for p in parts])
                                                           for c in ("step", "value", "wall_time")))
