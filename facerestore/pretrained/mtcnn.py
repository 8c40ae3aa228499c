"""MTCNN's three networks with facenet-pytorch's weights, without importing facenet-pytorch.

``import facenet_pytorch`` runs its package ``__init__``, which imports torchvision, whose ops pull
in ``torch._dynamo``: about 2 s of start-up for networks of 30k parameters. These definitions
have the same parameter names as ``facenet_pytorch.models.mtcnn`` (a test checks the outputs
match), and the weights are read from the package's ``data/*.pt`` files as plain state dicts.
The pointwise heads and dense layers run in float64 (:mod:`facerestore.same_bits`), so the
landmarks, and the restored photo's bytes, do not follow the thread count.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import MissingWeightsError
from ..same_bits import pointwise
from .sources import package_dir


def _flatten(x: Tensor) -> Tensor:
    # the original Caffe nets flatten in (W, H, C) order
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PNet(nn.Module):
    """12x12 proposal net, fully convolutional: ``(box regression (B,4,h,w), face prob (B,2,h,w))``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def features(self, x: Tensor) -> Tensor:
        """The trunk: (B, 3, H, W) -> (B, 32, h, w), one 32-vector per 12x12 window."""
        return self.prelu3(self.conv3(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x)))))))

    def face_prob_fast(self, feat: Tensor) -> Tensor:
        """Face probability (B, h, w) in float32 (its last bit may follow the thread count): to
        find the few windows worth the exact heads."""
        return self.conv4_1(feat).softmax(1)[:, 1]

    def heads(self, cells: Tensor) -> tuple[Tensor, Tensor]:
        """Exact heads of chosen windows, ``cells`` (N, 32) from :meth:`features`: (box
        regression (N, 4), face probability (N,)), in float64 so the thread count cannot move
        them (converting a whole photo's map to float64 cost more than the network)."""
        return pointwise(self.conv4_2, cells), pointwise(self.conv4_1, cells).softmax(1)[:, 1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.features(x)
        return pointwise(self.conv4_2, x), pointwise(self.conv4_1, x).softmax(1)


class RNet(nn.Module):
    """24x24 refinement net: ``(box regression (N,4), face prob (N,2))``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
        x = self.prelu4(pointwise(self.dense4, _flatten(self.prelu3(self.conv3(x)))))
        return pointwise(self.dense5_2, x), pointwise(self.dense5_1, x).softmax(1)


class ONet(nn.Module):
    """48x48 output net: ``(box regression (N,4), landmarks (N,10) as x1..x5, y1..y5, face prob (N,2))``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
        x = self.prelu4(self.conv4(self.pool3(self.prelu3(self.conv3(x)))))
        x = self.prelu5(pointwise(self.dense5, _flatten(x)))
        return pointwise(self.dense6_2, x), pointwise(self.dense6_3, x), pointwise(self.dense6_1, x).softmax(1)


def load_mtcnn(device: torch.device | str = "cpu") -> tuple[PNet, RNet, ONet]:
    """The three networks in eval mode on ``device``, weights from the installed facenet-pytorch."""
    root = package_dir("facenet_pytorch")
    if root is None:
        raise MissingWeightsError("MTCNN weights come with facenet-pytorch: pip install 'facenet-pytorch>=2.5.3,<2.6'")
    nets = []
    for name, cls in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
        path = root / "data" / f"{name}.pt"
        if not path.is_file():
            raise MissingWeightsError(f"{path} is missing: reinstall facenet-pytorch")
        net = cls()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        nets.append(net.eval().requires_grad_(False).to(device))
    return tuple(nets)  # type: ignore[return-value]
