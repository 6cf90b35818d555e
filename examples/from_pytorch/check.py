#!/usr/bin/python3
"""check.py: loads the weights nncc's training wrote (mnist_ft_save, a
safetensors file) into the PyTorch model of net.py with
load_state_dict(strict=True), and measures its accuracy on the 2,000 test
digits there.  It must be the accuracy the C program measured (--expect,
in percent; at most one digit of the 2,000 may differ, for a prediction on
a near-tie of two logits) and better than before fine-tuning (--before).

    check.py --weights mnist_ft.safetensors --data DATA_DIR --expect 97.5 --before 80.1
"""
import argparse
import json
import struct
import sys

import numpy as np
import torch

from net import Net, accuracy, digits

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    """The tensors of a safetensors file (8-byte header length, JSON header,
    data), as a dict of numpy arrays."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + lo:8 + n + hi], DTYPES[t["dtype"]]).reshape(t["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--expect", type=float, required=True)
    ap.add_argument("--before", type=float, required=True)
    a = ap.parse_args()
    tensors = read_safetensors(a.weights)
    # a training checkpoint also holds Adam's moments and the step count
    state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()
             if not k.startswith("optimizer.")}
    model = Net()
    model.load_state_dict(state, strict=True)
    print(f"load_state_dict(strict=True): {len(state)} tensors "
          f"({', '.join(sorted(state))})")
    x, y = digits(a.data, "test")
    acc = 100 * accuracy(model, x, y)
    print(f"PyTorch, with the weights nncc trained: test accuracy {acc:.2f}% on {len(x)} digits "
          f"(nncc measured {a.expect:.2f}%, before fine-tuning {a.before:.2f}%)")
    ok = abs(acc - a.expect) <= 100 / len(x) + 1e-9 and acc > a.before
    print("OK" if ok else "FAILED: the accuracies differ, or fine-tuning did not help")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
