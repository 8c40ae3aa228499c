"""Training engine: resume equivalence, checkpoint contents and atomicity, divergence guard,
staged schedule, adversarial start step (tiny components, generated images, CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from facerestore import metrics as M

from facerestore import components as registry_mod
from facerestore.checkpoint import load_generator, load_tensors, read_metadata
from facerestore.errors import FaceRestoreError, RecipeError
from facerestore.train import Trainer, TrainingDiverged
from facerestore.train.sampler import ResumableBatchSampler
from facerestore.train.schedule import lr_factor
from facerestore.train.state import list_checkpoints
from facerestore.train.validation import ValidationSet
from test_train_helpers import Down, TensorFaces, tiny_recipe, tiny_registry


@pytest.fixture()
def reg():
    return tiny_registry()


def val_set() -> ValidationSet:
    hq = TensorFaces(8, 16, seed=99).images
    lq = Down(2)(__import__("facerestore.interfaces", fromlist=["x"]).DegradationBatch.from_hq(hq),
                 torch.Generator().manual_seed(5)).lq
    return ValidationSet(lq, hq, "generated")


def make(reg, recipe, run_dir, **kw):
    return Trainer(recipe, run_dir, device="cpu", registry=reg, dataset=TensorFaces(24, 16),
                   val_set=val_set(), tensorboard=False, echo=lambda m: None, **kw)


def weights(path):
    tensors, _ = load_tensors(path)
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


def test_resume_gives_the_uninterrupted_result(reg, tmp_path):
    recipe = tiny_recipe(reg, steps=8)
    full = make(reg, recipe, tmp_path / "full").run()
    assert full.step == 8
    first = make(reg, recipe, tmp_path / "split", stop_at=4).run()
    assert first.step == 4 and first.last_checkpoint.name == "ckpt_00000004.safetensors"
    second = make(reg, recipe, tmp_path / "split", resume=True).run()
    assert second.step == 8
    a, b = weights(full.last_checkpoint), weights(second.last_checkpoint)
    assert a.keys() == b.keys()
    assert any(k.startswith("optim_d.") for k in a) and any(k.startswith("ema.") for k in a)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6, rtol=0), k
    # the data order and the degradation stream continued too: same logged losses after step 4
    log = lambda p: [r for r in map(json.loads, p.read_text().splitlines()) if r["event"] == "train"]  # noqa: E731
    full_log = {r["step"]: r["losses"] for r in log(tmp_path / "full" / "log.jsonl")}
    split_log = {r["step"]: r["losses"] for r in log(tmp_path / "split" / "log.jsonl")}
    for step in (6, 8):
        assert full_log[step] == pytest.approx(split_log[step], abs=1e-6)


def test_checkpoint_contents_and_run_folder(reg, tmp_path, monkeypatch):
    recipe = tiny_recipe(reg, steps=8, keep_last=2, ckpt_every=2)
    result = make(reg, recipe, tmp_path / "run").run()
    run = tmp_path / "run"
    assert [s for s, _ in list_checkpoints(run)] == [6, 8]  # keep_last=2
    last = run / "last.safetensors"
    assert last.read_bytes() == (run / "ckpt_00000008.safetensors").read_bytes()
    meta = read_metadata(last)
    assert meta["contents"] == "train_state" and json.loads(meta["step"]) == 8
    assert json.loads(meta["data"])["consumed"] == 8
    assert json.loads(meta["recipe"])["train"]["steps"] == 8
    tensors, _ = load_tensors(last)
    prefixes = {k.split(".")[0] for k in tensors}
    assert {"generator", "ema", "discriminator", "optim_g", "optim_d", "rng"} <= prefixes
    assert tensors["rng.r0.degrade"].dtype == torch.uint8
    # self-describing: load_generator rebuilds the net from the metadata (with the EMA weights)
    monkeypatch.setattr(registry_mod, "_DEFAULT", reg)
    gen, rec = load_generator(last)
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    assert all(torch.equal(gen.state_dict()[k], v) for k, v in ema.items())
    assert rec.name == "tiny"
    best, _ = load_tensors(run / "best.safetensors")
    assert any(k.startswith("ema.") for k in best)
    # better than any flat image (an all-zero output scores 4.8 dB on faces, flat grey about 13):
    # the best constant, the validation faces' mean colour, is the bar
    vs = val_set()
    flat = vs.hq.mean((0, 2, 3), keepdim=True).expand_as(vs.hq)
    bar = float(M.psnr(flat, vs.hq).mean())
    assert result.best_psnr is not None and result.best_psnr > bar + 1.0, (result.best_psnr, bar)
    assert list((run / "samples").glob("step_*.png"))
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {r["event"] for r in records} == {"train", "val"}
    assert all("images_per_s" in r for r in records if r["event"] == "train")
    assert (run / "recipe.toml").is_file()
    with pytest.raises(FaceRestoreError, match="--resume"):
        make(reg, recipe, run).run()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(reg, tmp_path):
    losses = [{"type": "l1", "on": "sr"}, {"type": "explode", "on": "sr", "start": 5}]
    recipe = tiny_recipe(reg, steps=10, ckpt_every=2, losses=losses)
    with pytest.raises(TrainingDiverged, match=r"non-finite at step 5.*ckpt_00000004"):
        make(reg, recipe, tmp_path / "run").run()
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [2, 4]
    tensors, _ = load_tensors(tmp_path / "run" / "last.safetensors")
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


def test_staged_schedule_freezes_the_other_parts(reg, tmp_path):
    stages = [{"name": "den", "steps": 3, "train": ["denoiser"]}, {"name": "up", "steps": 3, "train": ["upsampler"]}]
    losses = [{"type": "l1", "on": "denoised", "stages": ["den"]}, {"type": "l1", "on": "sr"}]
    recipe = tiny_recipe(reg, steps=6, stages=stages, losses=losses, warmup_steps=0)
    trainer = make(reg, recipe, tmp_path / "run", stop_at=3)
    g = trainer.G
    snap = lambda m: {k: v.clone() for k, v in m.state_dict().items()}  # noqa: E731
    den0, up0 = snap(g.denoiser), snap(g.upsampler)
    trainer.run()
    assert trainer.stage.name == "den" and not g.upsampler.training and g.denoiser.training
    assert all(torch.equal(v, g.upsampler.state_dict()[k]) for k, v in up0.items())
    assert not all(torch.equal(v, g.denoiser.state_dict()[k]) for k, v in den0.items())
    assert {t.name for t in trainer.active_terms(2)} == {"l1_denoised", "l1_sr"}

    den3, up3 = snap(g.denoiser), snap(g.upsampler)
    resumed = make(reg, recipe, tmp_path / "run", resume=True)
    resumed.run()
    assert resumed.stage.name == "up" and not resumed.G.denoiser.training
    assert {t.name for t in resumed.active_terms(4)} == {"l1_sr"}
    assert all(torch.equal(v, resumed.G.denoiser.state_dict()[k]) for k, v in den3.items())
    assert not all(torch.equal(v, resumed.G.upsampler.state_dict()[k]) for k, v in up3.items())


def test_adversarial_term_and_discriminator_wait_for_start(reg, tmp_path):
    recipe = tiny_recipe(reg, steps=6, adv_start=3)
    trainer = make(reg, recipe, tmp_path / "run", stop_at=3)
    d0 = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    trainer.run()
    assert all(torch.equal(v, trainer.D.state_dict()[k]) for k, v in d0.items())
    assert "vanilla_sr" not in {t.name for t in trainer.active_terms(2)}
    resumed = make(reg, recipe, tmp_path / "run", resume=True)
    resumed.run()
    assert not all(torch.equal(v, resumed.D.state_dict()[k]) for k, v in d0.items())
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train = {r["step"]: r["losses"] for r in records if r["event"] == "train"}
    assert "vanilla_sr" not in train[2] and "d" not in train[2]
    assert "vanilla_sr" in train[6] and "d" in train[6]


def test_discriminator_warms_up_before_the_adversarial_term(reg, tmp_path):
    """``train.d_warmup``: the critic trains alone for that many steps before the term's start."""
    recipe = tiny_recipe(reg, steps=8, adv_start=4, d_warmup=2)
    trainer = make(reg, recipe, tmp_path / "run", stop_at=2)
    d0 = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    trainer.run()  # steps 0-1: neither the critic nor the term
    assert all(torch.equal(v, trainer.D.state_dict()[k]) for k, v in d0.items())
    assert [t.name for t in trainer.critic_terms(1)] == [] and [t.name for t in trainer.critic_terms(2)] == ["vanilla_sr"]
    assert "vanilla_sr" not in {t.name for t in trainer.active_terms(3)}
    resumed = make(reg, recipe, tmp_path / "run", resume=True, stop_at=4)
    resumed.run()  # steps 2-3: the critic alone
    assert not all(torch.equal(v, resumed.D.state_dict()[k]) for k, v in d0.items())
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train = {r["step"]: r["losses"] for r in records if r["event"] == "train"}
    assert "d" not in train[2] and "d" in train[4] and "vanilla_sr" not in train[4]
    # without the warm-up the same generator steps give the same generator: the critic did not touch it
    plain = make(reg, tiny_recipe(reg, steps=8, adv_start=4), tmp_path / "plain", stop_at=4)
    plain.run()
    assert all(torch.allclose(v, resumed.G.state_dict()[k]) for k, v in plain.G.state_dict().items())
    with pytest.raises(RecipeError, match="d_warmup"):
        tiny_recipe(reg, d_warmup=-1)


