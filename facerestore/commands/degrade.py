"""`facerestore degrade`: a fixed paired evaluation set from a folder of faces."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import user_errors


def register(app: typer.Typer) -> None:
    @app.command("degrade")
    @user_errors
    def degrade(
        src: Path = typer.Argument(..., help="Folder of face images (searched recursively)."),
        out: Path = typer.Argument(..., help="Output folder: lq/, lq_clean/, hq/, occlusion/, occlusion_hq/, manifest.json."),
        recipe: Path = typer.Option(..., "--recipe", "-r", help="Recipe whose [[degradation]] steps (and hq_size) are used."),
        seed: int = typer.Option(0, "--seed", help="Random seed: the same seed, device and batch size give the same set."),
        limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Only the first N images (sorted)."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 ... ('auto' = cuda if available)."),
        batch_size: int = typer.Option(32, "--batch-size", min=1, help="Faces degraded together."),
        landmarks: Optional[Path] = typer.Option(None, "--landmarks", help="Landmark cache JSON (default: aligned template)."),
        grid: Optional[Path] = typer.Option(None, "--grid", help="Also write a before/after PNG of the first 16 faces."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
        replace: bool = typer.Option(False, "--replace", help="Replace the paired set already in OUT "
                                     "(by default a non-empty OUT is refused)."),
    ) -> None:
        """Degrade faces once (masks, blur, downscale, noise, JPEG) and write a paired set for evaluation."""
        import torch

        from ..degrade import degrade_folder
        from ..errors import FaceRestoreError

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise FaceRestoreError(f"--device {device}: CUDA is not available here")
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
        from ..data import list_images
        from ..progress import ItemProgress

        total = len(list_images(src))
        with ItemProgress(min(total, limit or total), "degrade", unit="faces", quiet=quiet) as bar:
            m = degrade_folder(src, out, recipe, seed=seed, limit=limit, device=device, batch_size=batch_size,
                               landmark_cache=landmarks, grid=grid, progress=bar.advance, replace=replace)
        typer.echo(f"wrote {m['count']} pairs ({m['hq_size']}px -> {m['lq_size']}px, seed {seed}) to {out}")
        if grid is not None:
            typer.echo(f"grid: {grid}")
