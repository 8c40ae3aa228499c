"""`facerestore convert`: a legacy PyTorch checkpoint (.pt/.pth) -> a self-describing safetensors file."""

from __future__ import annotations

import pathlib
from typing import List, Optional

import typer

from . import user_errors

#: where BasicSR/GFPGAN/CodeFormer-style checkpoints keep the generator weights, in order of preference
STATE_KEYS = ("params_ema", "ema", "params", "state_dict", "generator", "model", "net_g")


def register(app: typer.Typer) -> None:
    @app.command("convert")
    @user_errors
    def convert(
        src: pathlib.Path = typer.Argument(..., help="Legacy checkpoint (.pt/.pth/.ckpt)."),
        dst: pathlib.Path = typer.Argument(..., help="Output .safetensors file."),
        recipe: pathlib.Path = typer.Option(..., "--recipe", "-r", help="Recipe whose generator these weights belong to."),
        key: Optional[str] = typer.Option(None, "--key", help="Entry holding the state dict (default: first of "
                                          + ", ".join(STATE_KEYS) + ", or the file itself)."),
        strip_prefix: str = typer.Option("module.", "--strip-prefix", help="Prefix removed from tensor names (DDP)."),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="Recipe override KEY.PATH=VALUE."),
    ) -> None:
        """Convert a pickle checkpoint with torch.load(weights_only=True) (no code runs) to safetensors."""
        from ..checkpoint import load_state_strict, save_generator
        from ..errors import CheckpointError
        from ..recipe import load_recipe
        from ..components import build_generator

        state = load_legacy_state(src, key)
        if strip_prefix:
            state = {(k[len(strip_prefix):] if k.startswith(strip_prefix) else k): v for k, v in state.items()}
        r = load_recipe(recipe, set_ or [])
        generator = build_generator(r)
        load_state_strict(generator, state, str(src))
        if dst.suffix != ".safetensors":
            raise CheckpointError(f"{dst}: the output must be a .safetensors file")
        save_generator(dst, generator, r, extra={"converted_from": src.name})
        typer.echo(f"wrote {dst} ({len(state)} tensors, recipe {r.name})")


def load_legacy_state(src: pathlib.Path, key: str | None):
    """Read tensors from a pickle checkpoint without running code (``weights_only=True``)."""
    import pickle

    import torch

    from ..errors import CheckpointError

    if not src.is_file():
        raise CheckpointError(f"checkpoint not found: {src}")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{src}: refused or unreadable with weights_only=True (only tensors and plain "
                              f"containers are accepted): {first}") from None
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise CheckpointError(f"{src}: no entry {key!r}; entries: {', '.join(map(str, obj)) if isinstance(obj, dict) else '-'}")
        obj = obj[key]
    elif isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = next((k for k in STATE_KEYS if isinstance(obj.get(k), dict)), None)
        if found is None:
            raise CheckpointError(f"{src}: cannot find a state dict; pass --key (entries: {', '.join(map(str, obj))})")
        obj = obj[found]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{src}: the selected entry is not a dict of tensors")
    return obj
