"""PyTorch definitions of the example models (examples/*.nn), layer for layer.

Each class matches its .nn file exactly: the same layer sizes, the same conv bias before batchnorm
(conv2d has bias=true unless the model says bias=false), and the module names nncc gives the layers
(section 8 of docs/language.md: `conv1`, `bn1`, `fc1` numbered per op prefix in program order, block
instances as `<block><k>.`), so that a checkpoint nncc saves loads with
`load_state_dict(strict=True)`.  nncc does not write BatchNorm's `num_batches_tracked`; PyTorch's
BatchNorm fills it in (0) when a state dict without version metadata lacks it, so strict loading
still checks every other name and shape.

Every model maps x to `head` (the tensor the loss reads: logits, or the reconstruction), has
`output(head)` (the model's `output`: softmax of the logits, or the reconstruction) and
`loss(head, target)` (the `loss` line).  Dropout is `NnccDropout`: the same mask as nncc's, a pure
function of (seed, step, layer name, element index); check.py sets the seed and the step.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

GAMMA = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1


def _hash64(x):
    """splitmix64's mixer (runtime/nn_rng.c: nn_hash64) on a numpy uint64 array."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_uniform(seed, count):
    """nn_hash_uniform(seed, i) for i = 0 .. count-1: uniform in [0, 1) on a 2^-53 grid."""
    with np.errstate(over="ignore"):
        h = _hash64(np.array([seed], dtype=np.uint64))[0]
        i = np.arange(count, dtype=np.uint64)
        x = _hash64(h + (i + np.uint64(1)) * np.uint64(GAMMA))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def fnv1a(name):
    """ir/ops/dropout.c: layer_hash, FNV-1a of the layer name."""
    h = 0xCBF29CE484222325
    for ch in name.encode():
        h = ((h ^ ch) * 0x100000001B3) & M64
    return h


class NnccDropout(nn.Module):
    """Inverted dropout with nncc's mask (ir/ops/dropout.c): element i of the batch (flat index) is
    zeroed when nn_hash_uniform(seed ^ step * GAMMA ^ fnv1a(layer), i) < p, else scaled by
    1/(1 - p).  `seed` and `step` are set by check.py before each training forward."""

    def __init__(self, p, layer):
        super().__init__()
        self.p, self.layer = p, layer
        self.seed, self.step = 0, 0

    def forward(self, x):
        if not self.training:
            return x
        s = (self.seed ^ ((self.step * GAMMA) & M64) ^ fnv1a(self.layer)) & M64
        keep = hash_uniform(s, x.numel()) >= self.p
        mask = torch.from_numpy(keep.reshape(x.shape)).to(x.dtype)
        return x * mask * (1.0 / (1.0 - self.p))


# bench/compare times PyTorch's own dropout (nn.Dropout; NnccDropout is not scriptable)
TORCH_DROPOUT = False


def dropout(p, layer):
    return nn.Dropout(p) if TORCH_DROPOUT else NnccDropout(p, layer)


def conv(cin, cout, k, stride=1, pad=0, bias=True):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=bias)


class Classifier(nn.Module):
    """Models whose output is softmax(logits) and whose loss is cross_entropy(logits, y)."""

    def output(self, head):
        return F.softmax(head, dim=1)

    def loss(self, head, y):
        return F.cross_entropy(head, y)