def test_discriminator_warm_up_with_every_and_zero_weight(reg, tmp_path):
    """Every step of the warm-up trains the critic, whatever the term's ``every``; afterwards the
    critic trains on the term's own steps; a zero-weight term trains no critic."""
    losses = [{"type": "l1", "on": "sr"}, {"type": "vanilla", "on": "sr", "weight": 0.01, "start": 4, "every": 2}]
    trainer = make(reg, tiny_recipe(reg, steps=9, d_warmup=3, losses=losses), tmp_path / "a", stop_at=1)
    trainer.run()
    assert [s for s in range(10) if trainer.critic_terms(s)] == [1, 2, 3, 4, 6, 8]
    losses[1]["weight"] = 0.0
    trainer = make(reg, tiny_recipe(reg, steps=9, d_warmup=3, losses=losses), tmp_path / "b", stop_at=1)
    trainer.run()
    assert not any(trainer.critic_terms(s) for s in range(10))
    assert [t.spec.type for t in trainer.active_terms(4)] == ["l1"]  # nor is its generator term computed


def test_sampler_resumes_and_shards():
    full = ResumableBatchSampler(10, 3, seed=1)
    it = iter(full)
    seq = [next(it) for _ in range(7)]  # crosses epochs (3 batches per epoch)
    later = iter(ResumableBatchSampler(10, 3, seed=1, consumed=4))
    assert [next(later) for _ in range(3)] == seq[4:7]
    r0 = next(iter(ResumableBatchSampler(10, 2, seed=1, rank=0, world=2)))
    r1 = next(iter(ResumableBatchSampler(10, 2, seed=1, rank=1, world=2)))
    assert not set(r0) & set(r1)
    with pytest.raises(ValueError, match="cannot make one batch"):
        ResumableBatchSampler(3, 4)


