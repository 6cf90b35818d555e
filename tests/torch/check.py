#!/usr/bin/python3
"""tests/torch/check.py: every example model against PyTorch, in f32 and f64.

For each case (a model, a dtype, a train section, runtime hyper-parameters) it

  1. emits the model with nncc under the name `nnref` (--batch 4, --dtype f32|f64) and compiles it
     with tests/torch/harness.c;
  2. runs the harness: it saves the initial checkpoint (nncc's own initialization), then for each
     step k records the inference output, the loss and every gradient, takes one optimizer step and
     saves checkpoint k+1 (weights, batchnorm buffers, optimizer state, step);
  3. for each step k loads checkpoint k into the PyTorch model of tests/torch/models.py
     (`load_state_dict(strict=True)`) and into a torch.optim optimizer's state, and compares
       - the inference output (model.eval(): running statistics),
       - the training loss and every parameter gradient (model.train(): batch statistics, nncc's
         dropout mask for step k),
       - the step: torch.optim's update applied to nncc's gradients of step k, with nncc's decay and
         learning-rate schedule, against checkpoint k+1: every parameter, every running statistic
         (updated by PyTorch's training forward), every optimizer slot, and the step count.
     Each step starts from nncc's checkpoint (not from PyTorch's previous step), so every step is
     checked to full precision and no error compounds: an optimizer with a square root in the
     denominator turns the rounding noise of a gradient that is zero in exact arithmetic (a conv
     bias before batchnorm) into a full-size step, which two correct implementations may take in
     different directions when they run from different inputs.

Error of a tensor: max |nncc - torch| / max |torch| (the largest error relative to the tensor's
scale; 0/0 is 0).  Tolerances: f64 1e-10, f32 1e-5 (TOL below).  f32 builds use --no-winograd,
f64 builds nncc's default kernels (Winograd F(4x4,3x3) for most 3x3 convolutions).  Gradients that are zero in exact
arithmetic (a conv bias right before batchnorm in training) have no scale of their own: for them
both sides must be rounding noise, max |g| <= TOL * (the largest gradient of the layer's weight).

Where torch.optim has the rule it is used as is (SGD with momentum/nesterov, Adagrad, RMSprop, Adam;
L2 decay as its weight_decay, in a parameter group of the decayed tensors).  Where nncc differs by
design, the reference is written out here, explicitly:
  - decay applies to conv/dense weights only unless decay_all (param groups);
  - L1 (and the L1 half of elastic): nncc adds l1 * sign(p) to the gradient before the rule;
    torch.optim has no L1, so it is added to p.grad here;
  - max-norm: after the step each unit's weight vector (a dense row, a conv filter) with norm > c is
    scaled by c / norm (norm in double); torch.renorm would use c / (norm + 1e-7);
  - schedules: nncc's closed forms at step t (0-based); StepLR, ExponentialLR and
    CosineAnnealingLR agree with them where defined, but cosine here holds lr_min after `steps`
    (PyTorch's would rise again) and `inv` has no PyTorch class, so all five are written out.

Exit status: 0 all agree, 1 a disagreement (each one printed with model, tensor and error), 2 a
setup error, 77 PyTorch is not installed (ctest's SKIP_RETURN_CODE).

  tests/torch/check.py --nncc build/nncc                 # the default cases (~2 min)
  tests/torch/check.py --nncc build/nncc --models "lenet5 mlp" --dtypes f64 -v
  tests/torch/check.py --nncc build/nncc --full          # every model x every optimizer
"""
import argparse
import json
import math
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time

SKIP = 77
try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as err:
    print(f"SKIPPED: python3-torch not installed ({err}); apt-get install python3-torch python3-numpy")
    sys.exit(SKIP)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import models  # noqa: E402

TOL = {"f32": 1e-5, "f64": 1e-10}
BATCH = 4
SEED = 7
# Every examples/NAME.nn; one without a PyTorch definition in models.py is a failure.
EXAMPLES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".nn"))

# Option defaults of docs/language.md section 9, in positional order.
OPTIMIZERS = {
    "sgd": [("lr", 0.01), ("momentum", 0.0), ("dampening", 0.0), ("weight_decay", 0.0),
            ("nesterov", False)],
    "momentum": [("lr", 0.01), ("momentum", 0.9), ("dampening", 0.0), ("weight_decay", 0.0)],
    "nesterov": [("lr", 0.01), ("momentum", 0.9), ("weight_decay", 0.0)],
    "adagrad": [("lr", 0.01), ("eps", 1e-10), ("weight_decay", 0.0)],
    "rmsprop": [("lr", 0.01), ("rho", 0.99), ("eps", 1e-8), ("weight_decay", 0.0)],
    "adam": [("lr", 1e-3), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8), ("betas", None),
             ("weight_decay", 0.0)],
}
SCHEDULES = {
    "constant": [],
    "step": [("sched_steps", None), ("sched_gamma", 0.1)],
    "exp": [("sched_gamma", None)],
    "inv": [("sched_gamma", None), ("sched_power", 1.0)],
    "cosine": [("sched_steps", None), ("lr_min", 0.0)],
}
SCHED_NAMES = {"every": "sched_steps", "steps": "sched_steps", "gamma": "sched_gamma",
               "power": "sched_power", "lr_min": "lr_min"}
