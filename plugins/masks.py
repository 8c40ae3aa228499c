"""Synthetic face masks placed from facial landmarks, rendered batched on the batch's device; the
registration of the three mask degradations and ``random_mask``, which picks one family per sample.

* ``procedural_mask`` (:mod:`.mask_procedural`): surgical, cloth, KN95 and N95 masks drawn as
  outlines in mask coordinates, with random colours, patterns and shading.
* ``template_mask`` (:mod:`.mask_templates`): MaskTheFace RGBA templates warped onto the face,
  optionally recoloured or textured, head-turned variants picked from the landmarks.
* ``random_mask``: one or the other per sample.

All share the placement of :mod:`.mask_placement` (six anchors from the five landmarks, a
homography per face, one sampling grid per batch). The occlusion map is binary at HQ size and is
exactly the set of pixels the mask replaced.
"""

from __future__ import annotations

from typing import Optional

import torch

from facerestore.interfaces import Degradation, DegradationBatch

from .degradation_random import Range, bernoulli, check_prob
from .mask_placement import Placement, composite
from .mask_procedural import PROCEDURAL_TYPES, ProceduralMask
from .mask_templates import TemplateMask


class RandomMask(Degradation):
    """A procedural or a template face mask per sample (``template_prob``), placed from landmarks."""

    def __init__(self, template_prob: float = 0.5, folder: str = "",
                 types: list[str] = list(PROCEDURAL_TYPES),
                 families: list[str] = ["surgical", "surgical_blue", "surgical_green", "cloth", "KN95", "N95"],
                 top: Range = (0.3, 0.6), chin: Range = (0.6, 0.9), width: Range = (1.02, 1.22),
                 rotation: Range = (-5.0, 5.0), perspective: float = 0.03, jitter: float = 0.02,
                 pattern_prob: float = 0.7, recolor_prob: float = 0.3, texture_prob: float = 0.25,
                 p: float = 1.0):
        """``template_prob`` > 0 needs ``folder`` (MaskTheFace format); 0 draws only procedural
        masks and never touches the folder."""
        self.template_prob = check_prob("template_prob", template_prob)
        self.p = check_prob("p", p)
        place = dict(top=top, chin=chin, width=width, rotation=rotation, perspective=perspective, jitter=jitter)
        self.placement = Placement(**place)
        self.procedural = ProceduralMask(types=types, pattern_prob=pattern_prob, **place)
        self.template: Optional[TemplateMask] = None
        if self.template_prob > 0:
            self.template = TemplateMask(folder=folder, families=families, recolor_prob=recolor_prob,
                                         texture_prob=texture_prob, **place)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        b, dev = batch.hq.shape[0], batch.hq.device
        h, w = batch.hq.shape[-2:]
        applied = bernoulli(generator, b, self.p, dev)
        lm = self.placement.landmarks(batch, generator)
        anchors, yaw = self.placement.anchors(lm, generator)
        use_t = bernoulli(generator, b, self.template_prob, dev)
        proc_kind = self.procedural.choose(generator, b, dev)
        colour = batch.hq.new_zeros(b, 3, h, w)
        alpha = batch.hq.new_zeros(b, 1, h, w)
        kind = proc_kind.clone()
        if self.template is not None and bool(use_t.any()):
            tid = self.template.choose(generator, yaw)
            idx = use_t.nonzero().squeeze(1)
            c, a = self.template.render(anchors[idx], tid[idx], (h, w), generator)
            colour[idx], alpha[idx] = c, a
            kind[idx] = len(PROCEDURAL_TYPES) + tid[idx]
        idx = (~use_t).nonzero().squeeze(1) if self.template is not None else torch.arange(b, device=dev)
        if idx.numel():
            c, a = self.procedural.render(anchors[idx], proc_kind[idx], (h, w), generator)
            if idx.numel() == b:
                colour, alpha = c, a
            else:
                colour[idx], alpha[idx] = c, a
        alpha = alpha * applied.view(-1, 1, 1, 1)
        return composite(batch, colour, alpha, torch.where(applied, kind, torch.full_like(kind, -1)), "random_mask")


def register(registry) -> None:
    registry.register("degradation", "procedural_mask", ProceduralMask)
    registry.register("degradation", "template_mask", TemplateMask)
    registry.register("degradation", "random_mask", RandomMask)