class Mlp(Classifier):
    """examples/mlp.nn: flatten |> dense(128) |> relu |> dense(64) |> relu |> dense(10)."""
    in_shape, target = (1, 28, 28), ("class", 10)

    def __init__(self, hidden=(128, 64)):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], 10)

    def forward(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        h = F.relu(self.fc2(h))
        return self.fc3(h)


class Mlp512(Mlp):
    """examples/mlp512.nn: the same with 512 and 512 hidden units."""

    def __init__(self):
        super().__init__((512, 512))


class Lenet5(Classifier):
    """examples/lenet5.nn: conv(6, 5, pad 2) bn relu pool, conv(16, 5) bn relu pool, 120, 84, 10;
    the convs keep their bias before batchnorm."""
    in_shape, target = (1, 28, 28), ("class", 10)

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = conv(1, 6, 5, pad=2), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = conv(6, 16, 5), nn.BatchNorm2d(16)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        h = F.max_pool2d(F.relu(self.bn2(self.conv2(h))), 2)
        h = F.relu(self.fc1(h.flatten(1)))
        h = F.relu(self.fc2(h))
        return self.fc3(h)


class VggBlock(nn.Module):
    """block vgg(x, c): two conv3x3(bias=false)-bn-relu, then maxpool(2)."""

    def __init__(self, cin, c):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, c, 3, pad=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = conv(c, c, 3, pad=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.max_pool2d(h, 2)


class VggSmall(Classifier):
    """examples/vgg_small.nn: normalize, vgg(32) vgg(64) vgg(128), 256, dropout(0.5), 10."""
    in_shape, target = (3, 32, 32), ("class", 10)
    MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]

    def __init__(self):
        super().__init__()
        self.vgg1, self.vgg2, self.vgg3 = VggBlock(3, 32), VggBlock(32, 64), VggBlock(64, 128)
        self.fc1, self.fc2 = nn.Linear(2048, 256), nn.Linear(256, 10)
        self.dropout1 = dropout(0.5, "dropout1")
        # not in the state dict (nncc compiles them into the code); in float64, so .to(dtype)
        # rounds the decimal constants once, as the C compiler does
        self.register_buffer("mean", torch.tensor(self.MEAN, dtype=torch.float64).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(self.STD, dtype=torch.float64).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x):
        h = (x - self.mean) / self.std
        h = self.vgg3(self.vgg2(self.vgg1(h)))
        h = self.dropout1(F.relu(self.fc1(h.flatten(1))))
        return self.fc2(h)


class Basic(nn.Module):
    """block basic(x, c): conv-bn-relu, conv-bn, relu(h + x)."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = conv(c, c, 3, pad=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = conv(c, c, 3, pad=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + x)


class Down(nn.Module):
    """block down(x, c): stride-2 conv-bn-relu, conv-bn, shortcut 1x1 stride-2 conv-bn."""

    def __init__(self, cin, c):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, c, 3, stride=2, pad=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = conv(c, c, 3, pad=1, bias=False), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = conv(cin, c, 1, stride=2, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.bn3(self.conv3(x)))


class Resnet20(Classifier):
    """examples/resnet20.nn: stem, basic1-3 (16), down1 basic4-5 (32), down2 basic6-7 (64), gap, 10."""
    in_shape, target = (3, 32, 32), ("class", 10)

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = conv(3, 16, 3, pad=1, bias=False), nn.BatchNorm2d(16)
        self.basic1, self.basic2, self.basic3 = Basic(16), Basic(16), Basic(16)
        self.down1, self.basic4, self.basic5 = Down(16, 32), Basic(32), Basic(32)
        self.down2, self.basic6, self.basic7 = Down(32, 64), Basic(64), Basic(64)
        self.fc1 = nn.Linear(64, 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.basic3(self.basic2(self.basic1(h)))
        h = self.basic5(self.basic4(self.down1(h)))
        h = self.basic7(self.basic6(self.down2(h)))
        return self.fc1(F.adaptive_avg_pool2d(h, 1).flatten(1))


class ConvBn(nn.Module):
    """block conv_bn(x, c, k): conv(k, pad (k-1)/2, bias=false) |> batchnorm |> relu."""

    def __init__(self, cin, c, k):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, c, k, pad=(k - 1) // 2, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn1(self.conv1(x)))


class Inception(nn.Module):
    """block inception(x, c1, r3, c3, r5, c5, cp): conv_bn1 | conv_bn2 -> conv_bn3 |
    conv_bn4 -> conv_bn5 | maxpool(3, 1, 1) -> conv_bn6, concatenated."""

    def __init__(self, cin, c1, r3, c3, r5, c5, cp):
        super().__init__()
        self.conv_bn1 = ConvBn(cin, c1, 1)
        self.conv_bn2, self.conv_bn3 = ConvBn(cin, r3, 1), ConvBn(r3, c3, 3)
        self.conv_bn4, self.conv_bn5 = ConvBn(cin, r5, 1), ConvBn(r5, c5, 5)
        self.conv_bn6 = ConvBn(cin, cp, 1)

    def forward(self, x):
        b1 = self.conv_bn1(x)
        b3 = self.conv_bn3(self.conv_bn2(x))
        b5 = self.conv_bn5(self.conv_bn4(x))
        bp = self.conv_bn6(F.max_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b3, b5, bp], dim=1)


class InceptionMini(Classifier):
    """examples/inception_mini.nn: conv_bn(32, 3) pool, inception1 pool, inception2, gap, 10."""
    in_shape, target = (3, 32, 32), ("class", 10)

    def __init__(self):
        super().__init__()
        self.conv_bn1 = ConvBn(3, 32, 3)
        self.inception1 = Inception(32, 16, 24, 32, 4, 8, 8)
        self.inception2 = Inception(64, 32, 32, 48, 8, 16, 16)
        self.fc1 = nn.Linear(112, 10)

    def forward(self, x):
        h = F.max_pool2d(self.conv_bn1(x), 2)
        h = F.max_pool2d(self.inception1(h), 2)
        h = self.inception2(h)
        return self.fc1(F.adaptive_avg_pool2d(h, 1).flatten(1))


class MaxoutLayer(nn.Module):
    """block maxout_layer(x, units, k): dense(units * k) |> maxout(k) |> dropout(0.5)."""

    def __init__(self, cin, units, k, prefix):
        super().__init__()
        self.k = k
        self.fc1 = nn.Linear(cin, units * k)
        self.dropout1 = dropout(0.5, prefix + ".dropout1")

    def forward(self, x):
        h = self.fc1(x)
        h = torch.max(h.view(h.shape[0], -1, self.k), dim=2)[0]   # unit g: max of g k .. g k + k-1
        return self.dropout1(h)


class MaxoutMlp(Classifier):
    """examples/maxout_mlp.nn: flatten, dropout(0.2), two maxout layers 300 x 4, dense 10."""
    in_shape, target = (1, 28, 28), ("class", 10)

    def __init__(self):
        super().__init__()
        self.dropout1 = dropout(0.2, "dropout1")
        self.maxout_layer1 = MaxoutLayer(784, 300, 4, "maxout_layer1")
        self.maxout_layer2 = MaxoutLayer(300, 300, 4, "maxout_layer2")
        self.fc1 = nn.Linear(300, 10)

    def forward(self, x):
        h = self.dropout1(x.flatten(1))
        return self.fc1(self.maxout_layer2(self.maxout_layer1(h)))


class Autoencoder(nn.Module):
    """examples/autoencoder.nn: conv(16, 3, s2, p1) relu conv(32, 3, s2, p1) relu flatten dense(32),
    dense(256) relu dense(784) sigmoid; loss mse(recon, t)."""
    in_shape, target = (1, 28, 28), ("real", 784)

    def __init__(self):
        super().__init__()
        self.conv1 = conv(1, 16, 3, stride=2, pad=1)
        self.conv2 = conv(16, 32, 3, stride=2, pad=1)
        self.fc1, self.fc2, self.fc3 = nn.Linear(1568, 32), nn.Linear(32, 256), nn.Linear(256, 784)

    def forward(self, x):
        code = self.fc1(F.relu(self.conv2(F.relu(self.conv1(x)))).flatten(1))
        return torch.sigmoid(self.fc3(F.relu(self.fc2(code))))

    def output(self, head):
        return head

    def loss(self, head, t):
        return F.mse_loss(head, t)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: stride on the 3x3), blocks bottleneck / bottleneck_down of
    examples/imagenet/resnet50.nn."""

    def __init__(self, cin, c, stride=1, down=False):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, c, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = conv(c, c, 3, stride=stride, pad=1, bias=False), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = conv(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c)
        self.downsample = (nn.Sequential(conv(cin, 4 * c, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(4 * c)) if down else None)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (self.downsample(x) if self.downsample is not None else x))


class Resnet50(Classifier):
    """examples/imagenet/resnet50.nn: torchvision's resnet50 with its parameter names."""
    in_shape, target = (3, 224, 224), ("class", 1000)

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = conv(3, 64, 7, stride=2, pad=3, bias=False), nn.BatchNorm2d(64)
        cin, layers = 64, []
        for c, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layer = [Bottleneck(cin, c, stride, down=True)]
            layer += [Bottleneck(4 * c, c) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*layer))
            cin = 4 * c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


MODELS = {
    "mlp": Mlp,
    "mlp512": Mlp512,
    "lenet5": Lenet5,
    "vgg_small": VggSmall,
    "resnet20": Resnet20,
    "inception_mini": InceptionMini,
    "maxout_mlp": MaxoutMlp,
    "autoencoder": Autoencoder,
    "resnet50": Resnet50,
}