DECAYS = {"l2": ["l2"], "l1": ["l1"], "elastic": ["l1", "l2"], "maxnorm": ["max_norm"]}
DECAY_NAMES = {"lambda": None, "l1": "l1", "l2": "l2", "c": "max_norm"}

# The optimizer matrix (--matrix models): each optimizer once, with each schedule at least once
# and decay_all both ways; each build runs the regularizer phases of PHASES.
MATRIX = [
    ("sgd", "step(every=2, gamma=0.5)", False),
    ("momentum", "exp(gamma=0.9)", True),
    ("nesterov", "inv(gamma=0.5, power=0.75)", False),
    ("adagrad", "cosine(steps=3, lr_min=1e-4)", True),
    ("rmsprop", "constant", False),
    ("adam", "cosine(steps=3)", False),
]
MATRIX_LR = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adagrad": 0.01, "rmsprop": 1e-3,
             "adam": 1e-3}
# torch.optim's spellings (docs/language.md section 9), each as its own train section in the matrix.
TORCH_SPELLINGS = [
    "sgd(lr=0.02, momentum=0.9, dampening=0.3, weight_decay=1e-3)",
    "sgd(0.02, 0.8, 0, 1e-2, true)",
    "adam(lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)",
]


def fail_setup(msg):
    print(f"check.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ---- the train section ---------------------------------------------------------------------------

def parse_args_text(text):
    """'lr=1e-3, 0.9, betas=(0.8, 0.99), nesterov=true' -> [('lr', 0.001), (None, 0.9),
    ('betas', (0.8, 0.99)), ('nesterov', True)] in order; numbers (constant arithmetic as in the
    examples is evaluated by Python's eval on digits and operators), pairs and true/false."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for part in [p.strip() for p in parts if p.strip()]:
        key, _, val = part.partition("=") if re.match(r"\w+\s*=", part) else ("", "", part)
        val = val.strip()
        if val in ("true", "false"):
            out.append((key.strip() or None, val == "true"))
            continue
        if not re.fullmatch(r"[0-9eE.+\-*/ (),\[\]]+", val):
            fail_setup(f"cannot read train argument {part!r}")
        v = eval(val)
        out.append((key.strip() or None, tuple(map(float, v)) if isinstance(v, (tuple, list)) else float(v)))
    return out


def bind(table, args, names=None):
    got = {}
    for i, (key, val) in enumerate(args):
        name = (names or {}).get(key, key) if key else table[i][0]
        got[name] = val
    for name, default in table:
        if name not in got and default is not None:
            got[name] = default
    return got


def train_config(src):
    """The effective training configuration of a .nn file's train section."""
    cfg = {"optimizer": "sgd", "schedule": "constant", "decay_all": False, "l2": 0.0, "l1": 0.0,
           "max_norm": 0.0, "sched_steps": 0.0, "sched_gamma": 0.0, "sched_power": 1.0,
           "lr_min": 0.0}
    cfg.update(bind(OPTIMIZERS["sgd"], []))
    m = re.search(r"^\s*train\s*\{(.*?)^\s*\}", src, re.S | re.M)
    for line in (m.group(1) if m else "").splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        if line.startswith("decay_all"):
            cfg["decay_all"] = line.split("=")[1].strip() == "true"
            continue
        kind, name, args = re.fullmatch(r"(\w+)\s+(\w+)\s*(?:\((.*)\))?", line).groups()
        args = parse_args_text(args or "")
        if kind == "optimizer":
            cfg["optimizer"] = name
            cfg.update(bind(OPTIMIZERS[name], args))
            if cfg.get("betas"):
                cfg["beta1"], cfg["beta2"] = cfg["betas"]
            if name == "sgd" and cfg["momentum"] > 0:     # torch's SGD(momentum=...) spelling
                cfg["optimizer"] = "nesterov" if cfg["nesterov"] else "momentum"
            if cfg["weight_decay"] > 0:                    # torch.optim's: every tensor
                cfg["l2"], cfg["decay_all"] = cfg["weight_decay"], True
        elif kind == "schedule":
            cfg["schedule"] = name
            cfg.update(bind(SCHEDULES[name], args, SCHED_NAMES))
        elif kind == "decay":
            for (key, val), field in zip(args, DECAYS[name]):
                cfg[DECAY_NAMES.get(key) or field if key else field] = val
        else:
            fail_setup(f"unknown train line {line!r}")
    return cfg


def schedule_lr(cfg, t):
    """nncc's learning rate at step t (0-based), codegen/train.c emit_schedule, in double."""
    lr, s = cfg["lr"], cfg["schedule"]
    if s == "constant":
        return lr
    if s == "step":      # StepLR(step_size=every, gamma)
        return lr * cfg["sched_gamma"] ** math.floor(t / cfg["sched_steps"])
    if s == "exp":       # ExponentialLR(gamma)
        return lr * cfg["sched_gamma"] ** t
    if s == "inv":       # Caffe's "inv"; no PyTorch class
        return lr * (1 + cfg["sched_gamma"] * t) ** -cfg["sched_power"]
    if s == "cosine":    # CosineAnnealingLR(T_max=steps, eta_min) up to steps, then lr_min
        x = t / cfg["sched_steps"] if t < cfg["sched_steps"] else 1.0
        return cfg["lr_min"] + (lr - cfg["lr_min"]) * 0.5 * (1 + math.cos(math.pi * x))
    raise ValueError(s)


def with_train_section(src, section):
    body = re.sub(r"^\s*train\s*\{.*?^\s*\}", "", src, flags=re.S | re.M)
    return body + "\ntrain {\n" + section + "\n}\n"


def renamed(src, name):
    return re.sub(r"^(\s*model\s+)[A-Za-z_]\w*", r"\g<1>" + name, src, count=1, flags=re.M)


# ---- files ---------------------------------------------------------------------------------------

ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + b:8 + n + e], dtype=ST_DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def read_records(path, real):
    out, data, i = {}, open(path, "rb").read(), 0
    while i < len(data):
        (ln,) = struct.unpack_from("I", data, i)
        name = data[i + 4:i + 4 + ln].decode()
        (count,) = struct.unpack_from("Q", data, i + 4 + ln)
        i += 12 + ln
        nbytes = count * np.dtype(real).itemsize
        out[name] = np.frombuffer(data[i:i + nbytes], dtype=real).copy()
        i += nbytes
    return out


