#!/usr/bin/python3
"""export.py: defines the CNN of net.py in PyTorch, trains it briefly (one
epoch over the first 2,000 training digits: a model to fine-tune, not a
finished one), prints its accuracy on the 2,000 test digits and exports it
with torch.onnx.export, input `x` and output `logits`.

    export.py --data DATA_DIR --out net.onnx
"""
import argparse

import torch
import torch.nn.functional as F

from net import Net, accuracy, digits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--digits", type=int, default=2000)
    a = ap.parse_args()
    torch.manual_seed(1)
    model = Net()
    x, y = digits(a.data, "train")
    x, y = x[:a.digits], y[:a.digits]
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for b in range(0, len(x), 64):
        opt.zero_grad()
        F.cross_entropy(model(x[b:b + 64]), y[b:b + 64]).backward()
        opt.step()
    tx, ty = digits(a.data, "test")
    print(f"PyTorch, trained on {len(x)} digits for one epoch: test accuracy "
          f"{100 * accuracy(model, tx, ty):.2f}% on {len(tx)} digits")
    torch.onnx.export(model.eval(), x[:1], a.out, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, opset_version=13)
    print(f"exported {a.out}")


if __name__ == "__main__":
    main()
