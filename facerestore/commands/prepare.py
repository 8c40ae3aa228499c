"""`facerestore prepare SRC DST`: align a folder of face photos into training faces."""

from __future__ import annotations

import pathlib
from typing import Optional

import typer

from ..defaults import DEFAULT_DETECTOR
from . import user_errors


def register(app: typer.Typer) -> None:
    @app.command("prepare")
    @user_errors
    def prepare(
        src: pathlib.Path = typer.Argument(..., help="Folder of face photos (recursive)."),
        dst: pathlib.Path = typer.Argument(..., help="Output folder: aligned PNGs + landmarks.json."),
        size: int = typer.Option(256, "--size", min=32, help="Aligned face size in pixels."),
        detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help="Face detector (registry name)."),
        min_score: float = typer.Option(0.95, "--min-score", min=0, max=1, help="Reject faces less confident than this."),
        min_eye: float = typer.Option(28.0, "--min-eye", min=0, help="Reject faces whose eye distance is below PX pixels."),
        max_outside: float = typer.Option(0.15, "--max-outside", min=0, max=1,
                                          help="Reject faces whose aligned crop lies more than this share outside the photo."),
        limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Only the first N files (sorted)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display, no per-file reasons."),
    ) -> None:
        """Align face photos to the training template; reject small, blurred, multi-face, low-score
        faces (each reported with its reason)."""
        from ..device import resolve_device
        from ..io import iter_inputs
        from ..prepare import PrepareRules, prepare_folder
        from ..progress import ItemProgress
        from ..restore import default_detector

        det = default_detector(resolve_device(device), detector)
        rules = PrepareRules(size=size, min_score=min_score, min_eye=min_eye, max_outside=max_outside)
        total = sum(1 for _ in iter_inputs([src]))
        say = (lambda m: None) if quiet else (lambda m: typer.echo(m, err=True))
        with ItemProgress(min(total, limit or total), "prepare", unit="photos", quiet=quiet) as bar:
            res = prepare_folder(src, dst, det, rules, limit=limit, report=say, progress=bar.advance)
        reasons: dict[str, int] = {}
        for _, why in res.rejected:
            key = why.split(":")[0] if not why.startswith("/") else "unreadable"
            reasons[key] = reasons.get(key, 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        typer.echo(f"prepared {len(res.written)} faces into {dst}; rejected {len(res.rejected)}"
                   + (f" ({detail})" if detail else ""))
