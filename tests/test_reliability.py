"""Reliability: bad inputs through every reader, untrusted model files, fuzzed recipes, killed and
disk-full training runs. The cases and what each tool does are tabled in docs/reliability.md.

Everything is generated here (tests/badinputs.py builds the image corpus); nothing is downloaded.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
import tomllib
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

import badinputs
from facerestore.cli import app
from facerestore.errors import RecipeError
from facerestore.recipe import load_recipe

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.toml"))


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def no_traceback(result) -> None:
    text = result.output + (getattr(result, "stderr", "") if result.stderr_bytes is not None else "")
    assert "Traceback" not in text, text
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unhandled {type(result.exception).__name__}: {result.exception}") from result.exception


# ============================================================================================
# 3. Recipes: property-based mutations of every shipped recipe
# ============================================================================================
def _paths(node, prefix=()):
    """Every (path, value) in a TOML-shaped tree; a path is a tuple of keys and list indices."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


#: the values most likely to slip through: huge (beyond float range), negative, non-finite, units
NASTY = [0, -1, 1, -0.5, 2 ** 63, 10 ** 400, -(10 ** 400), 1e308, float("nan"), float("inf"), float("-inf"),
         "10px", "0.5s", "1e-4", "nan", "", True, None]
NUMBERS = [10 ** 400, -(10 ** 400), 2 ** 63, 10 ** 12, -1, -0.5, 0, 1e308, -1e308, float("nan"), float("inf"),
           float("-inf"), "10px", "0.5", "3 px", [1, 2, 3], {"min": 1}]
scalars = st.one_of(
    st.sampled_from(NASTY),
    st.sampled_from(NASTY),  # twice: half of all drawn scalars are nasty
    st.booleans(),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["cbam", "../../etc/passwd", "x" * 300, "ñ顔"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(["type", "x", "channels", "sigma"]),
                                                                       inner, max_size=3)),
                      max_leaves=6)
OPS = ("delete", "replace", "replace", "replace", "add_key", "to_scalar", "to_table", "to_list", "rename_type")


@st.composite
def mutated_recipes(draw):
    path = draw(st.sampled_from(RECIPES))
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):  # mostly one: later errors stay reachable
        spots = [p for p, _ in _paths(data)]
        numbers = [p for p, v in _paths(data) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        pick = draw(st.sampled_from(["number", "any", "any"])) if numbers else "any"
        where = draw(st.sampled_from(numbers if pick == "number" else spots))
        op = draw(st.sampled_from(OPS))
        if not where:  # the root: only add a key
            data[draw(st.sampled_from(["extra", "nam", "Name"]))] = draw(values)
            continue
        parent, key = _get(data, where[:-1]), where[-1]
        current = parent[key]
        if isinstance(current, (int, float)) and not isinstance(current, bool) and draw(st.booleans()):
            op = "number"  # half of the numeric leaves get a wrong number: huge, negative, NaN, a unit
        if op == "number":
            parent[key] = copy.deepcopy(draw(st.sampled_from(NUMBERS)))  # NUMBERS holds a list and a table
        elif op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(values)
        elif op == "add_key" and isinstance(current, dict):
            current[draw(st.sampled_from(["unknown", "typ", "steps_", "Type"]))] = draw(values)
        elif op == "to_scalar":
            parent[key] = draw(scalars)
        elif op == "to_table":
            parent[key] = {"value": current} if not isinstance(current, dict) else {"type": current}
        elif op == "to_list":
            parent[key] = [current]
        elif op == "rename_type" and isinstance(current, dict) and "type" in current:
            current["type"] = draw(st.sampled_from(["nope", "", "CBAM", 3, "jdsr_sr "]))
        else:
            parent[key] = draw(values)
    return path.name, data


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_recipes())
def test_mutated_recipes_fail_only_with_recipe_errors(case):
    name, data = case
    try:
        load_recipe(copy.deepcopy(data))
    except RecipeError as exc:
        assert exc.path, f"{name}: RecipeError without a path: {exc}"
        assert "\n" not in str(exc)
    # any other exception propagates and fails the test, with hypothesis' minimal example


