"""`facerestore train RECIPE`: train a recipe's generator (and discriminator) into a run folder."""

from __future__ import annotations

import pathlib
import sys
from typing import List, Optional

import typer

from . import user_errors
from .recipe import SET_HELP


def _sigterm_interrupts() -> None:
    """`kill` (SIGTERM) stops a run like Ctrl-C: the trainer saves a checkpoint before exiting."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def register(app: typer.Typer) -> None:
    @app.command("train")
    @user_errors
    def train(
        recipe: pathlib.Path = typer.Argument(..., help="Recipe TOML file (see recipes/)."),
        set_: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
        out: Optional[pathlib.Path] = typer.Option(None, "--out", help="Run folder (default: runs/<recipe name>)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in --out."),
        device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
        steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                            help="Stop this invocation at step N; the LR schedule still follows train.steps."),
        progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                                help="rich progress bar (default: when stderr is a terminal)."),
        tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", help="Write TensorBoard events (tb/)."),
    ) -> None:
        """Train RECIPE: checkpoints (safetensors), log.jsonl, TensorBoard, validation samples in the run folder.

        Under `torchrun --nproc_per_node=N` the processes train together (gloo on CPU, NCCL on CUDA).
        """
        from ..recipe import load_recipe
        from ..train import train as run_training

        r = load_recipe(recipe, set_ or [])
        run_dir = out or pathlib.Path("runs") / r.name
        # at once, before the seconds of imports and model building (click flushes it, terminal or not)
        typer.echo(f"train {r.name}: {r.train.steps} steps x {r.train.batch_size} faces, data "
                   f"{', '.join(map(str, r.data.train))}, device {device}, run folder {run_dir}"
                   + (f", stopping at step {steps}" if steps else ""))
        _sigterm_interrupts()
        show = sys.stderr.isatty() if progress is None else progress
        result = run_training(r, run_dir, device=device, resume=resume, stop_at=steps, progress=show,
                              tensorboard=tensorboard)
        best = f", best validation PSNR {result.best_psnr:.2f} dB" if result.best_psnr is not None else ""
        typer.echo(f"step {result.step}: checkpoint {result.last_checkpoint}{best}")
