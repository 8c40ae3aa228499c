"""Face detectors and the aligned-face landmark helper on the astronaut's face."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facerestore.interfaces import Detection


@pytest.fixture
def face_crop(astronaut):
    return astronaut[:, 30:230, 130:330].contiguous()  # 200x200 around the face, a fresh copy per test


def _sane_five(pts: torch.Tensor, box: torch.Tensor) -> None:
    le, re, nose, ml, mr = pts
    x1, y1, x2, y2 = box
    assert ((pts[:, 0] >= x1) & (pts[:, 0] <= x2) & (pts[:, 1] >= y1) & (pts[:, 1] <= y2)).all()
    assert le[0] < re[0] and ml[0] < mr[0]  # left/right as seen in the image
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])  # eyes above nose above mouth
    eye_dist = float(re[0] - le[0])
    assert 0.25 * float(x2 - x1) < eye_dist < 0.7 * float(x2 - x1)


def test_mtcnn_finds_astronaut_with_five_landmarks(face_crop):
    pytest.importorskip("facenet_pytorch")
    from facerestore.registry import create

    det = create("detector", "mtcnn")
    noise = torch.rand(3, 120, 160, generator=torch.Generator().manual_seed(0))
    out = det.detect([face_crop, face_crop.flip(-1), noise])
    assert len(out) == 3 and all(isinstance(d, Detection) for d in out)
    d = out[0]
    assert d.boxes.shape[1:] == (4,) and d.landmarks.shape[1:] == (5, 2) and d.scores.shape[0] == d.boxes.shape[0] >= 1
    assert float(d.scores[0]) > 0.95
    _sane_five(d.landmarks[0], d.boxes[0])
    # the face is where we cut it: the eyes around x 75/116, y 72 of the crop (measured once; +-8 px)
    assert torch.allclose(d.landmarks[0, :2], torch.tensor([[75.0, 72.0], [116.0, 73.0]]), atol=8)
    # mirrored image: mirrored landmarks (left/right swap)
    m = out[1].landmarks[0]
    assert torch.allclose(200 - m[1, 0], d.landmarks[0, 0, 0], atol=4)
    assert out[2].boxes.shape == (0, 4) and out[2].landmarks.shape == (0, 5, 2)


def test_dlib_detector_68_points(face_crop):
    pytest.importorskip("dlib", reason="dlib not installed (pip install dlib-bin)")
    from facerestore.errors import MissingWeightsError
    from facerestore.registry import create

    try:
        det = create("detector", "dlib")
    except MissingWeightsError as exc:
        pytest.skip(str(exc))
    (d,) = det.detect([face_crop])
    assert d.landmarks.shape[1:] == (68, 2) and d.boxes.shape[0] >= 1
    from facerestore_plugins.detectors import five_from_68

    _sane_five(five_from_68(d.landmarks[0]), d.boxes[0] + torch.tensor([-10.0, -25, 10, 10]))


def test_aligned_landmarks_batched(face_crop):
    pytest.importorskip("facenet_pytorch")
    from facerestore.pretrained.landmark_tools import aligned_landmarks

    face = F.interpolate(face_crop[None], size=128, mode="bilinear", antialias=True, align_corners=False)
    batch = torch.cat([face, face.flip(-1), torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))])
    pts, found = aligned_landmarks(batch, "mtcnn")
    assert pts.shape == (3, 5, 2) and found.tolist() == [True, True, False]
    assert torch.isnan(pts[2]).all()
    # mirror consistency: the mirrored face's right eye is the original's left eye, mirrored
    assert torch.allclose(128 - pts[1, 1, 0], pts[0, 0, 0], atol=3)
