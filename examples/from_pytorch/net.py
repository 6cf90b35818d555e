"""net.py: the model of the example, as PyTorch defines it, and the MNIST
digits of scripts/get-mnist (IDX files) as tensors.  export.py and check.py
share it."""
import os

import numpy as np
import torch
import torch.nn as nn


class Net(nn.Module):
    """A small CNN for 28x28 digits, without batchnorm (nncc keeps a batchnorm's
    num_batches_tracked, so one with it would load with strict=True too)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),     # (8, 14, 14)
            nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2))               # (16, 5, 5)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def digits(data, name):
    """data/<name>-{images,labels}-idx*-ubyte: images (n, 1, 28, 28) in [0, 1]
    (as examples/train_mnist.c scales them) and labels (n)."""
    images = np.fromfile(os.path.join(data, name + "-images-idx3-ubyte"), np.uint8, offset=16)
    labels = np.fromfile(os.path.join(data, name + "-labels-idx1-ubyte"), np.uint8, offset=8)
    x = torch.from_numpy(images.reshape(-1, 1, 28, 28).astype(np.float32) / 255)
    return x, torch.from_numpy(labels.astype(np.int64))


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()