def test_lr_schedule(reg):
    t = tiny_recipe(reg, steps=10, warmup_steps=2, scheduler="cosine").train
    assert [round(lr_factor(s, t), 3) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert lr_factor(10, t) == pytest.approx(0.0)
    t.scheduler = "step"
    assert lr_factor(9, t) == 0.25 and lr_factor(10, t) == 0.125  # x0.5 at 50, 75, 90 % of 8 post-warm-up steps


def test_missing_data_folder_names_the_key(reg, tmp_path):
    recipe = tiny_recipe(reg, steps=2)
    recipe.data.train = [str(tmp_path / "nowhere")]
    trainer = Trainer(recipe, tmp_path / "run", device="cpu", registry=reg, val_set=val_set(), tensorboard=False,
                      echo=lambda m: None)
    with pytest.raises(FaceRestoreError, match=r"data\.train\[0\]: data folder not found: .*nowhere"):
        trainer.run()


def test_trains_from_an_image_folder(reg, tmp_path):
    """Generated PNG files through facerestore.data.FaceFolder, the recipe's data.train and data.val."""
    from test_train_helpers import write_images

    recipe = tiny_recipe(reg, steps=2, val_every=2)
    recipe.data.train = [str(write_images(tmp_path / "faces", 12, 20))]
    recipe.data.val = str(write_images(tmp_path / "val", 4, 20, seed=1))
    (tmp_path / "val" / "broken.png").write_bytes(b"not a png")  # sorted last: in the validation picks
    with pytest.warns(UserWarning, match="broken.png"):
        result = Trainer(recipe, tmp_path / "run", device="cpu", registry=reg, tensorboard=False,
                         echo=lambda m: None).run()
    assert result.step == 2 and result.best_psnr is not None


def test_validation_targets_are_the_faces_a_photometric_step_changed(reg, tmp_path):
    """A step that changes the face itself (lighting, grey) changes the target too: validation
    must score against the degraded batch's ``hq``, not the face as read."""
    from facerestore.degrade import build_pipeline
    from facerestore.train.validation import build_validation_set
    from test_train_helpers import write_images

    recipe = tiny_recipe(reg)
    recipe.data.val = str(write_images(tmp_path / "val", 4, 20, seed=1))
    grey = {"type": "photometric", "p": 1.0, "gray_prob": 1.0}
    val = build_validation_set(recipe, [*build_pipeline([grey]), *build_pipeline(recipe.degradation, reg)])
    assert torch.allclose(val.hq[:, 0], val.hq[:, 1]) and torch.allclose(val.hq[:, 1], val.hq[:, 2])


# ----------------------------------------------------------------------------------------------
# code-health fixes (issue 17)
# ----------------------------------------------------------------------------------------------
def test_resume_is_exact_when_the_generator_draws_from_the_global_rng(reg, tmp_path):
    """Dropout draws from torch's global stream; the DataLoader must not (it has its own)."""
    from test_train_helpers import TinyGen

    class DropGen(TinyGen):
        def forward(self, lq):
            out = super().forward(lq)
            out["sr"] = torch.nn.functional.dropout(out["sr"], 0.2, self.training)
            return out

    reg.register("generator", "drop_gen", DropGen)
    recipe = tiny_recipe(reg, steps=8)
    recipe.generator = {"type": "drop_gen", "scale": 2}
    full = make(reg, recipe, tmp_path / "full").run()
    make(reg, recipe, tmp_path / "split", stop_at=4).run()
    second = make(reg, recipe, tmp_path / "split", resume=True).run()
    a, b = weights(full.last_checkpoint), weights(second.last_checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("generator.", "ema.")))


