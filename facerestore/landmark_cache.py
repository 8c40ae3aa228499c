"""Five-point landmarks computed once per image and kept in a JSON file beside your data.

Mask placement needs landmarks. Aligned sets (CelebA) do well with the template
(:func:`facerestore.landmarks.template_landmarks` plus jitter), which is the default; for unaligned
faces, :func:`build_landmark_cache` runs a face detector plugin (``mtcnn`` by default) once per
image and stores the points, so no epoch recomputes them.

File format (JSON, version 1)::

    {"format": "facerestore-landmarks", "version": 1, "detector": "mtcnn", "root": "<folder>",
     "points": "x,y in [0,1] of the centre square crop: left eye, right eye, nose, left mouth, right mouth",
     "entries": {"<relative path>": {"sha1": "<first 16 hex of the file's SHA-1>",
                                     "landmarks": [[x, y] * 5] | null}}}

An entry is used only while the file's content hash matches; ``null`` means no face was found
(the template is used). Write the cache where your data lives or next to your run, not into a
shared read-only data folder.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from .errors import FaceRestoreError
from .landmarks import TEMPLATE_5

FORMAT = "facerestore-landmarks"
VERSION = 1


def file_hash(path: str | pathlib.Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def to_five(points: Tensor) -> Tensor:
    """(K, 2) landmarks -> the 5-point convention (68-point dlib/iBUG layouts are converted)."""
    if points.shape[0] == 5:
        return points
    if points.shape[0] == 68:
        return torch.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])
    raise ValueError(f"cannot convert {points.shape[0]} landmarks to 5 points")


class LandmarkCache:
    """Cached landmarks of a folder of images, looked up by path relative to ``root``."""

    def __init__(self, path: str | pathlib.Path, root: str | pathlib.Path | None = None):
        self.path = pathlib.Path(path)
        self.entries: dict[str, dict] = {}
        self.detector = ""
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise FaceRestoreError(f"landmark cache {self.path} is not valid JSON: {exc}") from None
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise FaceRestoreError(f"{self.path} is not a facerestore landmark cache (version {VERSION})")
            self.entries = data.get("entries", {})
            self.detector = data.get("detector", "")
            root = root or data.get("root")
        self.root = pathlib.Path(root).expanduser().resolve() if root else None
        self._hash_ok: dict[str, bool] = {}

    def key(self, file: str | pathlib.Path) -> str:
        p = pathlib.Path(file).expanduser().resolve()
        if self.root is not None:
            try:
                return p.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return p.as_posix()

    def get(self, file: str | pathlib.Path, size: int) -> Tensor:
        """(5, 2) float landmarks in pixels of the ``size`` crop; the template when unknown or stale."""
        key = self.key(file)
        entry = self.entries.get(key)
        if entry is not None and entry.get("landmarks") is not None:
            ok = self._hash_ok.get(key)
            if ok is None:
                ok = self._hash_ok[key] = entry.get("sha1") == file_hash(file)
            if ok:
                return torch.tensor(entry["landmarks"], dtype=torch.float32) * size
        return TEMPLATE_5.clone() * size

    def save(self) -> None:
        data = {"format": FORMAT, "version": VERSION, "detector": self.detector,
                "root": str(self.root) if self.root else "",
                "points": "x,y in [0,1] of the centre square crop: left eye, right eye, nose, left mouth, right mouth",
                "entries": self.entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.path)


def build_landmark_cache(folders: str | pathlib.Path | Sequence[str | pathlib.Path], out: str | pathlib.Path,
                         detector: str = "mtcnn", size: int = 160, batch_size: int = 32,
                         detector_obj: Optional[object] = None) -> LandmarkCache:
    """Detect landmarks of every image under ``folders`` not yet in the cache at ``out`` (or whose
    content changed) and save the cache. ``detector`` names a ``detector`` plugin."""
    from .data import list_images, load_face

    roots = [folders] if isinstance(folders, (str, pathlib.Path)) else list(folders)
    root = pathlib.Path(roots[0]).expanduser().resolve() if len(roots) == 1 else None
    cache = LandmarkCache(out, root)
    if detector_obj is None:
        from .components import default_registry

        reg = default_registry()
        if ("detector", detector) not in reg:
            raise FaceRestoreError(f"no face detector {detector!r} is installed (known: {', '.join(reg.names('detector')) or 'none'}); "
                                   "without landmarks, masks are placed on the aligned-face template")
        detector_obj = reg.create("detector", detector)
    cache.detector = detector
    files = list_images(roots)
    todo = []
    for f in files:
        e = cache.entries.get(cache.key(f))
        h = file_hash(f)
        if e is None or e.get("sha1") != h:
            todo.append((f, h))
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        imgs = [load_face(f, size).float() / 255 for f, _ in chunk]
        dets = detector_obj.detect(imgs)  # type: ignore[attr-defined]
        for (f, h), det in zip(chunk, dets):
            pts = None
            if det.landmarks.numel():
                best = int(det.scores.argmax())
                pts = (to_five(det.landmarks[best].float()) / size).tolist()
            cache.entries[cache.key(f)] = {"sha1": h, "landmarks": pts}
    cache.save()
    return cache
