"""The fixed validation set, PSNR/SSIM of the EMA generator on it, and the sample grid PNG.

The set is degraded once, on the CPU, from ``data.val_seed``: the same inputs at every
validation and on every device, so numbers from different steps and runs compare.
"""

from __future__ import annotations

import dataclasses
import pathlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import to_float
from .data import collate, degrade, open_faces

GRID_ROWS = 8


@dataclasses.dataclass
class ValidationSet:
    lq: Tensor  # (N, 3, h, w) on the CPU
    hq: Tensor  # (N, 3, H, W)
    source: str = ""


def build_validation_set(recipe, pipeline) -> ValidationSet | None:
    """``data.val_count`` faces spread evenly over ``data.val`` (sorted), degraded with
    ``data.val_seed``; or the first ``val_count`` pairs when ``data.val`` is a paired set written
    by ``facerestore degrade``; None when ``data.val`` is empty."""
    if not recipe.data.val:
        return None
    if (pathlib.Path(recipe.data.val) / "manifest.json").is_file():  # made by `facerestore degrade`
        from ..degrade import load_paired_set

        paired = load_paired_set(recipe.data.val, limit=recipe.data.val_count)
        return ValidationSet(paired.lq, paired.hq, recipe.data.val)
    ds = open_faces([recipe.data.val], recipe, "data.val")
    n = min(recipe.data.val_count, len(ds))
    idx = torch.linspace(0, len(ds) - 1, n).round().long().tolist()
    hq, landmarks = collate([ds[i] for i in idx])
    hq = to_float(hq, torch.device("cpu"))
    gen = torch.Generator().manual_seed(recipe.data.val_seed)
    lqs, hqs = [], []
    for start in range(0, n, 32):
        lm = landmarks[start:start + 32] if landmarks is not None else None
        batch = degrade(pipeline, hq[start:start + 32], lm, gen)
        lqs.append(batch.lq)
        hqs.append(batch.hq)  # the target: a photometric step changes the face itself
    return ValidationSet(torch.cat(lqs), torch.cat(hqs), recipe.data.val)


@torch.no_grad()
def validate(model: nn.Module, val: ValidationSet, device: torch.device,
             memory_format: torch.memory_format = torch.contiguous_format, batch_size: int = 32
             ) -> tuple[dict[str, float], Tensor]:
    """Mean PSNR/SSIM (RGB, [0, 1]) of ``model`` on ``val``, and the sample grid image."""
    from ..pixels import quantize
    from ..metrics import psnr, ssim

    was_training = model.training
    model.eval()
    psnrs, ssims, rows = [], [], []
    for start in range(0, val.lq.shape[0], batch_size):
        lq = val.lq[start:start + batch_size].to(device).contiguous(memory_format=memory_format)
        hq = val.hq[start:start + batch_size].to(device)
        out = model(lq)
        sr = quantize(out["sr"])  # scored as saved: 8-bit, like `facerestore eval`
        psnrs.append(psnr(sr, hq).cpu())
        ssims.append(ssim(sr, hq).cpu())
        if start == 0:
            k = min(GRID_ROWS, lq.shape[0])
            rows = grid_rows(lq[:k].float(), out.get("denoised"), sr[:k], hq[:k])
    model.train(was_training)
    metrics = {"psnr": float(torch.cat(psnrs).mean()), "ssim": float(torch.cat(ssims).mean()),
               "count": int(val.lq.shape[0])}
    return metrics, rows


def grid_rows(lq: Tensor, denoised: Tensor | None, sr: Tensor, hq: Tensor) -> Tensor:
    """``(3, k*H, 4*W)``: input | denoised | output | target, one face per row (nearest upscaling
    of the low-resolution columns, so their pixels stay visible)."""
    k, size = sr.shape[0], sr.shape[-1]
    up = lambda x: F.interpolate(x.float(), size=(size, size), mode="nearest")  # noqa: E731
    den = up(denoised[:k].clamp(0, 1)) if denoised is not None else torch.full_like(sr, 0.5)
    cols = torch.cat([up(lq), den, sr, hq.float()], dim=3)  # (k, 3, H, 4W)
    return cols.permute(1, 0, 2, 3).reshape(3, k * size, 4 * size).cpu()


def save_grid(grid: Tensor, path: pathlib.Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    from ..pixels import to_uint8

    arr = to_uint8(grid).permute(1, 2, 0).cpu().numpy()
    Image.fromarray(arr).save(path)
