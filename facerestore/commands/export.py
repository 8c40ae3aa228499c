"""`facerestore export`: a model's face-restoration graph as ONNX and/or a ``torch.export`` program.

The exported graph takes aligned LQ faces ``(B, 3, h, h)`` in [0, 1] (B dynamic) and returns the
generator's ``sr`` output ``(B, 3, H, H)``, clamped to [0, 1], and ``occlusion`` ``(B, 1, H, H)``,
the model's occlusion estimate at the output size (zeros for a model without one): the region
that ``restore`` replaces in a photo. Detection, alignment and paste-back stay in Python (see
``facerestore.restore``).

Formats: ONNX (TorchScript-based exporter, no extra package needed; run with onnxruntime) and
``.pt2`` (``torch.export``; load with ``torch.export.load(path).module()``). TorchScript
``.pt`` files are not offered: they are pickle-based zips, the kind of file this project refuses
to load.
"""

from __future__ import annotations

import io
import pathlib
from typing import List, Optional

import typer

from ..defaults import DEFAULT_MODEL

from . import user_errors


def sr_module(generator):
    """Wrap a generator so that it returns ``(sr, occlusion)`` tensors (exporters want tensors),
    as ``Restorer`` reads them: ``sr`` clamped, the occlusion map bilinearly at ``sr``'s size."""
    import torch.nn.functional as F
    from torch import nn

    class SROutput(nn.Module):
        def __init__(self, gen: nn.Module):
            super().__init__()
            self.generator = gen

        def forward(self, lq):
            out = self.generator(lq)
            sr = out["sr"].clamp(0, 1)
            occ = out.get("noise_map")
            if occ is None:
                return sr, sr[:, :1] * 0
            occ = F.interpolate(occ, size=sr.shape[-2:], mode="bilinear", align_corners=False)
            return sr, occ.clamp(0, 1)

    return SROutput(generator).eval()


def export_onnx(generator, lq_size: int, path: str | pathlib.Path, opset: int = 17, batch: int = 2) -> pathlib.Path:
    import warnings

    import torch

    from ..checkpoint import atomic_write_bytes

    module = sr_module(generator).cpu()
    example = torch.rand(batch, 3, lq_size, lq_size)
    path = pathlib.Path(path)

    def write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), tmp, dynamo=False, input_names=["lq"],
                              output_names=["sr", "occlusion"], opset_version=opset,
                              dynamic_axes={"lq": {0: "batch"}, "sr": {0: "batch"}, "occlusion": {0: "batch"}},
                              do_constant_folding=True)

    atomic_write_bytes(path, write)
    return path


def export_pt2(generator, lq_size: int, path: str | pathlib.Path, batch: int = 2) -> pathlib.Path:
    import torch

    from ..checkpoint import atomic_write_bytes

    module = sr_module(generator).cpu()
    example = torch.rand(batch, 3, lq_size, lq_size)
    b = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: b},))
    buf = io.BytesIO()  # saved to memory: torch.export.save warns about a temporary file's name
    torch.export.save(program, buf)
    path = pathlib.Path(path)
    atomic_write_bytes(path, lambda tmp: pathlib.Path(tmp).write_bytes(buf.getvalue()))
    return path


