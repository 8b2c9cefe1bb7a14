"""Gradient accumulation: K micro-batches give the update of the whole batch."""

import dataclasses

import pytest
import torch
from test_train import TINY, SphereImages, _params, micro_config

from mssfs.model.diffusion import NoiseSchedule
from mssfs.model.unet import UNet
from mssfs.train.accumulate import loss_shares, micro_batches
from mssfs.train.batches import make_batch
from mssfs.train.config import TrainConfig, TrainingError
from mssfs.train.distributed import Dist
from mssfs.train.losses import LOSSES
from mssfs.train.trainer import Trainer, train


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("objective,options", [("diffusion", {}), ("diffusion", {"min_snr_gamma": 5.0}),
                                               ("regression", {})])
def test_micro_batch_gradients_sum_to_the_batch_gradient(objective, options):
    cfg = micro_config(objective=objective, patches_per_step=16, image_size=64, max_background_frac=0.5)
    batch = make_batch(SphereImages(64, radius=(0.1, 0.15)), 3, 0, 1, 16, cfg)
    # a background-only micro-batch (mask sum 0) must be handled by the regression shares
    order = torch.argsort(batch.mask.flatten(1).amax(1))
    batch = dataclasses.replace(batch, **{f.name: getattr(batch, f.name)[order] for f in dataclasses.fields(batch)})
    assert batch.mask[:4].sum() == 0
    torch.manual_seed(0)
    model = UNet(TINY)
    fn, sched = LOSSES[objective], NoiseSchedule()
    full = fn(model, batch, sched, **options)
    full.backward()
    g_full = _grads(model)
    model.zero_grad()
    micros = micro_batches(batch, 4)
    total = 0.0
    for micro, share in zip(micros, loss_shares(objective, micros)):
        part = fn(model, micro, sched, **options) * share
        part.backward()
        total += float(part.detach())
    assert total == pytest.approx(float(full.detach()), rel=1e-5)
    torch.testing.assert_close(_grads(model), g_full, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("objective,options", [("diffusion", {"min_snr_gamma": 5.0}), ("regression", {})])
def test_accumulated_training_matches_whole_batches(tmp_path, objective, options):
    cfg = micro_config(model=TINY, objective=objective, steps=4, patches_per_step=8, image_size=32, lr=1e-3,
                       val_every=0, checkpoint_every=0, log_every=1, **options)
    whole = train(cfg, tmp_path / "k1", source=SphereImages(32), progress=False)
    acc = train(dataclasses.replace(cfg, accumulate=4), tmp_path / "k4", source=SphereImages(32), progress=False)
    assert not torch.equal(_params(whole.model), _params(UNet(TINY)))
    torch.testing.assert_close(_params(acc.model), _params(whole.model), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(_params(acc.ema.model), _params(whole.ema.model), rtol=1e-4, atol=1e-5)
    losses = [[float(r.split(",")[1]) for r in (tmp_path / d / "log.csv").read_text().splitlines()[1:]]
              for d in ("k1", "k4")]
    assert len(losses[0]) == 4 and losses[1] == pytest.approx(losses[0], rel=1e-4)  # the whole batch's loss


def test_accumulate_may_change_on_resume(tmp_path):
    cfg = micro_config(model=TINY, steps=4, patches_per_step=8, image_size=32, checkpoint_every=2, val_every=0)
    straight = train(cfg, tmp_path / "a", source=SphereImages(32), progress=False)
    ckpt = tmp_path / "a" / "checkpoints" / "step_00000002.safetensors"
    resumed = train(None, tmp_path / "b", source=SphereImages(32), resume=ckpt, overrides={"accumulate": 2},
                    progress=False)
    assert resumed.cfg.accumulate == 2
    torch.testing.assert_close(_params(resumed.model), _params(straight.model), rtol=1e-4, atol=1e-5)


def test_accumulate_refusals(tmp_path):
    with pytest.raises(TrainingError, match="accumulate must be a positive integer"):
        TrainConfig(accumulate=0)
    with pytest.raises(TrainingError, match="not divisible by accumulate 3"):
        TrainConfig(patches_per_step=8, accumulate=3)
    cfg = micro_config(patches_per_step=8, accumulate=8)  # 4 patches per process on 2 processes
    with pytest.raises(TrainingError, match="4 patches per process cannot be split into accumulate 8"):
        Trainer(cfg, tmp_path / "run", source=SphereImages(), dist=Dist(rank=0, world_size=2))
    with pytest.raises(TrainingError, match="cannot be split into 3 equal micro-batches"):
        micro_batches(make_batch(SphereImages(), 0, 0, 1, 4, cfg), 3)


DDP_SCRIPT = """
import dataclasses, sys, torch
sys.path.insert(0, {tests!r})
from test_train import TINY, SphereImages, micro_config
from mssfs.train.trainer import train
from safetensors.torch import save_file
cfg = micro_config(model=TINY, steps=3, patches_per_step=8, image_size=32, lr=1e-3, checkpoint_every=0, val_every=0,
                   device="cpu")
torch.distributed.init_process_group("gloo")  # one group for both runs
for k in (1, 2):
    tr = train(dataclasses.replace(cfg, accumulate=k), {run!r} + f"/k{{k}}", source=SphereImages(32), progress=False)
    state = {{n: v.contiguous() for n, v in tr.model.state_dict().items()}}
    save_file(state, {out!r} + f"/k{{k}}_rank{{tr.dist.rank}}.safetensors")
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
def test_ddp_accumulation_matches_whole_batches(tmp_path):
    """Two CPU processes, 4 patches each: accumulate 2 (gradients all-reduced once, after the
    last micro-batch) gives the replicas and the update of accumulate 1."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), run=str(tmp_path), out=str(tmp_path)))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)],
        env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w = {(k, r): load_file(str(tmp_path / f"k{k}_rank{r}.safetensors")) for k in (1, 2) for r in (0, 1)}
    for name in w[1, 0]:
        assert torch.equal(w[2, 0][name], w[2, 1][name]), name
        torch.testing.assert_close(w[2, 0][name], w[1, 0][name], rtol=1e-4, atol=1e-5)