# ---- building and running nncc -------------------------------------------------------------------

class Build:
    """One model emitted by nncc and compiled with the harness."""

    def __init__(self, args, work, name, src, dtype):
        self.dir, self.dtype = work, dtype
        os.makedirs(work, exist_ok=True)
        nn_path = os.path.join(work, "nnref.nn")
        with open(nn_path, "w") as f:
            f.write(renamed(src, "nnref"))
        c_path = os.path.join(work, "nnref.c")
        # f32 runs the direct convolutions: Winograd's f32 error (about 8x the direct sum's,
        # docs/performance.md) is up to 2.4e-5 on resnet20's gradients, above TOL.  f64 runs
        # Winograd, which the f64 tolerance checks to the last digits.
        flags = ["--no-winograd"] if dtype == "f32" else []
        run([args.nncc, nn_path, "-o", c_path, "--batch", str(BATCH), "--dtype", dtype] + flags)
        header = open(os.path.join(work, "nnref.h")).read()
        proto = re.search(r"int nnref_forward\(([^)]*)\)", header).group(1)
        ins, outs = re.findall(r"\bin_(\w+)", proto), re.findall(r"\bout_(\w+)", proto)
        if len(ins) != 1 or len(outs) != 1:
            fail_setup(f"{name}: the harness needs one input and one output: {proto}")
        size = lambda io: int(re.search(rf"#define NNREF_{io.upper()}_SIZE (\d+)", header).group(1))
        self.in_size, self.out_size = size(ins[0]), size(outs[0])
        cls = models.MODELS[name]
        kind, count = cls.target
        defs = [f"-DIN_SIZE={self.in_size}", f"-DOUT_SIZE={self.out_size}",
                f"-DTGT_CLASSES={count}" if kind == "class" else f"-DTGT_SIZE={count}"]
        if dtype == "f64":
            defs.append("-DREF_F64")
        self.exe = os.path.join(work, "harness")
        run([args.cc] + shlex.split(args.cflags) + ["-std=c11", "-I", work] + defs +
            [os.path.join(HERE, "harness.c"), c_path, "-o", self.exe, "-lm"])

    def run(self, steps, hyper):
        run([self.exe, self.dir, str(steps), str(SEED), str(BATCH)] +
            [f"{k}={v!r}" for k, v in sorted(hyper.items())])


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        fail_setup(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


# ---- the comparison ------------------------------------------------------------------------------

class Checker:
    def __init__(self, tol, verbose):
        self.tol, self.verbose = tol, verbose
        self.worst = {}      # what -> (error, where)
        self.failures, self.notes = [], []

    def merge(self, other):
        for kind, (err, at) in other.worst.items():
            if err > self.worst.get(kind, (-1, ""))[0]:
                self.worst[kind] = (err, at)
        self.failures += other.failures

    def compare(self, where, what, mine, ref, scale=None, slack=0.0):
        """Error of mine against ref relative to max |ref|, after forgiving `slack` per element
        (one rounding of a parameter to its dtype, for updates); with `scale`, both must be
        rounding noise: max |value| / scale."""
        mine = np.asarray(mine, dtype=np.float64).ravel()
        ref = np.asarray(ref, dtype=np.float64).ravel()
        slack = np.asarray(slack, dtype=np.float64).ravel()
        if mine.shape != ref.shape:
            self.failures.append(f"{where}: {what}: nncc has {mine.size} values, torch {ref.size}")
            return
        if scale is None:
            scale = np.max(np.abs(ref)) if ref.size else 0.0
            diff = np.max(np.maximum(np.abs(mine - ref) - slack, 0)) if ref.size else 0.0
            err = 0.0 if diff == 0 else diff / scale if scale > 0 else math.inf
        else:                       # both must be noise below tol * scale
            peak = max(np.max(np.abs(mine)), np.max(np.abs(ref)))
            err = peak / scale if scale > 0 else (0.0 if peak == 0 else math.inf)
        if not np.all(np.isfinite(mine)):
            err = math.inf
        kind = what.split(" ")[0]
        if err > self.worst.get(kind, (-1, ""))[0]:
            self.worst[kind] = (err, f"{where} {what}")
        if not err <= self.tol:
            self.failures.append(f"{where}: {what}: error {err:.3g} > {self.tol:g}")
        elif self.verbose > 1:
            print(f"  {where}: {what}: {err:.3g}")


def compare_grads(chk, where, rec, grads, zero_grads):
    for pname, g in grads.items():
        mine = rec[f"grad.{pname}"]
        if pname in zero_grads:
            chk.compare(where, f"grad(zero) {pname}", mine, g,
                        scale=float(grads[zero_grads[pname]].abs().max()))
        else:
            chk.compare(where, f"grad {pname}", mine, g)


class Kinks:
    """Replaces F.relu and F.max_pool2d (the models call them by these names) while active:
    records their inputs, and takes the other side of the kink at the chosen places.  A flipped
    ReLU element passes a negative input as |x| with slope 1, or gives 0 with slope 0 for a
    positive one; a flipped max-pool window takes its second largest element."""

    def __init__(self, flips=()):
        self.flips, self.relus, self.pools = list(flips), [], []
        self.relu0, self.pool0 = F.relu, F.max_pool2d

    def __enter__(self):
        F.relu, F.max_pool2d = self.relu, self.max_pool2d
        return self

    def __exit__(self, *exc):
        F.relu, F.max_pool2d = self.relu0, self.pool0

    def relu(self, x, inplace=False):
        call = len(self.relus)
        self.relus.append(x.detach())
        mask = (x > 0).flatten()
        lift = torch.zeros_like(mask, dtype=x.dtype)
        for kind, c, j in self.flips:
            if kind == "relu" and c == call:
                mask[j] = ~mask[j]
                if mask[j]:
                    lift[j] = -2 * x.detach().flatten()[j]
        return x * mask.view(x.shape).to(x.dtype) + lift.view(x.shape)

    def max_pool2d(self, x, kernel_size, stride=None, padding=0):
        call = len(self.pools)
        stride = stride or kernel_size
        xd = x.detach()
        win = F.unfold(F.pad(xd, [padding] * 4, value=-math.inf), kernel_size, stride=stride)
        self.pools.append(win.view(x.shape[0], x.shape[1], kernel_size * kernel_size, -1))
        out, idx = self.pool0(x, kernel_size, stride, padding, return_indices=True)
        mine = [j for kind, c, j in self.flips if kind == "pool" and c == call]
        if not mine:
            return out
        idx = idx.clone().flatten(2)
        n_c = out.shape[2] * out.shape[3]
        for j in mine:
            n, c, pos = j // (out.shape[1] * n_c), (j // n_c) % out.shape[1], j % n_c
            x2 = xd.clone().flatten(2)
            x2[n, c, idx[n, c, pos]] = -math.inf
            _, idx2 = self.pool0(x2.view_as(x), kernel_size, stride, padding, return_indices=True)
            idx[n, c, pos] = idx2.flatten(2)[n, c, pos]
        return x.flatten(2).gather(2, idx).view_as(out)


def kink_candidates(r, per_call=4, limit=16):
    """The kinks nearest the edge in a recorded run: ReLU inputs nearest 0 and max-pool windows
    whose two largest inputs are nearest each other, relative to the tensor's rms, below 1e-4;
    the `per_call` nearest of each call, the `limit` nearest in all."""
    near = []
    for c, v in enumerate(r.relus):
        rel = (v.abs() / v.pow(2).mean().sqrt()).flatten()
        for j in torch.topk(rel, min(per_call, rel.numel()), largest=False).indices.tolist():
            if rel[j] < 1e-4:
                near.append((float(rel[j]), "relu", c, j, f"input {float(v.flatten()[j]):.2g}"))
    for c, w in enumerate(r.pools):
        top = torch.topk(w, 2, dim=2).values
        gap = top[:, :, 0] - top[:, :, 1]
        finite = w[torch.isfinite(w)]
        rel = (gap / finite.pow(2).mean().sqrt()).flatten()
        rel[~(rel > 0)] = math.inf        # exact ties: both take the first
        for j in torch.topk(rel, min(per_call, rel.numel()), largest=False).indices.tolist():
            if rel[j] < 1e-4:
                near.append((float(rel[j]), "pool", c, j, f"gap {float(gap.flatten()[j]):.2g}"))
    return sorted(near)[:limit]


def kink_explains(tol, where, rec, cls, ckpt, x, y, k, zero_grads):
    """An f32 gradient mismatch may be a kink: a ReLU input within f32 rounding of 0, or a max-pool
    window whose two largest inputs are that close.  nncc and PyTorch may then take different
    sides, and every gradient upstream moves by about 1/(N H W) of its size (a conv output of K
    products carries ~sqrt(K) ulps of error, more after batchnorm scales it up); a flip can also
    move a value downstream across another kink.  First the float64 reference itself (PyTorch's
    f32 run may be the one that crossed); then search: run the float64 reference on the other
    side of each of the 16 kinks nearest the edge (kink_candidates); keep the flip that lowers the
    gradient error most and search again from there, up to 3 flips.  If a reference so found
    matches nncc's f32 gradients within tolerance, return a note naming the flips and that
    comparison, else None (the mismatch stands)."""
    def run(flips):
        m = cls().double()
        m.load_state_dict(state_dict_of(ckpt, torch.float64), strict=True)
        m.train()
        set_dropout(m, k)
        with Kinks(flips) as r:
            m.loss(m(x.double()), y if y.dtype == torch.long else y.double()).backward()
        trial = Checker(tol, 0)
        compare_grads(trial, where, rec, {n: p.grad for n, p in m.named_parameters()}, zero_grads)
        return trial, r

    def badness(trial):
        return (len(trial.failures), max(e for e, _ in trial.worst.values()))

    chosen, (trial, r) = [], run(())
    if not trial.failures:    # nncc is on the float64 side: PyTorch's f32 rounding crossed the kink
        return (f"{where}: f32 gradients agree with the float64 reference, PyTorch's f32 ones do "
                f"not: a kink within f32 rounding that PyTorch crossed, not a bug"), trial
    for _ in range(3):
        best = None
        for cand in kink_candidates(r):
            if any(cand[1:4] == c[1:4] for c in chosen):
                continue
            t, rr = run([c[1:4] for c in chosen + [cand]])
            if best is None or badness(t) < badness(best[0]):
                best = (t, rr, cand)
            if not t.failures:
                break
        if best is None or badness(best[0]) >= badness(trial):
            return None, None
        trial, r = best[0], best[1]
        chosen.append(best[2])
        if not trial.failures:
            what = ", ".join(f"{kind} call {c} element {j} ({v} in float64)" for _, kind, c, j, v in chosen)
            return (f"{where}: f32 gradients agree with the float64 reference on the other side "
                    f"of {what}: a kink within f32 rounding, not a bug"), trial
    return None, None


def set_dropout(model, step):
    for mod in model.modules():
        if isinstance(mod, models.NnccDropout):
            mod.seed, mod.step = SEED, step


def decayed_names(model, cfg):
    """Tensors nncc decays: conv and dense weights (all trained tensors with decay_all)."""
    out = set()
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if cfg["decay_all"] or (isinstance(mod, (nn.Conv2d, nn.Linear)) and pname == "weight"):
                out.add(full)
    return out


def zero_grad_names(model):
    """Biases whose gradient is zero in exact arithmetic: a conv/dense bias whose layer feeds a
    training-mode batchnorm directly (found from the module order: the layer right before a
    BatchNorm in registration order, as the models are written)."""
    out, prev = {}, None
    for mname, mod in model.named_modules():
        if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)) and prev is not None:
            pname, pmod = prev
            if pmod.bias is not None:
                out[f"{pname}.bias"] = f"{pname}.weight"
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            prev = (mname, mod)
    return out


