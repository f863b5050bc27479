"""Per-client online intervals: what a trace fleet holds and trace availability reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Intervals:
    """Per-client online intervals: client k's are starts/ends[offsets[k]:offsets[k+1]],
    sorted and disjoint, in seconds."""

    offsets: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