# ============================================================================================
# 1. Bad inputs through restore, degrade, eval and the training loader
# ============================================================================================
#: the corpus cases (tests/badinputs.py builds them; test_corpus_is_complete keeps this in step)
CASES = ["zero_byte", "truncated_jpeg", "truncated_png", "wrong_extension", "text_as_png", "one_pixel",
         "bomb_header", "bomb_1bit", "huge_12k", "gray16", "rgb16", "palette", "palette_transparent", "cmyk",
         "rgba", "grayscale", "bilevel", "exif_rotated", "animated_gif", "animated_webp", "unicode_path",
         "unreadable", "symlink_loop"]
#: extensions the training loader (and so `degrade` / `eval --recipe`) lists in folders
LOADER_EXTS = (".jpg", ".jpeg", ".png", ".webp")
GOOD = 3

TINY_RECIPE = """
name = "tiny_reliability"
scale = 2
hq_size = 16

[data]
train = [{train!r}]
val = ""
workers = 0

[[degradation]]
type = "downscale"
scale = 2

[generator]
type = "sr_only"

[generator.upsampler]
type = "jdsr_sr"
channels = 8
blocks = 1
scale = 2
landmarks = 0
prior_channels = 4

[generator.upsampler.attention]
type = "identity"

[[loss]]
type = "pixel"
on = "sr"

[train]
steps = {steps}
batch_size = 2
lr = 1e-3
warmup_steps = 0
log_every = 1
val_every = 100000
ckpt_every = {ckpt_every}
keep_last = 2
amp = false
channels_last = false
"""


def write_recipe(folder: pathlib.Path, train_dir: pathlib.Path, steps: int = 1000, ckpt_every: int = 1) -> pathlib.Path:
    path = folder / "tiny.toml"
    path.write_text(TINY_RECIPE.format(train=str(train_dir).replace("\\", "/"), steps=steps, ckpt_every=ckpt_every))
    return path


class OneFaceDetector:
    """Finds one face in the middle of every photo (the real MTCNN needs weights and time)."""

    def detect(self, images):
        from facerestore.interfaces import Detection
        from facerestore.landmarks import TEMPLATE_5

        out = []
        for im in images:
            h, w = im.shape[-2:]
            s = float(min(h, w))
            lm = TEMPLATE_5.clone() * s + torch.tensor([(w - s) / 2, (h - s) / 2])
            out.append(Detection(boxes=torch.tensor([[0.0, 0.0, w, h]]), scores=torch.tensor([0.99]),
                                 landmarks=lm.unsqueeze(0)))
        return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "corpus"
    cases = badinputs.build_corpus(root)
    badinputs.write_good(root, GOOD)
    yield root, {c.name: c for c in cases}
    badinputs.unlock(cases)


def _case(corpus, name):
    root, cases = corpus
    c = cases[name]
    if c.needs:
        pytest.skip(c.needs)
    return root, c


def _decodable(c) -> bool:
    """Readable here: a readable case, or the permissions case when root reads it anyway."""
    if not c.listed or not c.path.exists():
        return False
    return c.readable if not c.needs else os.access(c.path, os.R_OK)


def _lines_naming(text: str, path: pathlib.Path) -> list[str]:
    return [line for line in text.splitlines() if path.name in line]


def test_corpus_is_complete(corpus):
    root, cases = corpus
    assert list(cases) == CASES
    assert all(c.path.exists() or c.needs for c in cases.values())
    # the crafted PNGs claim 20000x20000 / 12000x12000 without being big on disk
    assert cases["bomb_1bit"].path.stat().st_size < 200_000 and cases["bomb_header"].path.stat().st_size < 1000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(cases["huge_12k"].path) as im:
            assert im.size == (12000, 12000)