def make_optimizer(cfg, params, lr, decayed):
    dec = [p for n, p in params.items() if n in decayed]
    rest = [p for n, p in params.items() if n not in decayed]
    groups = [{"params": dec, "weight_decay": cfg["l2"]}, {"params": rest, "weight_decay": 0.0}]
    o = cfg["optimizer"]
    if o == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if o in ("momentum", "nesterov"):
        return torch.optim.SGD(groups, lr=lr, momentum=cfg["momentum"],
                               dampening=cfg.get("dampening", 0.0), nesterov=o == "nesterov")
    if o == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, eps=cfg["eps"])
    if o == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=cfg["rho"], eps=cfg["eps"])
    if o == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"])
    raise ValueError(o)


SLOTS = {"sgd": [], "momentum": ["momentum_buffer"], "nesterov": ["momentum_buffer"],
         "adagrad": ["sum"], "rmsprop": ["square_avg"], "adam": ["exp_avg", "exp_avg_sq"]}


def reference_step(cfg, k, ckpt, grads, tdt, decayed, units):
    """One step of the reference from checkpoint k (parameters and optimizer state) with the given
    gradients: torch.optim's rule, nncc's decay, schedule and max-norm.  Returns the new
    parameters and the optimizer's state, by name."""
    params = {n: torch.from_numpy(ckpt[n]).to(tdt).clone().requires_grad_() for n in grads}
    with torch.no_grad():
        for n, p in params.items():
            g = grads[n].clone()
            if n in decayed and cfg["l1"] > 0:   # torch.optim has no L1: nncc's l1 * sign(p)
                g = g + cfg["l1"] * torch.sign(p)
            p.grad = g
    opt = make_optimizer(cfg, params, schedule_lr(cfg, k), decayed)
    for n, p in params.items():           # PyTorch's state from nncc's (the same slot names)
        st = {slot: torch.from_numpy(ckpt[f"optimizer.{n}.{slot}"]).to(tdt).clone()
              for slot in SLOTS[cfg["optimizer"]]}
        if k == 0 and "momentum_buffer" in st:   # SGD's first step: no buffer yet (undamped)
            del st["momentum_buffer"]
        if cfg["optimizer"] in ("adagrad", "rmsprop", "adam"):
            st["step"] = torch.tensor(float(k))
        if st:
            opt.state[p] = st
    opt.step()
    if cfg["max_norm"] > 0:
        max_norm([params[n] for n in units], cfg["max_norm"])
    return ({n: p.detach() for n, p in params.items()},
            {n: {s: opt.state[p][s] for s in SLOTS[cfg["optimizer"]]} for n, p in params.items()})