def test_ema_follows_its_formula(reg, tmp_path):
    from facerestore.train.ema import EMA

    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    before = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, 0)  # decay ramps: min(0.9, 1/10) = 0.1
    assert torch.allclose(ema.module.weight, 0.1 * before + 0.9 * model.weight)
    ema.update(model, 1000)  # past the ramp: the recipe's 0.9
    expected = 0.9 * (0.1 * before + 0.9 * model.weight) + 0.1 * model.weight
    assert torch.allclose(ema.module.weight, expected)


def test_gradients_are_clipped(reg, tmp_path):
    t = make(reg, tiny_recipe(reg, steps=2, grad_clip=1e-3), tmp_path / "run")
    seen = []
    orig = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        total = orig(params, max_norm, *a, **k)
        seen.append((float(total), float(torch.norm(torch.stack([p.grad.norm() for p in params])))))
        return total

    import facerestore.train.trainer as trainer_mod

    trainer_mod.torch.nn.utils.clip_grad_norm_ = spy
    try:
        t.run()
    finally:
        trainer_mod.torch.nn.utils.clip_grad_norm_ = orig
    assert seen and all(after <= 1e-3 * 1.01 for _, after in seen)
    assert any(before > 1e-3 for before, _ in seen)


def test_frozen_discriminator_parameters_stay_frozen(reg, tmp_path):
    from test_train_helpers import TinyDisc

    class HalfFrozen(TinyDisc):
        def __init__(self):
            super().__init__()
            self.net[0].requires_grad_(False)

    reg.register("discriminator", "half_frozen", HalfFrozen)
    recipe = tiny_recipe(reg, steps=6, adv_start=0)
    recipe.discriminator = {"type": "half_frozen"}
    t = make(reg, recipe, tmp_path / "run")
    w0 = t.D.net[0].weight.clone()
    t.run()
    assert not t.D.net[0].weight.requires_grad and torch.equal(t.D.net[0].weight, w0)