# -- restore ---------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["photos", "aligned"])
def restored(request, corpus, tmp_path_factory):
    import facerestore.restore as restore_mod

    root, _ = corpus
    out = tmp_path_factory.mktemp(f"restored_{request.param}")
    mp = pytest.MonkeyPatch()
    mp.setattr(restore_mod, "default_detector", lambda device="cpu", name="mtcnn": OneFaceDetector())
    try:
        extra = ["--aligned"] if request.param == "aligned" else []
        res = cli("restore", root, "-o", out, "--model", "bicubic", "--device", "cpu", *extra)
    finally:
        mp.undo()
    return request.param, res, out


def test_restore_batch_summary(restored, corpus):
    mode, res, out = restored
    no_traceback(res)
    refused = sum(1 for c in corpus[1].values() if not c.readable and not c.needs)
    assert res.exit_code == 1, res.output  # some inputs failed, the others were written
    if mode == "photos":
        assert f"{refused} failed" in res.output, res.output
    for p in badinputs.write_good(out / "_ref", GOOD):  # the ordinary files of the batch were all restored
        assert (out / "corpus" / p.name).is_file()


@pytest.mark.parametrize("name", CASES)
def test_restore_handles(name, restored, corpus):
    from facerestore.io import output_extension

    mode, res, out = restored
    root, case = _case(corpus, name)
    if not case.listed:  # the symlink loop: the walk ended (we are here) and nothing was doubled
        assert not any("again" in p.parts for p in out.rglob("*")), sorted(out.rglob("*"))
        return
    rel = case.path.relative_to(root)
    target = out / "corpus" / rel.with_suffix(output_extension(rel))
    named = _lines_naming(res.output, case.path)
    if case.readable:
        assert target.is_file(), res.output
        assert not [line for line in named if line.startswith("error:")], named
        with Image.open(target) as im:
            im.load()
            if mode == "aligned":  # square, at least the model's output size (larger crops keep theirs)
                assert im.size[0] == im.size[1] >= 128
    else:
        assert not target.exists()
        errors = [line for line in named if line.startswith("error:")]
        assert len(errors) == 1 and str(case.path) in errors[0], res.output


def test_restore_refuses_bombs_before_decoding(corpus):
    """The pixel limit is checked on the header: no 1.2 GB allocation, and it says how to allow it."""
    from facerestore.errors import InputImageError
    from facerestore.io import read_image

    _, cases = corpus
    bombs = [str(cases[name].path) for name in ("bomb_header", "bomb_1bit", "huge_12k")]
    for path in bombs:
        t0 = time.perf_counter()
        with pytest.raises(InputImageError, match="pixels") as exc:
            read_image(path)
        assert time.perf_counter() - t0 < 2.0
        assert path in str(exc.value) and "\n" not in str(exc.value)
    code = ("from facerestore.io import read_image\n"
            f"for p in {bombs!r}:\n"
            "    try:\n        read_image(p)\n    except Exception:\n        pass\n")
    grown_mb = _peak_growth_mb(code)
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB"


def _peak_growth_mb(code: str) -> float:
    """Peak resident memory that ``code`` adds, measured in a fresh Python (after its imports):
    this process's high-water mark is already raised by earlier tests and cannot show it."""
    probe = ("import resource, torch, facerestore.io, facerestore.data\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n" + code +
             "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


# -- training loader -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded(corpus):
    from facerestore.data import FaceFolder, make_loader

    root, _ = corpus
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = make_loader(root, hq_size=16, batch_size=4, workers=0, shuffle=False, drop_last=False)
        ds: FaceFolder = loader.dataset
        batches = list(loader)
    grown_mb = _peak_growth_mb("import warnings\nfrom facerestore.data import make_loader\n"
                               "warnings.simplefilter('ignore')\n"
                               f"list(make_loader({str(root)!r}, hq_size=16, batch_size=4, workers=0, "
                               "shuffle=False, drop_last=False))\n")
    indices = [int(i) for b in batches for i in b["index"]]
    images = torch.cat([b["hq"] for b in batches])
    return ds, indices, images, [str(w.message) for w in caught], grown_mb


def test_loader_batch(loaded):
    ds, indices, images, messages, grown_mb = loaded
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 16, 16)
    assert len(indices) == len(ds)  # every slot filled: a broken file is replaced by the next readable one
    assert all(i not in ds._bad for i in indices)
    assert all("\n" not in m for m in messages)
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB while reading the corpus"


