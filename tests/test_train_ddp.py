"""Two CPU processes under torchrun (gloo): identical weights on both ranks, one checkpoint
writer, per-rank random streams in the checkpoint, and a resumed two-process run."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import torch

from facerestore.checkpoint import load_tensors, read_metadata
from facerestore.train.state import list_checkpoints

TESTS = pathlib.Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import os, pathlib, sys
    import torch
    from safetensors.torch import save_file
    torch.set_num_threads(1)
    from test_train_helpers import TensorFaces, tiny_recipe, tiny_registry
    from facerestore.train import Trainer
    from facerestore.train.validation import ValidationSet

    run, stop = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    reg = tiny_registry()
    recipe = tiny_recipe(reg, steps=6, ckpt_every=3, batch_size=2)
    hq = TensorFaces(4, 16, seed=9).images
    val = ValidationSet(torch.nn.functional.avg_pool2d(hq, 2), hq)
    trainer = Trainer(recipe, run, device="cpu", registry=reg, dataset=TensorFaces(24, 16), val_set=val,
                      tensorboard=False, stop_at=stop, resume=stop > 3)
    try:
        trainer.run()
        state = {**{"g." + k: v for k, v in trainer.G.state_dict().items()},
                 **{"d." + k: v for k, v in trainer.D.state_dict().items()}}
        save_file({k: v.contiguous() for k, v in state.items()},
                  str(run.parent / f"rank{trainer.dist.rank}_{stop}.safetensors"))
    finally:
        trainer.close()
""")


def _launch(script: pathlib.Path, run: pathlib.Path, stop: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(run), str(stop)], capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_process_training_and_resume(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    _launch(script, run, 3)
    _launch(script, run, 6)
    for stop in (3, 6):
        r0, _ = load_tensors(tmp_path / f"rank0_{stop}.safetensors")
        r1, _ = load_tensors(tmp_path / f"rank1_{stop}.safetensors")
        assert r0.keys() == r1.keys()
        for k in r0:  # gradients were averaged: the ranks never drift apart
            assert torch.equal(r0[k], r1[k]), k
    # rank 0 alone wrote checkpoints; they hold both ranks' random streams
    assert [s for s, _ in list_checkpoints(run)] == [3, 6]
    meta = read_metadata(run / "last.safetensors")
    assert meta["world_size"] == "2"
    tensors, _ = load_tensors(run / "last.safetensors")
    assert not torch.equal(tensors["rng.r0.degrade"], tensors["rng.r1.degrade"])
    final, _ = load_tensors(tmp_path / "rank0_6.safetensors")
    assert all(torch.equal(tensors[f"generator.{k[2:]}"], v) for k, v in final.items() if k.startswith("g."))
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    # one writer: log_every=2 plus the stop of each invocation
    assert [r["step"] for r in records if r["event"] == "train"] == [2, 3, 4, 6]