def test_scaler_update_only_after_a_scaled_step(reg, tmp_path):
    """An fp16 GradScaler raises on update() without scale(); a step with no active loss scales nothing."""
    recipe = tiny_recipe(reg, steps=3, losses=[{"type": "l1", "on": "sr", "start": 2}])
    t = make(reg, recipe, tmp_path / "run")

    class Strict(torch.amp.GradScaler):
        def __init__(self):
            super().__init__("cpu", enabled=False)
            self.scaled = False

        def scale(self, x):
            self.scaled = True
            return super().scale(x)

        def update(self, *a, **k):
            if not self.scaled:
                raise AssertionError("update() without scale()")
            self.scaled = False

    t.scaler = Strict()
    t.run()
    assert t.step == 3


def test_cpu_bf16_autocast_is_opt_in(reg, tmp_path):
    from facerestore.device import cpu_has_bf16

    assert make(reg, tiny_recipe(reg), tmp_path / "a").amp_dtype is None
    t = make(reg, tiny_recipe(reg, cpu_amp=True), tmp_path / "b")
    assert t.amp_dtype == (torch.bfloat16 if cpu_has_bf16() else None)
    t.run()  # trains under autocast and writes finite weights
    assert all(torch.isfinite(v).all() for v in t.G.state_dict().values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the AMP/fp16 path)")
def test_amp_on_cuda_trains(reg, tmp_path):
    t = Trainer(tiny_recipe(reg, steps=4), tmp_path / "run", device="cuda", registry=reg,
                dataset=TensorFaces(24, 16), val_set=val_set(), tensorboard=False, echo=lambda m: None)
    assert t.amp_dtype in (torch.bfloat16, torch.float16)
    assert t.run().step == 4


def test_dataloader_workers_train_the_same_data(reg, tmp_path):
    """Decoding in 2 worker processes gives the weights of decoding in the main process: the
    batches, their order and the degradation stream do not depend on the workers."""
    results = {}
    for workers in (0, 2):
        recipe = tiny_recipe(reg, steps=4)
        recipe.data.workers = workers
        results[workers] = make(reg, recipe, tmp_path / f"run{workers}").run()
        assert results[workers].step == 4
    a, b = weights(results[0].last_checkpoint), weights(results[2].last_checkpoint)
    assert a.keys() == b.keys() and any(k.startswith("generator.") for k in a)
    for k in a:
        if k.startswith(("generator.", "ema.", "discriminator.")):
            assert torch.equal(a[k], b[k]), k


def test_a_loss_with_every_runs_on_one_step_in_k(reg, tmp_path):
    losses = [{"type": "l1", "on": "sr"}, {"type": "l1", "on": "denoised", "start": 1, "every": 3}]
    trainer = make(reg, tiny_recipe(reg, steps=2, losses=losses), tmp_path / "run")
    trainer.apply_stage(trainer.plan[0])
    on = [s for s in range(10) if "l1_denoised" in {t.name for t in trainer.active_terms(s)}]
    assert on == [1, 4, 7]
    with pytest.raises(RecipeError, match="every"):
        tiny_recipe(reg, losses=[{"type": "l1", "on": "sr", "every": 0}])


def test_init_warm_starts_the_generator_from_a_file(reg, tmp_path):
    from facerestore.checkpoint import save_generator

    src = make(reg, tiny_recipe(reg, steps=2), tmp_path / "a")
    src.run()
    path = tmp_path / "g.safetensors"
    save_generator(path, src.ema.module, src.recipe)
    warm = make(reg, tiny_recipe(reg, steps=2, init=str(path)), tmp_path / "b")
    for k, v in src.ema.module.state_dict().items():
        assert torch.equal(v, warm.G.state_dict()[k]), k
    assert all(torch.equal(v, warm.ema.module.state_dict()[k]) for k, v in warm.G.state_dict().items())
    cold = make(reg, tiny_recipe(reg, steps=2), tmp_path / "c")
    assert not all(torch.equal(v, cold.G.state_dict()[k]) for k, v in src.ema.module.state_dict().items())


