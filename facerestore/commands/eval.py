"""`facerestore eval`: score models on one paired set (Markdown table, JSON, comparison grid)."""

from __future__ import annotations

import pathlib
from typing import List, Optional

import typer

from ..defaults import DEFAULT_MODEL
from ..errors import FaceRestoreError

from . import echo_err, user_errors


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @user_errors
    def eval(
        model: List[str] = typer.Option([DEFAULT_MODEL], "--model", "-m", help="Checkpoint (.safetensors), bundled model name, "
                                        "or `bicubic`. Repeat to compare models on the same faces."),
        data: Optional[pathlib.Path] = typer.Option(None, "--data", "-d", help="Paired set written by `facerestore "
                                                    "degrade` (lq/, hq/, occlusion/), or, with --recipe or --protocol, "
                                                    "a folder of faces (default with --protocol: the protocol's faces)."),
        recipe: Optional[pathlib.Path] = typer.Option(None, "--recipe", help="Degrade the faces in --data on the fly "
                                                      "with this recipe's degradation pipeline."),
        protocol: Optional[pathlib.Path] = typer.Option(None, "--protocol", help="Degrade the faces on the fly as this "
                                                        "evaluation protocol says (TOML: degradation, face size, seed, "
                                                        "faces; e.g. benchmarks/protocols/r4.toml)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the on-the-fly degradation (default: 0 "
                                           "with --recipe, the protocol's with --protocol)."),
        json_out: Optional[pathlib.Path] = typer.Option(None, "--json", help="Write all results as JSON here."),
        grid: Optional[pathlib.Path] = typer.Option(None, "--grid", help="Write a comparison PNG: input | models | target."),
        markdown: Optional[pathlib.Path] = typer.Option(None, "--markdown", help="Write the Markdown table here."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N, mps."),
        batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, help="Faces per batch."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N faces (sorted by name)."),
        grid_faces: int = typer.Option(6, "--grid-faces", min=1, help="Rows of the comparison grid."),
        skip: Optional[List[str]] = typer.Option(None, "--skip", help="Metric groups not to compute: lpips, "
                                                 "fd, identity, landmarks, speed (repeatable or comma-separated)."),
        speed_seconds: float = typer.Option(3.0, "--speed-seconds", min=0.0, help="Minimum timing per model "
                                            "for faces/s (batch 16, after 2 warm-up batches)."),
        tta: bool = typer.Option(False, "--tta", help="Score each model as `restore --tta` runs it "
                                 "(mirrored self-ensemble, 2x model time)."),
        fidelity: Optional[float] = typer.Option(None, "--fidelity", "-w", min=0, max=1, help="A generative model's "
                                                 "fidelity: 0 realistic (the default), 1 faithful."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    ) -> None:
        """Evaluate models on a degraded set: PSNR/SSIM (RGB and Y), PSNR inside/outside the
        occlusion, LPIPS, identity similarity and verification, landmark NME, faces/s."""
        import torch

        from .. import evaluate as E
        from ..eval_models import adaptive_model, eval_model
        from ..eval_sets import degrade_faces, load_paired_dir
        from ..device import resolve_device

        log = (lambda s: None) if quiet else echo_err
        dev = resolve_device(device)
        skips = [s.strip() for item in (skip or []) for s in item.split(",") if s.strip()]
        if recipe is not None and protocol is not None:
            raise FaceRestoreError("--recipe and --protocol both say how to degrade the faces: give one")
        if protocol is not None:
            from ..protocols import load_protocol

            p = load_protocol(protocol)
            faces = data if data is not None else p.faces
            log(f"degrading {faces or '(no faces)'} with protocol {p.name!r} ({protocol}, seed "
                f"{p.seed if seed is None else seed}) ...")
            pairs = p.degrade(data, seed=seed, limit=limit, device=dev)
        elif data is None:
            raise FaceRestoreError("--data is required (a paired set, or a face folder with --recipe)")
        elif recipe is not None:
            from ..recipe import load_recipe

            r = load_recipe(recipe)
            seed = 0 if seed is None else seed
            log(f"degrading {data} with {recipe} (seed {seed}) ...")
            pairs = degrade_faces(data, r, seed, limit=limit, device=dev)
        else:
            pairs = load_paired_dir(data, limit=limit)
        scale = pairs.hq_size // pairs.lq_size
        def build(spec: str):
            if (tta or fidelity is not None) and spec != "bicubic":  # scored the way `restore` runs it
                return adaptive_model(spec, pairs.hq_size, dev, tta=tta, fidelity=fidelity or 0.0)
            m = eval_model(spec, dev, scale=scale)
            # a model made for another input size sees the set's inputs resized, as `restore` does it
            return adaptive_model(spec, pairs.hq_size, dev) if m.scale * pairs.lq_size != pairs.hq_size else m

        models = [build(spec) for spec in model]
        names = [m.name for m in models]
        for i, m in enumerate(models):  # two checkpoints with one file name: keep rows apart
            if names.count(m.name) > 1:
                m.name = f"{m.name} ({i + 1})"
        log(f"{len(pairs)} faces {pairs.lq_size}->{pairs.hq_size}px, {len(models)} model(s), device {dev}, "
            f"{torch.get_num_threads()} threads")
        slow = [g for g in ("identity", "landmarks", "speed") if g not in skips]
        if slow:  # dlib's networks dominate: minutes for a few hundred faces on a CPU
            log(f"computing {', '.join(slow)} too: for a quick look, --skip {','.join(slow)}")
        from ..progress import ItemProgress

        with ItemProgress(len(pairs), "eval", unit="faces", quiet=quiet) as bar:
            report = E.evaluate(models, pairs, dev, batch_size=batch_size, skip=skips, grid_faces=grid_faces,
                                speed_seconds=speed_seconds, log=log, progress=bar.advance)
        table = report.to_markdown()
        typer.echo(table, nl=False)
        if markdown is not None:
            markdown.parent.mkdir(parents=True, exist_ok=True)
            markdown.write_text(table)
        if json_out is not None:
            E.write_json(report, json_out)
            log(f"wrote {json_out}")
        if grid is not None:
            E.save_grid(report, grid)
            log(f"wrote {grid}")