def max_norm(weights, c):
    """Each conv filter / dense row clipped to norm c: scaled by c / norm (both in double)."""
    with torch.no_grad():
        for w in weights:
            rows = w.double().reshape(w.shape[0], -1)
            norm = rows.norm(dim=1)
            over = (norm > c)[:, None]
            rows = torch.where(over, rows * (c / norm)[:, None], rows)
            w.copy_(rows.to(w.dtype).reshape(w.shape))


def state_dict_of(ckpt, dtype):
    """nncc's checkpoint as a state_dict: reals in dtype, num_batches_tracked kept int64."""
    return {k: torch.from_numpy(v) if v.dtype == np.int64 else torch.from_numpy(v).to(dtype)
            for k, v in ckpt.items() if not k.startswith("optimizer.")}


def unit_names(model):
    return [f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]


def check_step(chk, where, cfg, k, ckpt, after, rec, params, tdt, real, decayed, units):
    """torch.optim's step on nncc's gradients of step k against nncc's checkpoint k+1.

    The update p(k+1) - p(k) is compared with a per-element allowance: one rounding of p(k+1),
    plus how far the reference's update moves when its gradient input moves by one rounding
    (unit roundoff x (|g| + l2 |p| + l1), evaluated by running the reference at g +- that).  The
    latter matters in f32 only, where a decayed gradient g + l2 p that cancels to near eps makes
    the root rules (adam, rmsprop, adagrad) ill-conditioned: gi / (|gi| + eps) then changes by
    percents for one rounding of g + l2 p."""
    grads = {n: torch.from_numpy(rec[f"grad.{n}"]).to(tdt).reshape(params[n].shape) for n in params}
    new, state = reference_step(cfg, k, ckpt, grads, tdt, decayed, units)
    u = np.finfo(real).eps / 2
    spread = {n: np.zeros(ckpt[n].size) for n in params}
    for sign in (1, -1):
        moved = {}
        for n, g in grads.items():
            l2, l1 = (cfg["l2"], cfg["l1"]) if n in decayed else (0.0, 0.0)
            d = u * (g.abs() + l2 * torch.from_numpy(ckpt[n]).to(tdt).abs() + l1)
            moved[n] = g + sign * d
        alt, _ = reference_step(cfg, k, ckpt, moved, tdt, decayed, units)
        for n in params:
            spread[n] = np.maximum(spread[n], np.abs(alt[n].double().numpy() - new[n].double().numpy()).ravel())
    for n in params:
        before = ckpt[n].astype(np.float64)
        chk.compare(where, f"param {n}", after[n], new[n])
        ulp = np.spacing(np.abs(new[n].numpy()).astype(real)).astype(np.float64).ravel()
        chk.compare(where, f"update {n}", after[n] - before, new[n].double().numpy() - before,
                    slack=ulp + spread[n])
        for slot, t in state[n].items():
            chk.compare(where, f"state {n}.{slot}", after[f"optimizer.{n}.{slot}"], t)