@pytest.mark.parametrize("name", CASES)
def test_loader_handles(name, loaded, corpus):
    ds, indices, images, messages, _ = loaded
    root, case = _case(corpus, name)
    files = [pathlib.Path(f) for f in ds.files]
    if not case.listed:
        assert not any("again" in f.parts for f in files)
        return
    if case.path.suffix.lower() not in LOADER_EXTS:
        assert case.path not in files  # documented: the loader lists only its extensions
        return
    i = files.index(case.path)
    named = [m for m in messages if str(case.path) in m]
    if case.readable:
        assert i in indices and not named, named
    else:
        assert i not in indices and len(named) == 1 and "skipping unreadable image" in named[0], messages


def test_loader_reads_odd_formats_correctly(corpus):
    """Not only 'no crash': 16-bit grayscale keeps its values, EXIF orientation is applied."""
    from facerestore.data import load_face

    _, cases = corpus
    g16 = load_face(cases["gray16"].path, badinputs.SIZE).float()
    ref = torch.from_numpy(badinputs.face(seed=5)[..., 0].astype(np.float32))
    assert (g16[0] - ref).abs().max() <= 1  # was all-white (Pillow clips I;16 -> RGB)
    upright = badinputs.face(badinputs.SIZE, seed=8)[:, : badinputs.SIZE // 2]  # 48 tall, 24 wide
    s = upright.shape[1]
    top = (upright.shape[0] - s) // 2
    want = torch.from_numpy(upright[top:top + s].astype(np.float32)).permute(2, 0, 1)
    got = load_face(cases["exif_rotated"].path, s).float()
    assert (got - want).abs().mean() < 12, (got - want).abs().mean()  # JPEG error only, not a rotation


# -- degrade ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def degraded(corpus, tmp_path_factory):
    root, _ = corpus
    work = tmp_path_factory.mktemp("degraded")
    recipe = write_recipe(work, root)
    res = cli("degrade", root, work / "set", "--recipe", recipe, "--batch-size", "4")
    manifest = json.loads((work / "set" / "manifest.json").read_text()) if res.exit_code == 0 else {}
    return res, manifest, work / "set"


@pytest.mark.parametrize("name", CASES)
def test_degrade_handles(name, degraded, corpus):
    res, manifest, out = degraded
    no_traceback(res)
    assert res.exit_code == 0, res.output
    root, case = _case(corpus, name)
    sources = [f.get("source", f.get("stem")) for f in manifest["files"]]
    if not case.listed:
        assert not any("again" in str(s) for s in sources)
        return
    rel = case.path.relative_to(root).as_posix()
    named = _lines_naming(res.output, case.path)
    if case.path.suffix.lower() not in LOADER_EXTS:
        assert rel not in sources and not named
    elif case.readable:
        assert rel in sources, sources
    else:
        assert rel not in sources
        assert len(named) == 1 and named[0].startswith("warning:") and str(case.path) in named[0], res.output


def test_degrade_wrote_the_rest(degraded, corpus):
    res, manifest, out = degraded
    root, cases = corpus
    expected = GOOD + sum(1 for c in cases.values() if _decodable(c) and c.path.suffix.lower() in LOADER_EXTS)
    assert manifest["count"] == expected == len(list((out / "hq").glob("*.png")))


# -- eval ------------------------------------------------------------------------------------
def _eval(*args):
    return cli("eval", "--model", "bicubic", "--device", "cpu", "--skip", "lpips,identity,landmarks,speed",
               "--quiet", *args)


def test_eval_on_the_corpus_folder(corpus, tmp_path):
    """`eval --recipe` degrades a face folder on the fly: unreadable files skipped, each named once,
    and no face counted twice (the loader's stand-in for a broken file is not scored again)."""
    root, cases = corpus
    recipe = write_recipe(tmp_path, root)
    res = _eval("--data", root, "--recipe", recipe, "--json", tmp_path / "r.json")
    no_traceback(res)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    readable = [c for c in cases.values() if _decodable(c) and c.path.suffix.lower() in LOADER_EXTS]
    assert report["models"][0]["counts"]["psnr"] == GOOD + len(readable), report["models"][0]
    for c in cases.values():
        if not c.readable and not c.needs:
            named = [line for line in _lines_naming(res.output, c.path) if line.startswith("warning:")]
            assert len(named) == 1, (c.name, res.output)


def test_eval_paired_set_with_broken_files(corpus, tmp_path):
    """A paired set with a truncated HQ file and an empty LQ file: both pairs are skipped with one
    warning line each, the other faces are scored, the report lists the skipped stems."""
    root, _ = corpus
    good = tmp_path / "faces"
    badinputs.write_good(good, 6)
    recipe = write_recipe(tmp_path, good)
    assert cli("degrade", good, tmp_path / "set", "--recipe", recipe).exit_code == 0
    hq = sorted((tmp_path / "set" / "hq").glob("*.png"))
    hq[1].write_bytes(hq[1].read_bytes()[:40])
    lq = sorted((tmp_path / "set" / "lq").glob("*.png"))
    lq[3].write_bytes(b"")
    res = _eval("--data", tmp_path / "set", "--json", tmp_path / "r.json")
    no_traceback(res)
    assert res.exit_code == 0, res.output
    warned = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(warned) == 2 and hq[1].stem in warned[0] and lq[3].stem in warned[1], res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["data"]["skipped_unreadable"] == [hq[1].stem, lq[3].stem], report["data"]
    assert report["models"][0]["counts"]["psnr"] == 4


# ============================================================================================
# 2. Model files: safetensors only, tensors checked against the recipe, damage reported in one line
# ============================================================================================
@pytest.fixture(scope="module")
def model_files(tmp_path_factory, corpus):
    """A good tiny checkpoint, one whose metadata recipe disagrees with its tensors, legacy
    pickles, and damaged safetensors files; plus a one-face paired set to evaluate on."""
    from facerestore.checkpoint import save_generator, save_tensors
    from facerestore.components import default_registry

    root, _ = corpus
    work = tmp_path_factory.mktemp("models")
    recipe = load_recipe(write_recipe(work, root))
    torch.manual_seed(0)
    gen = default_registry().build("generator", recipe.generator, "generator")
    files = {"good": work / "good.safetensors"}
    save_generator(files["good"], gen, recipe)
    # the metadata says 12 channels, the tensors were made with 8
    wider = copy.deepcopy(recipe)
    wider.generator["upsampler"]["channels"] = 12
    files["mismatch"] = work / "mismatch.safetensors"
    save_generator(files["mismatch"], gen, wider)
    # metadata and shapes agree, one tensor is missing
    sd = {f"generator.{k}": v for k, v in gen.state_dict().items()}
    missing = sorted(sd)[0]
    files["missing"] = work / "missing.safetensors"
    save_tensors(files["missing"], {k: v for k, v in sd.items() if k != missing},
                 {"recipe": recipe.to_json(), "contents": "generator"})
    for suffix in (".pt", ".pth", ".ckpt"):
        files[suffix] = work / f"legacy{suffix}"
        torch.save(gen.state_dict(), files[suffix])
    data = files["good"].read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "truncated_header": data[:40],
        "zero_byte": b"",
        "garbage_header": len(b"{not json").to_bytes(8, "little") + b"{not json" + b"\0" * 64,
        "header_not_table": len(b"[1, 2]").to_bytes(8, "little") + b"[1, 2]" + b"\0" * 64,
        "bad_offsets": _bad_offsets(data),
        "random_bytes": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "no_recipe": _no_recipe(work, gen),
    }
    for name, blob in damaged.items():
        files[name] = work / f"{name}.safetensors"
        files[name].write_bytes(blob)
    good_faces = work / "faces"
    badinputs.write_good(good_faces, 2)
    assert cli("degrade", good_faces, work / "set", "--recipe", work / "tiny.toml").exit_code == 0
    return files, missing, work


