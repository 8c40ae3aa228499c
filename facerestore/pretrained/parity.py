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
    rects, scores, _ = det.run(img, upsample, 0.0)
    shapes = dlib.full_object_detections()
    for i in sorted(range(len(rects)), key=lambda i: -scores[i]):  # strongest face first
        shapes.append(sp(img, rects[i]))
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


def astronaut_variants():
    """(name, RGB uint8 image) pairs: the astronaut photo (cropped around her face) under
    geometric and photometric changes. Each yields a different real face chip once dlib cuts it."""
    from PIL import Image, ImageEnhance, ImageFilter
    from skimage import data

    a = np.ascontiguousarray(data.astronaut()[0:320, 60:380])  # the face is at x 175-265, y 76-166
    pil = Image.fromarray(a)
    yield "original", a
    yield "mirror", np.ascontiguousarray(a[:, ::-1])
    for s in (0.8, 1.25):
        yield f"scale {s}", np.asarray(pil.resize((int(320 * s),) * 2, Image.BICUBIC))
    for ang in (-10, -5, 5, 10):
        yield f"rotate {ang}", np.asarray(pil.rotate(ang, resample=Image.BICUBIC, center=(160, 120)))
    yield "shift 7,3", np.ascontiguousarray(a[23:, 47:])
    noise = np.random.default_rng(0).normal(0, 6, a.shape)
    yield "noise 6", np.clip(a + noise, 0, 255).astype(np.uint8)
    for b in (0.7, 1.3):
        yield f"brightness {b}", np.asarray(ImageEnhance.Brightness(pil).enhance(b))
    for c in (0.6, 1.4):
        yield f"contrast {c}", np.asarray(ImageEnhance.Contrast(pil).enhance(c))
    yield "grey", np.ascontiguousarray(np.stack([np.asarray(pil.convert("L"))] * 3, -1))
    yield "colour cast", np.clip(a * np.array([1.1, 0.95, 0.85]), 0, 255).astype(np.uint8)
    yield "gamma 0.7", (255 * (a / 255.0) ** 0.7).astype(np.uint8)
    yield "saturation 1.6", np.asarray(ImageEnhance.Color(pil).enhance(1.6))
    yield "blur 1.5", np.asarray(pil.filter(ImageFilter.GaussianBlur(1.5)))
    yield "mirror+scale", np.asarray(pil.transpose(Image.FLIP_LEFT_RIGHT).resize((260, 260), Image.BICUBIC))
    yield "sharpen", np.asarray(pil.filter(ImageFilter.SHARPEN))


def astronaut_chips() -> list[tuple[str, np.ndarray]]:
    """dlib's 150x150 chips of :func:`astronaut_variants` (the strongest face of each)."""
    out = []
    for name, img in astronaut_variants():
        chips = dlib_chips(np.ascontiguousarray(img), upsample=0)
        if chips:
            out.append((name, chips[0]))
    return out


def astronaut_parity() -> float:
    """Cosine similarity port vs dlib on the astronaut's face chip (skimage.data.astronaut)."""
    from skimage import data

    chips = dlib_chips(data.astronaut())
    if not chips:
        raise RuntimeError("dlib found no face in skimage.data.astronaut()")
    chips = chips[:1]  # the first (strongest) detection is the astronaut's face
    return float(cosine(port_descriptors(chips), dlib_descriptors(chips))[0])