def check_case(args, chk, name, dtype, build, cfg, hyper, steps, label):
    cfg = dict(cfg, **hyper)
    build.run(steps, hyper)
    tdt = torch.float64 if dtype == "f64" else torch.float32
    real = np.float64 if dtype == "f64" else np.float32
    cls = models.MODELS[name]
    x = torch.from_numpy(np.fromfile(os.path.join(build.dir, "x.bin"), dtype=real)).reshape(
        BATCH, *cls.in_shape)
    if cls.target[0] == "class":
        y = torch.from_numpy(np.fromfile(os.path.join(build.dir, "y.bin"), dtype=np.int32)).long()
    else:
        y = torch.from_numpy(np.fromfile(os.path.join(build.dir, "y.bin"), dtype=real)).reshape(
            BATCH, -1)
    model = cls().to(tdt)
    decayed = decayed_names(model, cfg)
    zero_grads = zero_grad_names(model)
    units = unit_names(model)
    for k in range(steps + 1):
        where = f"{label} step {k}"
        ckpt = read_safetensors(os.path.join(build.dir, f"ckpt{k}.safetensors"))
        rec = read_records(os.path.join(build.dir, f"step{k}.bin"), real)
        if int(ckpt["optimizer.step"]) != k:
            chk.failures.append(f"{where}: checkpoint step is {int(ckpt['optimizer.step'])}")
        model.load_state_dict(state_dict_of(ckpt, tdt), strict=True)
        model.eval()
        with torch.no_grad():
            chk.compare(where, "output", rec["out"], model.output(model(x)))
        if k == steps:
            break
        # training forward and backward at checkpoint k (updates the running statistics)
        model.train()
        set_dropout(model, k)
        model.zero_grad()
        loss = model.loss(model(x), y)
        loss.backward()
        chk.compare(where, "loss", rec["loss"], loss.detach())
        params = dict(model.named_parameters())
        grads = {n: p.grad for n, p in params.items()}
        trial = Checker(chk.tol, 0)
        compare_grads(trial, where, rec, grads, zero_grads)
        if trial.failures and dtype == "f32":
            note, alt = kink_explains(trial.tol, where, rec, cls, ckpt, x, y, k, zero_grads)
            if note:
                chk.notes.append(note)
                trial = alt
        chk.merge(trial)
        after = read_safetensors(os.path.join(build.dir, f"ckpt{k + 1}.safetensors"))
        for tname, t in model.state_dict().items():
            if "running" in tname:
                chk.compare(where, f"buffer {tname}", after[tname], t)
            elif tname.endswith("num_batches_tracked") and int(after[tname]) != int(t):
                chk.failures.append(f"{where}: {tname} is {int(after[tname])}, PyTorch's {int(t)}")
        check_step(chk, where, cfg, k, ckpt, after, rec, params, tdt, real, decayed, units)