def _bad_offsets(data: bytes) -> bytes:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key]["data_offsets"] = [0, 10 ** 12]  # points far beyond the end of the file
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data[8 + n:]


def _no_recipe(work: pathlib.Path, gen) -> bytes:
    from safetensors.torch import save_file

    p = work / "_plain.safetensors"
    save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(p))
    return p.read_bytes()


def _restore_with(model: pathlib.Path, corpus, tmp_path):
    root, cases = corpus
    return cli("restore", root / "good_0.png", "-o", tmp_path / "out", "--model", model, "--aligned",
               "--device", "cpu")


def test_good_checkpoint_restores_and_evaluates(model_files, corpus, tmp_path):
    files, _, work = model_files
    res = _restore_with(files["good"], corpus, tmp_path)
    assert res.exit_code == 0, res.output
    assert _eval_model(files["good"], work).exit_code == 0


def _eval_model(model, work):
    return cli("eval", "--model", model, "--data", work / "set", "--device", "cpu", "--quiet",
               "--skip", "lpips,identity,landmarks,speed")


@pytest.mark.parametrize("command", ["restore", "eval"])
def test_mismatching_tensors_name_the_first_one(command, model_files, corpus, tmp_path):
    files, missing, work = model_files
    for name, expect in (("mismatch", r"tensor '[\w.]+' has shape \(8, .*expects \(12, "),
                         ("missing", f"tensor '{missing[len('generator.'):]}' missing")):
        res = _restore_with(files[name], corpus, tmp_path) if command == "restore" else _eval_model(files[name], work)
        no_traceback(res)
        assert res.exit_code == 2, res.output
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and name in errors[0], res.output
        import re

        assert re.search(expect, errors[0]), errors[0]


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
@pytest.mark.parametrize("command", ["restore", "eval"])
def test_pickle_checkpoints_refused_with_convert_instructions(suffix, command, model_files, corpus, tmp_path,
                                                              monkeypatch):
    """Never unpickled (torch.load is not even called); the message gives the convert command."""
    files, _, work = model_files

    def forbidden(*a, **k):
        raise AssertionError("torch.load called on an untrusted file")

    monkeypatch.setattr(torch, "load", forbidden)
    res = _restore_with(files[suffix], corpus, tmp_path) if command == "restore" else _eval_model(files[suffix], work)
    no_traceback(res)
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"facerestore convert {files[suffix]}" in errors[0], res.output


