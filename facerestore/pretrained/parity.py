"""Parity of the PyTorch dlib ResNet port with dlib itself, on chips dlib cuts from real faces."""

from __future__ import annotations

import numpy as np
import torch


def dlib_chips(image: np.ndarray, size: int = 150, padding: float = 0.25, upsample: int = 1) -> list[np.ndarray]:
    """dlib's aligned face chips (HOG detector + 5-point predictor + ``get_face_chip``) of an RGB
    uint8 image, as dlib's face-recognition example cuts them."""
    import dlib

    from .sources import dlib_model

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_model("shape_predictor_5_face_landmarks.dat")))
    img = np.ascontiguousarray(image)
    shapes = dlib.full_object_detections()
    for rect in det(img, upsample):
        shapes.append(sp(img, rect))
    if len(shapes) == 0:
        return []
    return [np.asarray(c) for c in dlib.get_face_chips(img, shapes, size=size, padding=padding)]


def dlib_descriptors(chips: list[np.ndarray]) -> np.ndarray:
    """dlib's own ``compute_face_descriptor`` of 150x150 chips -> (N, 128)."""
    import dlib

    from .dlib_resnet import MODEL_FILE
    from .sources import dlib_model

    fr = dlib.face_recognition_model_v1(str(dlib_model(MODEL_FILE)))
    return np.stack([np.asarray(fr.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips])


def port_descriptors(chips: list[np.ndarray], model=None) -> np.ndarray:
    """The PyTorch port's raw descriptors of the same chips -> (N, 128)."""
    from .dlib_resnet import load_dlib_resnet

    model = model or load_dlib_resnet()
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return model(x).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def astronaut_parity() -> float:
    """Cosine similarity port vs dlib on the astronaut's face chip (skimage.data.astronaut)."""
    from skimage import data

    chips = dlib_chips(data.astronaut())
    if not chips:
        raise RuntimeError("dlib found no face in skimage.data.astronaut()")
    chips = chips[:1]  # the first (strongest) detection is the astronaut's face
    return float(cosine(port_descriptors(chips), dlib_descriptors(chips))[0])
