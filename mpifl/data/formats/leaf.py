"""LEAF FEMNIST JSON: {"users": [...], "user_data": {user: {"x": [[784]], "y": [...]}}}.

Every *.json file under the path is read (LEAF's train/ and test/ folders included);
a user's samples from a file under a folder named `test` form its own test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mpifl.errors import InputError

Writer = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train x, y, test x, y


def load_leaf(path: str | Path, image_shape: tuple[int, ...] = (1, 28, 28)) -> dict[str, Writer]:
    """Writers by id, in sorted order; images reshaped to `image_shape`."""
    path = Path(path)
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise InputError(f"data error: data.path = {path}: no LEAF .json files found")
    parts: dict[str, dict[str, list]] = {}
    for file in files:
        try:
            doc = json.loads(file.read_text())
            user_data = doc["user_data"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise InputError(f"data error: {file}: not a LEAF JSON file ({exc!r})") from None
        split = "test" if "test" in file.parent.name else "train"
        for user, d in user_data.items():
            slot = parts.setdefault(user, {"train": [], "test": []})
            slot[split].append(d)
    writers = {}
    for user in sorted(parts):
        train, test = (_stack(parts[user][s], image_shape, path) for s in ("train", "test"))
        writers[user] = (*train, *test)
    return writers


def _stack(chunks: list[dict], shape: tuple[int, ...], path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not chunks:
        return np.empty((0, *shape), np.float32), np.empty(0, np.int64)
    try:
        x = np.concatenate([np.asarray(c["x"], dtype=np.float32) for c in chunks])
        y = np.concatenate([np.asarray(c["y"], dtype=np.int64) for c in chunks])
        return x.reshape(-1, *shape), y
    except (KeyError, ValueError) as exc:
        raise InputError(f"data error: {path}: bad user data ({exc})") from None