def register(app: typer.Typer) -> None:
    @app.command("export")
    @user_errors
    def export(
        models: List[str] = typer.Option([DEFAULT_MODEL], "--model", "-m", help="Model name or .safetensors "
                                         "checkpoint; repeated: their weights averaged (one architecture)."),
        onnx: Optional[pathlib.Path] = typer.Option(None, "--onnx", help="Write an ONNX model here."),
        pt2: Optional[pathlib.Path] = typer.Option(None, "--pt2", help="Write a torch.export program (.pt2) here."),
        opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
        check: bool = typer.Option(True, "--check/--no-check", help="Compare the ONNX output with PyTorch (onnxruntime)."),
        safetensors: Optional[pathlib.Path] = typer.Option(
            None, "--safetensors", help="Write a generator-only checkpoint here (EMA weights and recipe; no "
            "optimiser or discriminator state): what restore/eval need, a fraction of a training checkpoint."),
        half: bool = typer.Option(False, "--half", help="With --safetensors: store weights as float16 "
                                  "(half the size; loaded back as float32)."),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="Change the model's recipe without changing "
                                                 "its weights (KEY.PATH=VALUE, e.g. generator.gate=true); refused if "
                                                 "the weights no longer fit. Repeatable."),
    ) -> None:
        """Export a model's face restoration (aligned LQ faces -> `sr`) to ONNX and/or torch.export."""
        from ..errors import FaceRestoreError
        from ..models import load

        if onnx is None and pt2 is None and safetensors is None:
            raise FaceRestoreError("nothing to do: give --onnx OUT.onnx, --pt2 OUT.pt2 and/or --safetensors OUT")
        m = load(models[0], "cpu")
        generator, recipe, scale, lq = m.generator, m.recipe, m.scale, m.lq_size
        if len(models) > 1:
            from ..checkpoint import average_into

            average_into(generator, same_models(recipe, models), "export --model")
            typer.echo(f"averaged the weights of {len(models)} models")
        if set_:
            generator, recipe = with_recipe_changes(generator, recipe, set_)
            typer.echo(f"recipe changed: {', '.join(set_)}")
        if safetensors is not None:
            export_safetensors(generator, recipe, models, safetensors, half)
            typer.echo(f"wrote {safetensors} ({safetensors.stat().st_size / 1e6:.2f} MB"
                       f"{', float16' if half else ''})")
        if onnx is not None:
            export_onnx(generator, lq, onnx, opset)
            typer.echo(f"wrote {onnx} (input lq: (B, 3, {lq}, {lq}), outputs sr: (B, 3, {lq * scale}, {lq * scale}), "
                       f"occlusion: (B, 1, {lq * scale}, {lq * scale}))")
            if check:
                err = onnx_max_error(generator, lq, onnx)
                if err is None:
                    typer.echo("onnxruntime not installed: output not checked (pip install onnxruntime)")
                else:
                    typer.echo(f"onnxruntime vs PyTorch: max abs difference {err:.2e}")
        if pt2 is not None:
            export_pt2(generator, lq, pt2)
            typer.echo(f"wrote {pt2} (load with torch.export.load(path).module())")


def same_models(recipe, models: list[str]):
    """The generators of ``models[1:]``, loaded one at a time, each checked to be the model of
    ``recipe`` (generator spec, scale, face size): weights of the same shapes can still belong
    to models that compute differently."""
    from ..errors import FaceRestoreError
    from ..models import load

    def key(r):
        return None if r is None else (r.generator, r.scale, r.hq_size)

    for i, m in enumerate(models[1:], 2):
        other = load(m, "cpu")
        if key(other.recipe) != key(recipe):
            raise FaceRestoreError(f"{m}: model {i}'s recipe (generator, scale, face size) differs from "
                                   f"model 1's ({models[0]}): their weights cannot be averaged")
        yield other.generator


def with_recipe_changes(generator, recipe, changes: list[str]):
    """The same weights in the generator of ``recipe`` with ``changes`` applied (settings that do
    not change the parameters, such as ``generator.gate``); a change that does is refused."""
    import json

    from ..checkpoint import load_state_strict
    from ..components import build_generator
    from ..errors import FaceRestoreError
    from ..recipe import load_recipe

    if recipe is None:
        raise FaceRestoreError("--set: a weight-free model has no recipe to change")
    changed = load_recipe(json.loads(recipe.to_json()), list(changes))
    rebuilt = build_generator(changed)
    load_state_strict(rebuilt, generator.state_dict(), "export --set")
    return rebuilt.eval(), changed


def export_safetensors(generator, recipe, sources: str | list[str], path: pathlib.Path, half: bool) -> None:
    """The generator alone, with its recipe and where it came from (the first source's training
    step; every source's file name, joined by `` + `` for an average of several)."""
    from ..checkpoint import read_metadata, save_generator
    from ..errors import FaceRestoreError

    sources = [sources] if isinstance(sources, str) else list(sources)
    if recipe is None:
        raise FaceRestoreError(f"{sources[0]}: a weight-free model has nothing to write as safetensors")
    if path.suffix != ".safetensors":
        raise FaceRestoreError(f"{path}: the output must be a .safetensors file")
    src = pathlib.Path(sources[0])
    meta = read_metadata(src) if src.is_file() else {}
    step = int(meta.get("step", 0) or 0)
    names = [pathlib.Path(s).name if pathlib.Path(s).is_file() else s for s in sources]
    save_generator(path, generator, recipe, step=step, half=half,
                   extra={"exported_from": " + ".join(names), "averaged": str(len(sources)),
                          "dtype": "float16" if half else "float32"})


def onnx_max_error(generator, lq_size: int, path, batch: int = 3, seed: int = 0) -> Optional[float]:
    """Largest absolute difference between onnxruntime and PyTorch on random faces (None without
    onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, lq_size, lq_size, generator=g)
    with torch.no_grad():
        refs = [t.numpy() for t in sr_module(generator).cpu()(x)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["sr", "occlusion"], {"lq": x.numpy()})
    return max(float(abs(g - r).max()) for g, r in zip(got, refs))
