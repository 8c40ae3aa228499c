"""The training loop: builds every component from the recipe and orchestrates them.

Components do not know each other: the generator maps ``lq`` to named outputs, each loss compares
one output with one batch tensor (:class:`~facerestore.recipe_config.LossSpec`), adversarial losses
receive the discriminator as an argument. What runs when (loss ``start`` steps, stages, learning
rates) is a pure function of the step (:mod:`facerestore.train.schedule`), and every random
stream plus the data position is checkpointed, so ``--resume`` reproduces an uninterrupted run.

Over 400 lines on purpose: one class, the training loop, whose construction, step, checkpoint and
validation parts share its state (the helpers that need none are in :mod:`.data`, :mod:`.logger`,
:mod:`.state` and :mod:`.schedule`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import time
import warnings
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..checkpoint import (CheckpointWriteError, generator_tensors, load_matching, load_state_strict, module_summary,
                          save_tensors)
from ..degrade import build_pipeline
from ..device import cpu_has_bf16, resolve_device
from ..errors import CheckpointError, FaceRestoreError
from ..interfaces import AdversarialLoss, DegradationBatch
from ..recipe import resolve_recipe
from ..recipe_config import Recipe
from ..registry import Registry
from ..components import build_generator, default_registry
from . import dist
from ..data import to_float
from .data import batch_iterator, degrade, loss_targets, open_faces, random_hflip, stop_workers
from .ema import EMA
from .logger import LossMeter, Progress, RunLogger
from .schedule import Stage, loss_active, lr_factor, stage_at, stage_plan
from .state import (capture_rng, changed_keys, ckpt_name, flatten_state, latest_checkpoint, load_train_state,
                    point_last, prune, restore_rng, sub_tensors, unflatten_state)
from .validation import ValidationSet, build_validation_set, save_grid, validate


class TrainingDiverged(FaceRestoreError):
    """A loss or the weights became NaN/inf; the run stopped without writing a checkpoint."""


@dataclasses.dataclass
class TrainResult:
    step: int
    run_dir: pathlib.Path
    last_checkpoint: pathlib.Path | None
    best_psnr: float | None
    images_per_s: float
    losses: dict[str, float]


@dataclasses.dataclass
class _Term:
    spec: Any  # LossSpec
    module: nn.Module
    name: str
    adversarial: bool


class Trainer:
    """One training run in ``run_dir`` (checkpoints, ``log.jsonl``, ``tb/``, ``samples/``).

    ``dataset``/``val_set`` replace the recipe's folders (tests, embedding); ``stop_at`` ends this
    invocation at that step while the schedule still follows ``train.steps``.
    """

    def __init__(self, recipe: Recipe, run_dir: str | pathlib.Path, *, device: str = "auto",
                 registry: Registry | None = None, resume: bool = False, stop_at: int | None = None,
                 progress: bool = False, tensorboard: bool = True, dataset: Any = None,
                 val_set: ValidationSet | None = None, echo: Callable[[str], None] | None = None):
        self.registry = registry or default_registry()
        self.recipe = resolve_recipe(recipe, self.registry)
        self.cfg = self.recipe.train
        self.run_dir = pathlib.Path(run_dir)
        self.dist = dist.detect()
        self.device = resolve_device(device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        dist.init(self.dist, self.device)
        self.stop_at = min(stop_at, self.cfg.steps) if stop_at else self.cfg.steps
        self.show_progress = progress and self.dist.main
        self.tensorboard = tensorboard
        self._echo = echo or (lambda m: print(m, flush=True))
        self._dataset = dataset
        self._val_set = val_set
        self._resume = resume
        self._build()

    # ---------------------------------------------------------------------------------------
    # construction
    # ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        r, cfg, reg = self.recipe, self.cfg, self.registry
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G: nn.Module = build_generator(r, reg)
        self.D: nn.Module | None = (reg.build("discriminator", r.discriminator, "discriminator")
                                    if r.discriminator is not None else None)
        self.pipeline = build_pipeline(r.degradation, reg)
        self.terms = self._build_terms()
        torch.manual_seed(cfg.seed + self.dist.rank)  # per-rank streams from here on

        if cfg.init and not self._resume:
            self._warm_start(cfg.init)
        mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.memory_format = mf
        self.G.to(self.device, memory_format=mf)
        self._base_trainable = {id(p) for p in self.G.parameters() if p.requires_grad}
        dist.broadcast_module(self.G, self.dist)
        self.ema = EMA(self.G, cfg.ema_decay)
        if not self._base_trainable:
            raise FaceRestoreError(f"generator {r.generator.get('type')!r} has no trainable parameters: nothing to train")
        self._build_optimizers(mf)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.degrade_gen = torch.Generator(device=self.device)
        self.degrade_gen.manual_seed(cfg.seed * 7919 + 17 + self.dist.rank)

        self.plan = stage_plan(cfg)
        self.staged = bool(cfg.stages)
        parts = self._parts()
        for stage in self.plan:
            for name in stage.train:
                if name not in parts:
                    raise FaceRestoreError(f"train.stages: stage {stage.name!r} trains {name!r}, but the generator's "
                                           f"parts are: {', '.join(parts)}")
        self.stage: Stage | None = None
        self.step = 0
        self.consumed = 0
        self.best_psnr: float | None = None
        self.best_step: int | None = None
        self.last_val: dict[str, float] = {}
        self.last_ckpt: pathlib.Path | None = None

    def _build_terms(self) -> list[_Term]:
        """The recipe's losses as frozen modules on the device, named ``type_on`` (plus the index
        when two terms share both)."""
        losses, terms = self.recipe.losses, []
        for i, spec in enumerate(losses):
            module = self.registry.build("loss", spec.spec(), spec.path or f"loss[{i}]")
            module.requires_grad_(False)
            module.eval()
            unique = sum(s.type == spec.type and s.on == spec.on for s in losses) == 1
            name = f"{spec.type}_{spec.on}" if unique else f"{spec.type}_{spec.on}_{i}"
            terms.append(_Term(spec, module.to(self.device), name, isinstance(module, AdversarialLoss)))
        if any(t.adversarial for t in terms) and self.D is None:
            raise FaceRestoreError("an adversarial loss needs a [discriminator] table in the recipe")
        return terms

    def _build_optimizers(self, memory_format: torch.memory_format) -> None:
        """Adam for G (and D when the recipe has one), each with the step's learning-rate factor."""
        cfg = self.cfg
        self.opt_g = torch.optim.Adam([p for p in self.G.parameters() if p.requires_grad], lr=cfg.lr,
                                      betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, lambda s: lr_factor(s, cfg))
        self.opt_d = self.sched_d = None
        self._d_params: list[nn.Parameter] = []
        self._scaled = False
        if self.D is not None:
            self.D.to(self.device, memory_format=memory_format)
            dist.broadcast_module(self.D, self.dist)
            self._d_params = [p for p in self.D.parameters() if p.requires_grad]
            self.opt_d = torch.optim.Adam(self._d_params, lr=cfg.lr_d,
                                          betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lambda s: lr_factor(s, cfg))

    def _amp_dtype(self) -> torch.dtype | None:
        """bf16 (or fp16 without bf16) autocast on CUDA when ``amp``; bf16 on a CPU with native bf16
        when ``cpu_amp`` (emulated bf16 is many times slower than fp32, so never there)."""
        if self.cfg.amp and self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.cfg.cpu_amp and self.device.type == "cpu":
            if cpu_has_bf16():
                return torch.bfloat16
            self._echo("train.cpu_amp: this CPU has no native bf16 (AVX512-BF16/AMX): training in float32")
        return None

    def _warm_start(self, init: str) -> None:
        """``train.init``: the generator starts from a bundled model or a checkpoint (EMA weights
        preferred); tensors the recipe added keep their initialisation."""
        from ..models import weights_file

        path = weights_file(init)
        fresh = load_matching(self.G, generator_tensors(path), f"train.init {init}")
        new = f"; new: {module_summary(fresh, list(self.G.state_dict()))}" if fresh else ""
        self._echo(f"generator initialised from {path}{new}")

    # ---------------------------------------------------------------------------------------
    # schedule helpers
    # ---------------------------------------------------------------------------------------
    def apply_stage(self, stage: Stage) -> None:
        """Train only the stage's parts: the others get ``requires_grad=False`` and eval mode."""
        parts = self._parts()
        trained = {id(p) for name in stage.train for p in parts[name].parameters()}
        self.G.train()
        for p in self.G.parameters():
            p.requires_grad_(id(p) in trained and id(p) in self._base_trainable)
        for name, module in parts.items():
            if name not in stage.train and module is not self.G:
                module.eval()
        self.stage = stage

    def _parts(self) -> dict[str, nn.Module]:
        """``stage_modules()`` plus ``generator`` (the whole network) for unstaged recipes."""
        return {"generator": self.G, **self.G.stage_modules()}

    def active_terms(self, step: int) -> list[_Term]:
        """Terms computed at ``step``; a zero-weight term never is (it would cost time and change
        nothing: a recipe can keep a term switched off, e.g. the adversarial one)."""
        assert self.stage is not None
        return [t for t in self.terms if t.spec.weight != 0 and loss_active(t.spec, step, self.stage, self.staged)]

    def critic_terms(self, step: int) -> list[_Term]:
        """Adversarial terms (of non-zero weight) whose discriminator trains at ``step``: those
        active, and on every step of the ``d_warmup`` before a term's ``start`` that lies in one
        of its stages, the critic alone (the generator does not see it yet)."""
        assert self.stage is not None
        lead, active = self.cfg.d_warmup, self.active_terms(step)
        anytime = lambda t: dataclasses.replace(t.spec, start=0, every=1)  # noqa: E731  (stages only)
        return [t for t in self.terms if t.adversarial and t.spec.weight != 0 and
                (t in active or (t.spec.start - lead <= step < t.spec.start and
                                 loss_active(anytime(t), step, self.stage, self.staged)))]

    def _optimizer_step(self, loss: Tensor, module: nn.Module, opt: torch.optim.Optimizer) -> None:
        """Backward, gradients averaged over ranks, unscaled, clipped, then one optimiser step."""
        self._scaled = True
        self.scaler.scale(loss).backward()
        params = [p for p in module.parameters() if p.requires_grad]
        dist.average_gradients(params, self.dist)
        self.scaler.unscale_(opt)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(opt)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ---------------------------------------------------------------------------------------
    # data
    # ---------------------------------------------------------------------------------------
    def _loader(self):
        ds = self._dataset if self._dataset is not None else open_faces(self.recipe.data.train, self.recipe, "data.train")
        if self.dist.main:
            precision = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "float32"
            self._echo(f"{len(ds):,} training faces; device {self.device}, {precision}; "
                       f"from step {self.step} to {self.stop_at}, a log line every {self.cfg.log_every} steps")
        return batch_iterator(ds, self.cfg.batch_size, self.cfg.seed, self.dist.rank, self.dist.world, self.consumed,
                              self.recipe.data.workers, pin_memory=self.device.type == "cuda")

    # ---------------------------------------------------------------------------------------
    # one step
    # ---------------------------------------------------------------------------------------
    def train_step(self, hq: Tensor, landmarks: Tensor | None) -> dict[str, float]:
        """One step: degrade on the device, generator update, discriminator update, EMA."""
        step = self.step
        hq, landmarks = random_hflip(hq, landmarks, self.recipe.data.hflip, self.degrade_gen)  # as loaded (uint8)
        hq = to_float(hq, self.device).contiguous(memory_format=self.memory_format)
        if landmarks is not None:
            landmarks = landmarks.to(self.device)
        with torch.no_grad():
            batch = degrade(self.pipeline, hq, landmarks, self.degrade_gen)
        terms = self.active_terms(step)
        self._scaled = False
        if self.D is not None:
            self.D.requires_grad_(False)
        critics = self.critic_terms(step) if self.D is not None else []
        total, values, out, targets = self._generator_loss(batch, terms, critics)
        logs = {k: float(v) for k, v in values.items()}
        logs["total"] = float(total.detach())
        if not dist.all_true(math.isfinite(logs["total"]), self.dist, self.device):
            bad = [k for k, v in logs.items() if not math.isfinite(v)] or ["(on another rank)"]
            raise TrainingDiverged(
                f"loss became non-finite at step {step} ({', '.join(f'{k}={logs.get(k)}' for k in bad)}); "
                f"stopped without writing a checkpoint. Last good checkpoint: {self.last_ckpt or 'none'}. "
                f"Try a lower train.lr / loss weight, train.grad_clip, or train.amp=false.")
        self.opt_g.zero_grad(set_to_none=True)
        if total.requires_grad:
            self._optimizer_step(total, self.G, self.opt_g)
        with warnings.catch_warnings():  # the step-0 warning when a stage or AMP skips opt.step()
            warnings.simplefilter("ignore", UserWarning)
            self.sched_g.step()
        self.ema.update(self.G, step)
        if critics:
            logs["d"] = self._discriminator_step(critics, out, targets)
        if self.sched_d is not None:
            with warnings.catch_warnings():  # before the adversarial start the D optimiser does not step
                warnings.simplefilter("ignore", UserWarning)
                self.sched_d.step()
        if self._scaled:  # an fp16 GradScaler refuses update() in a step that scaled nothing
            self.scaler.update()
        self.step += 1
        return logs

    def _generator_loss(self, batch: DegradationBatch, terms: list[_Term], critics: list[_Term]):
        """Forward the generator on ``batch.lq`` and sum the active weighted terms:
        ``(total, unweighted values, outputs, targets)`` (targets also for the ``critics``)."""
        lq = batch.lq.contiguous(memory_format=self.memory_format)
        with self._autocast():
            out = self.G(lq)
            targets = loss_targets(batch, out, {t.spec.resolved_target() for t in [*terms, *critics]},
                                   self.recipe.hq_size)
            values: dict[str, Tensor] = {}
            total = batch.hq.new_zeros(())
            for t in terms:
                if t.spec.on not in out:
                    raise FaceRestoreError(f"{t.spec.path}.on: the generator has no output {t.spec.on!r} "
                                           f"(outputs: {', '.join(out)})")
                pred = out[t.spec.on]
                target = targets[t.spec.resolved_target()]
                ctx: dict[str, Any] = {"occlusion": batch.occlusion_hq if pred.shape[-1] == batch.hq.shape[-1]
                                       else batch.occlusion, "landmarks": batch.landmarks, "lq": batch.lq}
                if t.adversarial:
                    ctx["discriminator"] = self.D
                value = t.module(pred.float(), target.float(), **ctx)
                values[t.name] = value.detach()
                total = total + t.spec.weight * value.float()
        return total, values, out, targets

    def _discriminator_step(self, adversarial: list[_Term], out: dict[str, Tensor], targets: dict[str, Tensor]) -> float:
        """One critic update on the detached outputs; returns its (weighted) loss."""
        for p in self._d_params:  # only what opt_d trains: parameters D froze stay frozen
            p.requires_grad_(True)
        with self._autocast():
            loss_d = sum(t.spec.weight * t.module.discriminator_loss(self.D, targets[t.spec.resolved_target()].float(),
                                                                     out[t.spec.on].detach().float())
                         for t in adversarial)
        d = float(loss_d.detach())
        if not dist.all_true(math.isfinite(d), self.dist, self.device):
            raise TrainingDiverged(f"discriminator loss became non-finite at step {self.step} (d={d}); "
                                   f"last good checkpoint: {self.last_ckpt or 'none'}. Try a lower train.lr_d.")
        self.opt_d.zero_grad(set_to_none=True)
        self._optimizer_step(loss_d, self.D, self.opt_d)
        return d

    # ---------------------------------------------------------------------------------------
    # checkpoints
    # ---------------------------------------------------------------------------------------
    def _state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors: dict[str, Tensor] = {}
        meta: dict[str, Any] = {}
        for prefix, module in (("generator", self.G), ("ema", self.ema.module), ("discriminator", self.D)):
            if module is not None:
                tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        for name, obj in (("optim_g", self.opt_g), ("optim_d", self.opt_d), ("sched_g", self.sched_g),
                          ("sched_d", self.sched_d)):
            if obj is not None:
                t, skeleton = flatten_state(obj.state_dict(), name)
                tensors.update(t)
                meta[name] = skeleton
        meta["scaler"] = self.scaler.state_dict()
        rngs = dist.gather_objects(capture_rng(self.degrade_gen), self.dist)
        for rank, rng in enumerate(rngs):
            t, skeleton = flatten_state(rng, f"rng.r{rank}")
            tensors.update(t)
            meta[f"rng.r{rank}"] = skeleton
        meta.update({
            "recipe": self.recipe.to_json(), "contents": "train_state", "step": self.step,
            "stage": self.stage.name if self.stage else "", "world_size": self.dist.world,
            "data": {"consumed": self.consumed, "seed": self.cfg.seed},
            "best": {"psnr": self.best_psnr, "step": self.best_step}, "val": self.last_val,
            "torch": torch.__version__,
        })
        return tensors, meta

    def save_checkpoint(self) -> pathlib.Path | None:
        """Write ``ckpt_<step>.safetensors`` atomically (rank 0), point ``last`` at it, prune.
        Refuses (TrainingDiverged) when any weight is non-finite. Collective under torchrun."""
        finite = all(torch.isfinite(v).all() for m in (self.G, self.D) if m is not None
                     for v in m.state_dict().values() if v.is_floating_point())
        if not dist.all_true(finite, self.dist, self.device):
            raise TrainingDiverged(f"weights became non-finite at step {self.step}; not writing a checkpoint. "
                                   f"Last good checkpoint: {self.last_ckpt or 'none'}.")
        tensors, meta = self._state_tensors()
        path = self.run_dir / ckpt_name(self.step)
        if self.dist.main:
            try:
                save_tensors(path, tensors, meta)
            except CheckpointWriteError as exc:
                raise CheckpointWriteError(f"step {self.step}: {exc}. Last good checkpoint: {self.last_ckpt or 'none'}; "
                                           "free some space, then continue with --resume", exc.errno) from exc
            point_last(self.run_dir, path)
            prune(self.run_dir, self.cfg.keep_last)
        dist.barrier(self.dist)
        self.last_ckpt = path
        return path

    def load_checkpoint(self, path: pathlib.Path) -> None:
        tensors, meta = load_train_state(path)
        load_state_strict(self.G, sub_tensors(tensors, "generator."), f"{path} (generator)")
        load_state_strict(self.ema.module, sub_tensors(tensors, "ema."), f"{path} (ema)")
        if self.D is not None:
            d = sub_tensors(tensors, "discriminator.")
            if not d:
                raise CheckpointError(f"{path}: no discriminator weights, but the recipe has a discriminator")
            load_state_strict(self.D, d, f"{path} (discriminator)")
        for name, obj in (("optim_g", self.opt_g), ("optim_d", self.opt_d), ("sched_g", self.sched_g),
                          ("sched_d", self.sched_d)):
            if obj is not None and name in meta:
                state = unflatten_state(meta[name], tensors)
                obj.load_state_dict(state)
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        rng_key = f"rng.r{self.dist.rank}"
        if rng_key not in meta:
            rng_key = "rng.r0"
            if self.dist.main:
                self._echo(f"warning: {path} was written by {meta.get('world_size')} process(es); "
                           "random streams of the other ranks are re-used, the run is not bit-identical")
        restore_rng(unflatten_state(meta[rng_key], tensors), self.degrade_gen)
        self.step = int(meta["step"])
        self.consumed = int(meta["data"]["consumed"])
        best = meta.get("best") or {}
        self.best_psnr, self.best_step = best.get("psnr"), best.get("step")
        self.last_val = meta.get("val") or {}
        self.last_ckpt = path
        self._note_recipe_changes(path, meta.get("recipe", ""))
        self._sync_lr()  # the recipe's schedule may have changed (e.g. a larger train.steps)

    def _note_recipe_changes(self, path: pathlib.Path, saved: str) -> None:
        """``--resume`` trains on with the recipe as it is now: say which settings differ from the
        checkpoint's, since a changed data, degradation or loss setting ends bit-exact resumption."""
        if not saved or not self.dist.main:
            return
        changed = changed_keys(json.loads(saved), json.loads(self.recipe.to_json()))
        if changed:
            more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
            self._echo(f"note: the recipe differs from the one {path.name} was trained with: "
                       f"{', '.join(changed[:8])}{more}")

    def _sync_lr(self) -> None:
        """Learning rates as the current recipe's schedule says for the current step."""
        for opt, sched, base in ((self.opt_g, self.sched_g, self.cfg.lr), (self.opt_d, self.sched_d, self.cfg.lr_d)):
            if opt is None:
                continue
            for group in opt.param_groups:
                group["lr"] = base * lr_factor(self.step, self.cfg)
            sched.base_lrs = [base for _ in opt.param_groups]
            sched.last_epoch = self.step

    def save_best(self) -> None:
        from ..checkpoint import save_tensors as _save

        tensors = {f"generator.{k}": v for k, v in self.G.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.module.state_dict().items()})
        _save(self.run_dir / "best.safetensors", tensors,
              {"recipe": self.recipe.to_json(), "contents": "generator", "step": self.step, "val": self.last_val})

    # ---------------------------------------------------------------------------------------
    # validation
    # ---------------------------------------------------------------------------------------
    def run_validation(self, logger: RunLogger | None) -> dict[str, float] | None:
        if not self.dist.main or self.val is None:
            return None
        metrics, grid = validate(self.ema.module, self.val, self.device, self.memory_format)
        self.last_val = metrics
        save_grid(grid, self.run_dir / "samples" / f"step_{self.step:08d}.png")
        improved = self.best_psnr is None or metrics["psnr"] > self.best_psnr
        if improved:
            self.best_psnr, self.best_step = metrics["psnr"], self.step
            self.save_best()
        if logger is not None:
            logger.write({"event": "val", "step": self.step, **metrics, "best_psnr": self.best_psnr})
        return metrics

    # ---------------------------------------------------------------------------------------
    # the loop
    # ---------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        main = self.dist.main
        self._prepare_run()
        logger = RunLogger(self.run_dir, self.tensorboard) if main else None
        progress = Progress(self.stop_at, self.step, self.show_progress)
        batches = self._loader() if self.step < self.stop_at else None
        meter = LossMeter()
        t_start, step_start = time.perf_counter(), self.step
        logs: dict[str, float] = {}
        try:
            try:
                logs = self._loop(batches, meter, logger, progress)
            except KeyboardInterrupt:
                stop_workers(batches)
                self._save_interrupted(step_start, progress)
                raise
            if self.step > step_start or self.last_ckpt is None:
                if self.step > step_start:
                    self._report_val(self.run_validation(logger), progress)
                self.save_checkpoint()
        finally:
            progress.close()
            if logger is not None:
                logger.close()
        elapsed = time.perf_counter() - t_start
        ips_total = (self.step - step_start) * self.cfg.batch_size * self.dist.world / max(elapsed, 1e-9)
        return TrainResult(self.step, self.run_dir, self.last_ckpt, self.best_psnr, ips_total, logs)

    def _loop(self, batches, meter: LossMeter, logger: RunLogger | None, progress: Progress) -> dict[str, float]:
        logs: dict[str, float] = {}
        while self.step < self.stop_at:
            stage = stage_at(self.plan, self.step)
            if stage != self.stage:
                self.apply_stage(stage)
                if self.dist.main and self.staged:
                    progress.print(f"stage {stage.name!r} from step {self.step}: training {', '.join(stage.train)}")
            hq, landmarks = next(batches)
            self.consumed += 1
            logs = self.train_step(hq, landmarks)
            meter.add(logs, hq.shape[0] * self.dist.world)
            self._after_step(meter, logger, progress)
        return logs

    def _save_interrupted(self, step_start: int, progress: Progress) -> None:
        """Ctrl-C or SIGTERM: keep what was trained since the last checkpoint. A single process
        only: under torchrun saving is collective and the ranks are not interrupted together."""
        saved = self.last_ckpt is not None and self.last_ckpt.name == ckpt_name(self.step)
        if self.dist.world == 1 and self.step > step_start and not saved:
            self.save_checkpoint()
            progress.print(f"interrupted at step {self.step}: saved {self.last_ckpt}; continue with --resume")

    def _prepare_run(self) -> None:
        """Run folder, resume (or refuse to overwrite a run), learning rates, recipe copy,
        validation set."""
        main = self.dist.main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        dist.barrier(self.dist)
        if self._resume:
            path = latest_checkpoint(self.run_dir)
            if path is None:
                raise FaceRestoreError(f"--resume: no training checkpoint in {self.run_dir}")
            self.load_checkpoint(path)
            if main:
                for stale in self.run_dir.glob(".*.tmp"):  # half-written files of a killed run
                    stale.unlink(missing_ok=True)
                self._echo(f"resumed from {path} at step {self.step}")
        elif main and latest_checkpoint(self.run_dir) is not None:
            raise FaceRestoreError(f"{self.run_dir} already holds a training run; use --resume to continue it "
                                   "or --out to start a new one")
        self._sync_lr()
        if main:
            (self.run_dir / "recipe.toml").write_text(self.recipe.to_toml(), encoding="utf-8")
        self.val = None
        if main:
            self.val = self._val_set if self._val_set is not None else build_validation_set(self.recipe, self.pipeline)
            if self.val is None:
                self._echo("note: data.val is empty: no validation, no best.safetensors")

    def _after_step(self, meter: LossMeter, logger: RunLogger | None, progress: Progress) -> None:
        """Log every ``log_every`` steps (mean losses, images/s), validate and checkpoint on schedule."""
        step = self.step
        if step % self.cfg.log_every == 0 or step == self.stop_at:
            mean, ips = meter.flush()
            if logger is not None:
                logger.write({"event": "train", "step": step, "stage": self.stage.name if self.stage else "",
                              "lr": self.opt_g.param_groups[0]["lr"], "images_per_s": ips, "losses": mean})
            info = " ".join(f"{k}={v:.4f}" for k, v in mean.items()) + f" | {ips:.1f} img/s"
            progress.update(step, info)
            if not self.show_progress and self.dist.main:
                self._echo(f"step {step}/{self.stop_at} {info}")
        else:
            progress.update(step)
        if step % self.cfg.val_every == 0 and step < self.stop_at:
            self._report_val(self.run_validation(logger), progress)
        if step % self.cfg.ckpt_every == 0 and step < self.stop_at:
            self.save_checkpoint()

    def _report_val(self, metrics: dict[str, float] | None, progress: Progress) -> None:
        if metrics:
            progress.print(f"validation at step {self.step}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}"
                           f" (best {self.best_psnr:.2f} dB at step {self.best_step})")

    def close(self) -> None:
        dist.shutdown(self.dist)


def train(recipe: Recipe, run_dir: str | pathlib.Path, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer` and run it (the ``facerestore train`` command)."""
    trainer = Trainer(recipe, run_dir, **kwargs)
    try:
        return trainer.run()
    finally:
        trainer.close()