@pytest.mark.parametrize("name", ["truncated", "truncated_header", "zero_byte", "garbage_header",
                                  "header_not_table", "bad_offsets", "random_bytes", "no_recipe"])
def test_damaged_safetensors_one_line_error(name, model_files, corpus, tmp_path):
    files, _, work = model_files
    res = _restore_with(files[name], corpus, tmp_path)
    no_traceback(res)
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(files[name]) in errors[0], res.output


# ============================================================================================
# 4. Training: kill -9 and resume, disk full during a checkpoint write
# ============================================================================================
def _checkpoints_all_load(run: pathlib.Path) -> list[str]:
    """Every *.safetensors in the run folder loads completely (tensors and metadata)."""
    from facerestore.checkpoint import load_tensors

    names = []
    for p in sorted(run.glob("*.safetensors")):
        tensors, meta = load_tensors(p)
        assert tensors and meta.get("recipe"), p
        names.append(p.name)
    return names


def _log_lines(run: pathlib.Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX kill -9")
def test_kill_9_then_resume(tmp_path):
    """`facerestore train` killed with SIGKILL at random moments (a checkpoint is written every
    step, so kills land in and around writes), then `--resume`: every checkpoint file always
    loads, no log line is torn, and training continues from the last checkpoint to the end."""
    faces = tmp_path / "faces"
    badinputs.write_good(faces, 8, size=24)
    recipe = write_recipe(tmp_path, faces, steps=10_000, ckpt_every=1)
    run = tmp_path / "run"
    exe = [sys.executable, "-m", "facerestore.cli", "train", str(recipe), "--out", str(run), "--device", "cpu",
           "--no-progress", "--no-tensorboard"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    rng = random.Random(1234)
    seen_steps = []
    for attempt in range(3):
        cmd = exe + (["--resume"] if attempt else [])
        before = max((r["step"] for r in _log_lines(run) if r.get("event") == "train"), default=0)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300  # generous for a loaded machine; ~3 s when idle
        while True:  # wait until it has trained (and checkpointed) a few steps past `before`
            done = max((r["step"] for r in _log_lines(run) if r.get("event") == "train"), default=0)
            if (done >= before + 2 and list(run.glob("ckpt_*.safetensors"))) or proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no training progress within 300 s: {proc.communicate()[0]}")
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(rng.uniform(0.0, 0.4))  # a random moment inside the step/checkpoint cycle
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, out
        if attempt:
            assert "resumed from" in out, out
        assert _checkpoints_all_load(run), out
        steps = [r["step"] for r in _log_lines(run) if r.get("event") == "train"]
        assert steps, out
        seen_steps.append(max(steps))
    # the last resume runs to an end (--steps: this invocation stops there) and finishes cleanly
    final = subprocess.run(exe + ["--resume", "--steps", str(seen_steps[-1] + 3)], env=env, capture_output=True,
                           text=True, timeout=120)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "resumed from" in final.stdout
    from facerestore.checkpoint import read_metadata

    assert int(read_metadata(run / "last.safetensors")["step"]) == seen_steps[-1] + 3
    assert seen_steps == sorted(seen_steps) and seen_steps[0] >= 2
    _checkpoints_all_load(run)
    assert not list(run.glob(".*.tmp"))  # temporary files of killed writes are cleared on resume


def test_disk_full_during_checkpoint_write(tmp_path, monkeypatch):
    """ENOSPC in the middle of writing a checkpoint: a one-line error (exit 2) that says what
    happened and where the last good checkpoint is; the previous files are byte-identical and no
    temporary file is left behind; `--resume` then continues from that checkpoint."""
    import safetensors.torch

    faces = tmp_path / "faces"
    badinputs.write_good(faces, 6, size=24)
    recipe = write_recipe(tmp_path, faces, steps=6, ckpt_every=2)
    run = tmp_path / "run"
    args = ["train", recipe, "--out", run, "--device", "cpu", "--no-progress", "--no-tensorboard"]
    res = cli(*args, "--steps", "2")
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in run.glob("*.safetensors")}
    real_save = safetensors.torch.save_file

    def disk_full(tensors, path, metadata=None):
        with open(path, "wb") as fh:
            fh.write(b"\0" * 1000)  # part of the file reached the disk, then it filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    res = cli(*args, "--resume")
    no_traceback(res)
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    assert "No space left on device" in errors[0] and "ckpt_00000004" in errors[0]
    assert "Last good checkpoint" in errors[0] and "--resume" in errors[0]
    assert {p.name: p.read_bytes() for p in run.glob("*.safetensors")} == before
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    res = cli(*args, "--resume")
    assert res.exit_code == 0 and "resumed from" in res.output, res.output
    _checkpoints_all_load(run)


def test_train_says_what_it_will_do_at_once(tmp_path):
    """Off a terminal, `train` prints its plan as its first line (before the imports and the model
    build), then the data, device and precision, then a log line per `log_every` steps."""
    faces = tmp_path / "faces"
    badinputs.write_good(faces, 6, size=24)
    recipe = write_recipe(tmp_path, faces, steps=4)
    res = cli("train", recipe, "--out", tmp_path / "run", "--device", "cpu", "--no-progress", "--no-tensorboard",
              "--steps", "2")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("train tiny_reliability: 4 steps x 2 faces") and "device cpu" in lines[0] and str(faces) in lines[0]
    assert "stopping at step 2" in lines[0]
    assert any(line.startswith("6 training faces; device cpu, ") and "from step 0 to 2" in line for line in lines), lines
    assert any(line.startswith("step 2/2 ") for line in lines), lines