def test_an_interrupted_run_saves_a_checkpoint_and_resumes(reg, tmp_path, monkeypatch):
    recipe = tiny_recipe(reg, steps=8, ckpt_every=100, val_every=100)
    trainer = make(reg, recipe, tmp_path / "run")
    calls = {"n": 0}
    step = trainer.train_step

    def interrupted(hq, landmarks):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return step(hq, landmarks)

    monkeypatch.setattr(trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert (tmp_path / "run" / "ckpt_00000003.safetensors").exists()
    resumed = make(reg, recipe, tmp_path / "run", resume=True)
    assert resumed.run().step == 8


def test_an_interrupt_that_also_killed_the_loader_worker_still_saves(reg, tmp_path, monkeypatch):
    """SIGTERM to the whole process group (Slurm's scancel, `kill -- -PGID`) kills the DataLoader
    worker too; its SIGCHLD, arriving while the trainer saves, made torch raise 'worker killed by
    signal' and the checkpoint was lost. Replayed in that order: torch's SIGCHLD handler is held
    back and called when the save starts."""
    import multiprocessing
    import os
    import signal

    recipe = tiny_recipe(reg, steps=8, ckpt_every=100, val_every=100)
    recipe.data.workers = 1
    trainer = make(reg, recipe, tmp_path / "run")
    calls, held = {"n": 0}, {}
    step, save = trainer.train_step, trainer.save_checkpoint

    def interrupted(hq, landmarks):
        calls["n"] += 1
        if calls["n"] == 4:
            held["torch"] = signal.signal(signal.SIGCHLD, lambda *a: None)
            (worker,) = multiprocessing.active_children()
            os.kill(worker.pid, signal.SIGKILL)  # an idle worker may exit cleanly on SIGTERM; a busy one did not
            os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped
            raise KeyboardInterrupt
        return step(hq, landmarks)

    def saving():
        signal.signal(signal.SIGCHLD, held["torch"])
        held["torch"](signal.SIGCHLD, None)  # the signal arrives now
        return save()

    monkeypatch.setattr(trainer, "train_step", interrupted)
    monkeypatch.setattr(trainer, "save_checkpoint", saving)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert (tmp_path / "run" / "ckpt_00000003.safetensors").exists()


def test_the_log_averages_a_term_over_the_steps_that_computed_it():
    """An ``every = 2`` term logged as the mean of its own values, not diluted by the steps
    that skipped it (it was logged at half its value)."""
    from facerestore.train.logger import LossMeter

    meter = LossMeter()
    for step in range(4):
        meter.add({"pixel": 1.0, **({"identity": 0.5} if step % 2 == 0 else {})}, 16)
    mean, ips = meter.flush()
    assert mean == {"pixel": 1.0, "identity": 0.5} and ips > 0
    assert meter.flush()[0] == {}


def test_random_hflip_mirrors_faces_and_their_landmarks():
    from facerestore.landmarks import template_landmarks
    from facerestore.train.data import random_hflip

    hq = torch.rand(6, 3, 16, 16)
    lm = template_landmarks(16, 6)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    same, same_lm = random_hflip(hq, lm, 0.0, g)
    assert same is hq and same_lm is lm and torch.equal(g.get_state(), state)  # p = 0 draws nothing
    out, out_lm = random_hflip(hq, lm, 1.0, g)
    assert torch.equal(out, hq.flip(-1))
    # left eye <-> right eye, mouth corners swap, x mirrored: the template maps (nearly) onto itself
    assert torch.allclose(out_lm, lm, atol=0.2)
    pts = torch.tensor([[[3.0, 4], [12, 4], [8, 9], [4, 12], [11, 12]]])
    _, moved = random_hflip(torch.rand(1, 3, 16, 16), pts, 1.0, g)
    assert moved[0, 0].tolist() == [4.0, 4.0] and moved[0, 3].tolist() == [5.0, 12.0]
    lm = lm + torch.randn(6, 5, 2)  # not symmetric: a kept and a mirrored set differ
    mixed, mixed_lm = random_hflip(hq, lm, 0.5, torch.Generator().manual_seed(0))
    flipped = [torch.equal(m, h.flip(-1)) for m, h in zip(mixed, hq)]
    kept = [torch.equal(m, h) for m, h in zip(mixed, hq)]
    assert flipped == (torch.rand(6, generator=torch.Generator().manual_seed(0)) < 0.5).tolist()
    assert kept == [not f for f in flipped] and any(flipped) and any(kept)
    _, all_mirrored = random_hflip(hq, lm, 1.0, g)
    for i, f in enumerate(flipped):
        assert torch.equal(mixed_lm[i], all_mirrored[i] if f else lm[i])
    with pytest.raises(FaceRestoreError, match="5-point"):
        random_hflip(hq, torch.rand(6, 68, 2), 0.5, g)


def test_resume_is_exact_with_hflip(reg, tmp_path):
    recipe = tiny_recipe(reg, steps=6, ckpt_every=3)
    recipe.data.hflip = 0.5
    full = make(reg, recipe, tmp_path / "full").run()
    make(reg, recipe, tmp_path / "split", stop_at=3).run()
    second = make(reg, recipe, tmp_path / "split", resume=True).run()
    a, b = weights(full.last_checkpoint), weights(second.last_checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hflip_reaches_the_degradation(reg, tmp_path, monkeypatch):
    """With hflip = 1 the pipeline degrades the mirrored batch; with 0 the batch as loaded."""
    import facerestore.train.trainer as trainer_mod

    seen = []
    real = trainer_mod.degrade
    monkeypatch.setattr(trainer_mod, "degrade", lambda pipe, hq, lm, gen: seen.append(hq.clone()) or real(pipe, hq, lm, gen))
    faces = TensorFaces(24, 16).images  # what make() trains on
    for p in (0.0, 1.0):
        recipe = tiny_recipe(reg, steps=1)
        recipe.data.hflip = p
        seen.clear()
        make(reg, recipe, tmp_path / str(p)).run()
        want = faces.flip(-1) if p else faces
        assert all(any(torch.equal(face, w) for w in want) for face in seen[0])


def test_resume_names_recipe_settings_that_changed(reg, tmp_path):
    make(reg, tiny_recipe(reg, steps=8), tmp_path / "run", stop_at=4).run()
    said = []
    changed = tiny_recipe(reg, steps=12)
    changed.data.hflip = 0.5

    def resume(recipe):
        said.clear()
        Trainer(recipe, tmp_path / "run", device="cpu", registry=reg, dataset=TensorFaces(24, 16), val_set=val_set(),
                tensorboard=False, echo=said.append, resume=True, stop_at=5).run()
        return [m for m in said if m.startswith("note: the recipe differs")]

    notes = resume(changed)
    assert len(notes) == 1 and "data.hflip" in notes[0] and "train.steps" in notes[0]
    assert "train.lr" not in notes[0]
    assert resume(changed) == []  # the checkpoint at step 5 was written with this recipe


def test_losses_receive_the_generators_input_as_lq(reg, tmp_path):
    from facerestore.interfaces import Loss

    seen: list[torch.Tensor] = []

    class Probe(Loss):
        def forward(self, pred, target, **context):
            seen.append(context["lq"].detach().clone())
            return (pred - target).abs().mean()

    reg.register("loss", "probe", Probe)
    recipe = tiny_recipe(reg, steps=3, losses=[{"type": "probe", "on": "sr"}])
    trainer = make(reg, recipe, tmp_path / "run")
    inputs: list[torch.Tensor] = []
    trainer.G.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
    trainer.run()
    assert len(seen) == 3 and all(s.shape == (4, 3, 8, 8) for s in seen)
    assert all(any(torch.equal(s, x) for x in inputs) for s in seen)


def test_distill_term_trains_against_a_frozen_teacher(reg, tmp_path):
    from facerestore_plugins.losses import DistillLoss
    from test_restore import tiny_checkpoint

    teacher = tiny_checkpoint(tmp_path / "teacher.safetensors")
    reg.register("loss", "distill", DistillLoss)
    recipe = tiny_recipe(reg, steps=4, losses=[{"type": "l1", "on": "sr"},
                                               {"type": "distill", "on": "sr", "teacher": teacher, "weight": 1}])
    trainer = make(reg, recipe, tmp_path / "run")
    (term,) = [t for t in trainer.terms if t.name == "distill_sr"]
    before = {k: v.clone() for k, v in term.module._teacher[0].generator.state_dict().items()}
    result = trainer.run()
    records = [json.loads(r) for r in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    values = [r["losses"]["distill_sr"] for r in records if r["event"] == "train"]
    assert values and all(v > 0 for v in values)
    after = term.module._teacher[0].generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # not trained
    tensors, _ = load_tensors(result.last_checkpoint)
    assert not any("teacher" in k for k in tensors)
    assert {k.split(".")[0] for k in tensors} >= {"generator", "ema"}