ST_NAMES = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
            np.dtype(np.int64): "I64"}


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().numpy()).reshape(tuple(t.shape))   # ndim >= 1 otherwise
        header[name] = {"dtype": ST_NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def check_torch_state_dict(chk, build, name, dtype, label):
    """PyTorch -> nncc: the PyTorch model's whole state_dict (num_batches_tracked included, as
    `safetensors.torch.save_file(model.state_dict(), ...)` writes it), holding nncc's initial
    weights, must load into nncc (docs/api.md: a weights-only file exported from PyTorch loads)
    and come back unchanged; converted by PyTorch to F16 and to the other real dtype, it must
    load as PyTorch rounds it."""
    tdt = torch.float64 if dtype == "f64" else torch.float32
    model = models.MODELS[name]().to(tdt)
    build.run(0, {})
    ckpt = read_safetensors(os.path.join(build.dir, "ckpt0.safetensors"))
    model.load_state_dict(state_dict_of(ckpt, tdt), strict=True)
    counts = [b for n, b in model.named_buffers() if n.endswith("num_batches_tracked")]
    for i, b in enumerate(counts):      # a trained model's counts, one per layer
        b.fill_(1000 + 7 * i)
    # the state_dict as it is, and converted by PyTorch to other dtypes: nncc must load each and
    # hold exactly PyTorch's rounding of it (F16 and, in f32 builds, F64 values about one f32
    # ulp off the floats, where rounding to nearest and truncation differ; docs/api.md "dtypes")
    state = model.state_dict()
    other = torch.float32 if dtype == "f64" else torch.float64
    variants = [("", lambda t: t), ("F16 ", lambda t: t.half()),
                (f"{'F32' if dtype == 'f64' else 'F64'} ",
                 lambda t: t.to(other) * (1 + 1e-7) if other == torch.float64 else t.to(other))]
    for tag, conv in variants:
        sent = {k: (conv(t) if t.is_floating_point() else t) for k, t in state.items()}
        path = os.path.join(build.dir, "from_torch.safetensors")
        write_safetensors(path, sent)
        p = subprocess.run([build.exe, build.dir, "load", str(SEED), str(BATCH), path],
                           capture_output=True, text=True)
        if p.returncode != 0:
            chk.failures.append(f"{label}: nncc cannot load PyTorch's {tag}state_dict: "
                                f"{p.stderr.strip()}")
            continue
        back = read_safetensors(os.path.join(build.dir, "loaded.safetensors"))
        for tname, t in sent.items():
            want = t.to(tdt).numpy() if t.is_floating_point() else t.numpy()
            if tname not in back:
                chk.failures.append(f"{label}: {tname} missing after the {tag}load")
            elif back[tname].dtype != want.dtype or not np.array_equal(back[tname], want):
                chk.failures.append(f"{label}: {tag}{tname} after the load is not PyTorch's "
                                    f"(max |difference| {np.max(np.abs(back[tname] - want))})")


def write_data(build, name, dtype):
    rng = np.random.default_rng(1234)
    cls = models.MODELS[name]
    real = np.float64 if dtype == "f64" else np.float32
    x = rng.uniform(0, 1, size=(BATCH, build.in_size)).astype(real)
    x.tofile(os.path.join(build.dir, "x.bin"))
    kind, count = cls.target
    if kind == "class":
        rng.integers(0, count, size=BATCH).astype(np.int32).tofile(os.path.join(build.dir, "y.bin"))
    else:                # the autoencoder's target is its input
        x.reshape(BATCH, -1)[:, :count].tofile(os.path.join(build.dir, "y.bin"))


def phases(build, name, dtype, every):
    """Runtime regularizer settings checked on a build: as compiled, L2, L1, elastic and max-norm
    with c at the median unit norm of the initial weights (so about half the units clip); without
    `every` (models outside the optimizer matrix, to save time) only the first and the last."""
    build.run(0, {})
    ckpt = read_safetensors(os.path.join(build.dir, "ckpt0.safetensors"))
    model = models.MODELS[name]()
    norms = []
    for mname, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            w = ckpt[f"{mname}.weight"].astype(np.float64)
            norms.extend(np.linalg.norm(w.reshape(w.shape[0], -1), axis=1))
    c = float(np.median(norms))
    out = [("as built", {}), ("l2", {"l2": 1e-2, "l1": 0.0}), ("l1", {"l1": 1e-3, "l2": 0.0}),
           ("elastic+maxnorm", {"l1": 1e-3, "l2": 1e-2, "max_norm": c})]
    return out if every else [out[0], out[-1]]


def cases(args):
    for name in args.models:
        if name not in models.MODELS:
            print(f"FAIL      {name}: no PyTorch definition in tests/torch/models.py")
            args.missing.append(name)
            continue
        path = os.path.join(ROOT, "examples", f"{name}.nn")
        if not os.path.exists(path):      # examples/imagenet/resnet50.nn: on request only
            path = os.path.join(ROOT, "examples", "imagenet", f"{name}.nn")
        src = open(path).read()
        sections = [("own", None)]
        if name in args.matrix:
            for opt, sched, dall in MATRIX:
                sections.append((f"{opt}+{sched.split('(')[0]}{'+decay_all' if dall else ''}",
                                 f"  optimizer {opt}(lr={MATRIX_LR[opt]})\n  schedule {sched}\n"
                                 f"  decay_all = {'true' if dall else 'false'}"))
            for line in TORCH_SPELLINGS:
                sections.append((line, f"  optimizer {line}"))
        for dtype in args.dtypes:
            for label, section in sections:
                yield name, dtype, label, src if section is None else with_train_section(src, section)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nncc", default=os.path.join(ROOT, "build", "nncc"))
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--cflags", default=os.environ.get("CFLAGS", "-O2 -march=native -fopenmp"))
    ap.add_argument("--models", default=" ".join(EXAMPLES))
    ap.add_argument("--matrix", default="lenet5 mlp",
                    help="models that also run every optimizer/schedule (default: lenet5 mlp)")
    ap.add_argument("--full", action="store_true", help="the optimizer matrix on every model")
    ap.add_argument("--dtypes", default="f64 f32")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--work", help="keep the generated files here (default: a temp dir, removed)")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    args = ap.parse_args()
    args.models, args.dtypes = args.models.split(), args.dtypes.split()
    args.matrix = args.models if args.full else args.matrix.split()
    args.missing = []
    if not os.access(args.nncc, os.X_OK):
        fail_setup(f"no nncc at {args.nncc}")
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    work = args.work or tempfile.mkdtemp(prefix="nncc-torch.")
    t0, failures, table = time.time(), [], []
    print(f"torch {torch.__version__}; batch {BATCH}, {args.steps} steps per case; "
          f"tolerances f64 {TOL['f64']:g}, f32 {TOL['f32']:g}; {args.cc} {args.cflags}")
    for name, dtype, label, src in cases(args):
        t = time.time()
        build = Build(args, os.path.join(work, f"{name}-{dtype}-{re.sub(r'[^A-Za-z0-9]+', '_', label)}"),
                      name, src, dtype)
        write_data(build, name, dtype)
        cfg = train_config(src)
        chk = Checker(TOL[dtype], args.verbose)
        if label == "own":
            check_torch_state_dict(chk, build, name, dtype, f"{name} {dtype} load")
        for phase, hyper in phases(build, name, dtype, name in args.matrix):
            check_case(args, chk, name, dtype, build, cfg, hyper, args.steps,
                       f"{name} {dtype} {label} [{phase}]")
        status = "ok" if not chk.failures else f"FAIL ({len(chk.failures)})"
        worst = ", ".join(f"{k} {v[0]:.1e}" for k, v in sorted(chk.worst.items()))
        print(f"{status:9} {name:15} {dtype} {label:30} {time.time() - t:5.1f}s  max errors: {worst}",
              flush=True)
        if args.verbose:
            for k, v in sorted(chk.worst.items()):
                print(f"           worst {k}: {v[0]:.3g} at {v[1]}")
        for n in chk.notes:
            print(f"    note: {n}")
        for f in chk.failures[:20]:
            print(f"    {f}")
        if len(chk.failures) > 20:
            print(f"    ... and {len(chk.failures) - 20} more")
        failures += chk.failures
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    failures += [f"{name}: no PyTorch definition" for name in args.missing]
    print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} disagreements; "
          f"{time.time() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
