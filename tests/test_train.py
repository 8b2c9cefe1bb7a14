"""Training: data batches, objectives, the loop, resume, run directories, CLI, export, DDP."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mssfs.model.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
from mssfs.model.diffusion import NoiseSchedule, cosine_betas
from mssfs.model.regression import predict_regression
from mssfs.model.unet import UNet, UNetConfig
from mssfs.train.batches import PatchBatch, StepBatches, derive_seed, make_batch, sample_patches, validation_batch
from mssfs.train.config import TrainConfig, TrainingError
from mssfs.train.losses import diffusion_loss, min_snr_weights, regression_loss
from mssfs.train.trainer import train

MICRO = UNetConfig(base_width=4, mults=(1,), groups=2, res_blocks=1, attn_heads=1, attn_head_dim=4,
                   time_sin_dim=4, time_dim=8, init_kernel=3)
TINY = UNetConfig(base_width=8, mults=(1, 2), res_blocks=1, attn_heads=1, attn_head_dim=8, time_sin_dim=8, time_dim=16)


class SphereImages:
    """Test data source: one shaded sphere per image on a black background."""

    def __init__(self, size=16, radius=(0.25, 0.45)):
        self.size, self.radius = size, radius

    def __call__(self, seed, rank, world_size):
        rng = np.random.default_rng([seed, rank])
        s = self.size
        yy, xx = np.mgrid[0:s, 0:s] + 0.5
        while True:
            cx, cy = rng.uniform(0.3 * s, 0.7 * s, 2)
            r = rng.uniform(*self.radius) * s
            x, y = (xx - cx) / r, -(yy - cy) / r
            d = 1 - x**2 - y**2
            m = d > 0
            n = np.stack([x, y, np.sqrt(np.clip(d, 0, None))]) * m
            light = rng.normal(size=3)
            light[2] = abs(light[2])
            light /= np.linalg.norm(light)
            img = np.clip(np.einsum("chw,c->hw", n, light), 0, None) * m
            yield {"image": img[None].astype(np.float32), "normals": n.astype(np.float32),
                   "mask": m[None].astype(np.float32), "light": light.astype(np.float32), "albedo": 1.0}


def micro_config(**kw):
    base = dict(model=MICRO, steps=40, patches_per_step=2, image_size=16, val_patches=8, val_every=20,
                log_every=10, checkpoint_every=20, warmup_steps=10, precision="fp32", keep_checkpoints=0)
    base.update(kw)
    return TrainConfig(**base)


def _params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# -- schedule and data -------------------------------------------------------------------


def test_diffusers_scheduler_matches_noise_schedule():
    pytest.importorskip("diffusers")  # a test-only cross-check (the test extra)
    sched = NoiseSchedule()
    ddpm = sched.diffusers_ddpm()
    np.testing.assert_allclose(ddpm.betas.numpy(), cosine_betas(), rtol=1e-6, atol=1e-9)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(6, 3, 16, 16, generator=g)
    t = torch.tensor([0, 1, 50, 150, 298, 299])
    torch.testing.assert_close(ddpm.add_noise(x0, noise, t), sched.add_noise(x0, noise, t), atol=1e-5, rtol=1e-5)


def test_derive_seed_is_deterministic_and_spread():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    seeds = {derive_seed(0, r, s) for r in range(4) for s in range(100)}
    assert len(seeds) == 400 and all(0 <= v < 2**63 for v in seeds)


def test_background_share_is_capped():
    src = SphereImages(size=64, radius=(0.1, 0.15))  # mostly background: 16 patches, ~1-4 touch the sphere
    for frac in (0.0, 0.25):
        shading, normals, mask = sample_patches(iter(src(1, 0, 1)), 40, frac, torch.Generator().manual_seed(0))
        assert shading.shape == (40, 1, 16, 16) and normals.shape == (40, 3, 16, 16) and mask.shape == (40, 1, 16, 16)
        n_bg = int((mask.flatten(1).amax(1) == 0).sum())
        assert n_bg <= int(frac * 40)
        assert n_bg == int(frac * 40)  # plenty of background available: the cap is reached
        bg = mask.flatten(1).amax(1) == 0
        assert shading[bg].abs().sum() == 0 and normals[bg].abs().sum() == 0
        assert (mask[~bg].flatten(1).amax(1) == 1).all()


def test_data_that_runs_out_is_an_error():
    with pytest.raises(TrainingError, match="ran out"):
        sample_patches(iter([]), 4, 0.1, torch.Generator())


def test_step_batches_are_a_function_of_seed_rank_and_step():
    cfg = micro_config(patches_per_step=8, image_size=32)
    a = StepBatches(SphereImages(32), cfg, rank=0, world_size=2)
    b = StepBatches(SphereImages(32), cfg, rank=1, world_size=2)
    x, y = a[5], a[5]
    assert x.t.shape == (4,)  # global batch split over 2 ranks
    for f in dataclasses.fields(PatchBatch):
        assert torch.equal(getattr(x, f.name), getattr(y, f.name))
    assert not torch.equal(a[6].noise, x.noise)
    assert not torch.equal(b[5].noise, x.noise)


def test_regression_loss_ignores_background():
    g = torch.Generator().manual_seed(0)
    normals = torch.randn(2, 3, 16, 16, generator=g)
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    batch = PatchBatch(torch.rand(2, 1, 16, 16, generator=g), normals, mask, torch.zeros(2, dtype=torch.long),
                       torch.zeros_like(normals))
    target_inside = normals * mask

    def model_a(x, t, s):
        return target_inside + (1 - mask) * 5.0  # exact inside, wild outside

    assert float(regression_loss(model_a, batch)) == 0.0
    assert float(regression_loss(lambda x, t, s: normals + 1.0, batch)) > 0.4


def test_min_snr_weighting_of_the_diffusion_loss():
    sched = NoiseSchedule()  # what training passes as the scheduler
    t = torch.tensor([0, 10, 50, 150, 250, 299])
    w = min_snr_weights(sched, t, 5.0)
    abar = sched.alphas_cumprod.double()[t]
    snr = abar / (1 - abar)
    assert torch.all(w[snr <= 5] == 1.0) and torch.all(w[snr > 5] < 1.0)
    torch.testing.assert_close(w[snr > 5].double(), (5 / snr[snr > 5]))
    assert torch.all(w[:-1] <= w[1:])  # noisier steps never weigh less

    g = torch.Generator().manual_seed(0)
    n = t.shape[0]
    normals = torch.rand(n, 3, 16, 16, generator=g) * 2 - 1
    batch = PatchBatch(torch.rand(n, 1, 16, 16, generator=g), normals, torch.ones(n, 1, 16, 16), t,
                       torch.randn(n, 3, 16, 16, generator=g))

    def zero_model(x, t, s):
        return torch.zeros_like(x)

    per_patch = torch.nn.functional.smooth_l1_loss(torch.zeros_like(batch.noise), batch.noise, reduction="none").mean((1, 2, 3))
    assert float(diffusion_loss(zero_model, batch, sched)) == pytest.approx(float(per_patch.mean()), rel=1e-6)
    assert float(diffusion_loss(zero_model, batch, sched, min_snr_gamma=5.0)) == pytest.approx(float((w * per_patch).mean()), rel=1e-6)
    with pytest.raises(TrainingError, match="min_snr_gamma"):
        TrainConfig(min_snr_gamma=-1.0)
    with pytest.raises(TrainingError, match="diffusion objective only"):
        TrainConfig(objective="regression", min_snr_gamma=5.0)


def test_min_snr_training_runs_and_validation_stays_unweighted(tmp_path):
    cfg = micro_config(steps=20)
    a = train(cfg, tmp_path / "a", source=SphereImages(), progress=False)
    b = train(dataclasses.replace(cfg, min_snr_gamma=5.0), tmp_path / "b", source=SphereImages(), progress=False)
    assert not torch.equal(_params(a.model), _params(b.model))  # the weighting changes the updates
    val = validation_batch(b.source, b.cfg)
    assert b.validate(val) == pytest.approx(float(diffusion_loss(b.ema.model, val.to(b.device), b.scheduler)), rel=1e-5)


def test_validation_batch_spreads_over_many_images():
    drawn = []

    class Counting(SphereImages):
        def __call__(self, seed, rank, world_size):
            for item in super().__call__(seed, rank, world_size):
                drawn.append(1)
                yield item

    cfg = micro_config(image_size=128, val_patches=64, max_background_frac=0.0)
    make_batch(Counting(128), 0, 0, 1, 64, cfg)  # a training batch takes as few images as fill it
    assert len(drawn) <= 4
    drawn.clear()
    val = validation_batch(Counting(128), cfg)
    assert len(drawn) >= 64 // 8
    assert val.normals.shape == (64, 3, 16, 16)
    assert val.t.tolist() == sorted(val.t.tolist()) and val.t[0] == 0 and val.t[-1] < cfg.timesteps
    again = validation_batch(SphereImages(128), cfg)  # fixed: same patches, t and noise every time
    assert torch.equal(again.normals, val.normals) and torch.equal(again.noise, val.noise)


# -- the training loop -------------------------------------------------------------------


def test_training_writes_run_and_learns(tmp_path):
    cfg = micro_config(model=TINY, steps=120, patches_per_step=8, image_size=32, val_every=40, val_patches=32,
                       checkpoint_every=60, keep_checkpoints=1, lr=3e-3, ema_decay=0.9)
    tr = train(cfg, tmp_path / "run", source=SphereImages(32), progress=False)
    run = tmp_path / "run"
    assert tr.step == 120 and tr.patches_seen == 120 * 8
    assert json.loads((run / "config.json").read_text())["patches_per_step"] == 8
    assert [s for s, _ in list_checkpoints(run)] == [120]  # keep_checkpoints=1 pruned step 60
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0] == "step,loss,val_loss,val_x0,patches_per_s,lr,time"
    vals = [float(r.split(",")[2]) for r in rows[1:] if r.split(",")[2]]
    assert len(vals) == 3 and vals[-1] < vals[0]  # validation loss (EMA weights) goes down
    x0s = [float(r.split(",")[3]) for r in rows[1:] if r.split(",")[3]]
    assert len(x0s) == 3 and x0s[-1] < x0s[0]  # and so does the target-independent x0 loss


def test_validation_is_deterministic(tmp_path):
    cfg = micro_config(steps=20)
    a = train(cfg, tmp_path / "a", source=SphereImages(), progress=False)
    b = train(cfg, tmp_path / "b", source=SphereImages(), progress=False)
    assert a.last_val == b.last_val
    assert torch.equal(_params(a.model), _params(b.model))


def _resume_matches_straight(tmp_path, steps, ckpt_step, precision="fp32"):
    cfg = micro_config(steps=steps, checkpoint_every=ckpt_step, val_every=ckpt_step // 2, log_every=50,
                       precision=precision)
    straight = train(cfg, tmp_path / "straight", source=SphereImages(), progress=False)
    ckpt = tmp_path / "straight" / "checkpoints" / f"step_{ckpt_step:08d}.safetensors"
    resumed = train(None, tmp_path / "resumed", source=SphereImages(), resume=ckpt, progress=False)
    assert resumed.step == straight.step == steps
    torch.testing.assert_close(_params(resumed.model), _params(straight.model), atol=1e-6, rtol=0)
    torch.testing.assert_close(_params(resumed.ema.model), _params(straight.ema.model), atol=1e-6, rtol=0)
    assert resumed.last_val == pytest.approx(straight.last_val, abs=1e-6)


def test_resume_continues_exactly(tmp_path):
    _resume_matches_straight(tmp_path, steps=100, ckpt_step=50)


def test_resume_continues_exactly_bf16(tmp_path):
    _resume_matches_straight(tmp_path, steps=40, ckpt_step=20, precision="bf16")


@pytest.mark.slow
def test_resume_2k_steps_matches_straight_run(tmp_path):
    """2,000 steps straight vs 1,000 + resume from the step-1,000 checkpoint + 1,000."""
    _resume_matches_straight(tmp_path, steps=2000, ckpt_step=1000)


def test_run_directory_rules(tmp_path):
    cfg = micro_config(steps=10, checkpoint_every=5)
    run = tmp_path / "run"
    train(cfg, run, source=SphereImages(), progress=False)
    with pytest.raises(TrainingError, match="--resume"):
        train(cfg, run, source=SphereImages(), progress=False)
    with pytest.raises(TrainingError, match="cannot change"):
        train(None, source=SphereImages(), resume=run, overrides={"lr": 1.0}, progress=False)
    tr = train(None, source=SphereImages(), resume=run, overrides={"steps": 15}, progress=False)
    assert tr.step == 15 and latest_checkpoint(run).name == "step_00000015.safetensors"
    steps_logged = [int(r.split(",")[0]) for r in (run / "log.csv").read_text().splitlines()[1:]]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == 15
    tr = train(cfg, run, source=SphereImages(), overwrite=True, progress=False)
    assert tr.step == 10 and latest_checkpoint(run).name == "step_00000010.safetensors"


def test_corrupt_checkpoint_refuses_to_resume(tmp_path):
    run = tmp_path / "run"
    train(micro_config(steps=10, checkpoint_every=10), run, source=SphereImages(), progress=False)
    ckpt = latest_checkpoint(run)
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=ckpt.name):
        train(None, source=SphereImages(), resume=run, overrides={"steps": 20}, progress=False)
    with pytest.raises(TrainingError, match="no checkpoints"):
        train(None, source=SphereImages(), resume=tmp_path, progress=False)


def test_regression_objective(tmp_path):
    cfg = micro_config(model=TINY, objective="regression", steps=30, patches_per_step=8, image_size=32, lr=3e-3)
    tr = train(cfg, tmp_path / "run", source=SphereImages(32), progress=False)
    assert tr.last_val is not None and np.isfinite(tr.last_val)
    img = next(iter(SphereImages(48)(0, 0, 1)))["image"][0]
    n = predict_regression(tr.ema.model, img)
    assert n.shape == (48, 48, 3)
    inside = img > 0
    np.testing.assert_allclose(np.linalg.norm(n[inside], axis=-1), 1.0, atol=1e-5)


def test_config_validation():
    with pytest.raises(TrainingError, match="objective"):
        TrainConfig(objective="gan")
    with pytest.raises(TrainingError, match="unknown config keys"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(TrainingError, match="multiple"):
        TrainConfig(image_size=100)
    d = TrainConfig(model=TINY).to_dict()
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == TrainConfig(model=TINY)


# -- command line, export, load_model ----------------------------------------------------


def test_cli_train_config_overrides_and_export(tmp_path, capsys):
    from mssfs.cli import main

    cfg = {"model": TINY.to_dict(), "steps": 5, "patches_per_step": 4, "image_size": 32, "val_patches": 8,
           "val_every": 3, "checkpoint_every": 100, "precision": "fp32"}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    run = tmp_path / "run"
    argv = ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(run), "--steps", "3", "--no-progress"]
    assert main(argv) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["steps"] == 3 and saved["patches_per_step"] == 4 and saved["model"]["base_width"] == 8
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--steps", "4", "--no-progress"]) == 0
    assert latest_checkpoint(run).name == "step_00000004.safetensors"
    assert main(["train", "--resume", str(run), "--base-width", "16"]) == 2

    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    import mssfs

    model = mssfs.load_model(out)
    info = json.loads((out / "config.json").read_text())
    assert info["training"]["steps"] == 4 and info["objective"] == "diffusion" and info["schedule"]["T"] == 300
    card = (out / "MODEL_CARD.md").read_text()
    assert "steps: 4" in card
    sections = [line[3:] for line in card.splitlines() if line.startswith("## ")]
    assert sections == ["Model details", "Intended use and limits", "How to use", "Training data",
                        "Training procedure and compute", "Evaluation", "Licence", "Citation"]
    from mssfs.sampler.api import resolve_model

    assert "notice" not in info and "notice" not in resolve_model(str(out), torch.device("cpu"))[1]
    assert main(["export", str(run), "--out", str(tmp_path / "interim"), "--notice", "interim weights"]) == 0
    assert resolve_model(str(tmp_path / "interim"), torch.device("cpu"))[1]["notice"] == "interim weights"
    from mssfs.model.checkpoint import load_checkpoint

    ema = load_checkpoint(latest_checkpoint(run)).tensors["ema"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, ema[k])
    assert not model.training and not any(p.requires_grad for p in model.parameters())


@pytest.fixture()
def export_dir(tmp_path):
    from mssfs.model.weights import export_checkpoint

    run = tmp_path / "run"
    train(micro_config(steps=2, checkpoint_every=2), run, source=SphereImages(), progress=False)
    return export_checkpoint(run, tmp_path / "exp")


def test_load_model_refuses_bad_exports(export_dir):
    from safetensors.torch import load_file, save_file

    import mssfs

    cfg_path, w_path = export_dir / "config.json", export_dir / "model.safetensors"
    good_cfg, good_w = cfg_path.read_text(), w_path.read_bytes()

    cfg_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json.*JSON"):
        mssfs.load_model(export_dir)
    cfg_path.write_text(good_cfg)

    w_path.write_bytes(good_w[:-50])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        mssfs.load_model(export_dir)

    # consistent files (checksum updated) whose tensors do not fit the declared model
    from mssfs.model.weights import _sha256

    w_path.write_bytes(good_w)
    state = load_file(str(w_path))
    for mutate, message in ((lambda s: s.pop("head.bias"), "missing keys"),
                            (lambda s: s.__setitem__("head.bias", torch.zeros(5)), "shape")):
        s = dict(state)
        mutate(s)
        save_file(s, str(w_path))
        c = json.loads(good_cfg)
        c["weights"]["sha256"] = _sha256(w_path)
        cfg_path.write_text(json.dumps(c))
        with pytest.raises(CheckpointError, match=message):
            mssfs.load_model(export_dir)
    with pytest.raises(CheckpointError, match="no such"):
        mssfs.load_model(export_dir / "nope")


def test_package_default_weights_load():
    import mssfs
    from mssfs.model.weights import DEFAULT_DIR

    if not (DEFAULT_DIR / "config.json").is_file():
        pytest.skip("no default weights exported yet")
    model = mssfs.load_model()
    x = torch.zeros(2, 3, 16, 16)
    eps = model(x, torch.tensor([0, 299]), torch.zeros(2, 1, 16, 16))
    assert eps.shape == (2, 3, 16, 16) and torch.isfinite(eps).all()
    assert model.info["schedule"]["T"] == 300


# -- distributed -------------------------------------------------------------------------

DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_train import SphereImages, micro_config
from mssfs.train.trainer import train
from safetensors.torch import save_file
cfg = micro_config(steps=6, patches_per_step=4, checkpoint_every=3, val_every=3, device="cpu")
tr = train(cfg, {run!r}, source=SphereImages(), progress=False)
rank = tr.dist.rank
save_file({{k: v.contiguous() for k, v in tr.model.state_dict().items()}}, {out!r} + f"/rank{{rank}}.safetensors")
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_replicas_identical(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), run=str(tmp_path / "run"), out=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    init = UNet(MICRO).state_dict()
    assert any(not torch.equal(r0[k], init[k]) for k in r0)  # they did train
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [3, 6]  # rank 0 alone writes
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["patches_per_step"] == 4


def test_init_from_export_starts_model_and_ema_from_its_weights(tmp_path, export_dir):
    import mssfs

    src = mssfs.load_model(export_dir)
    cfg = micro_config(steps=1, init=str(export_dir), checkpoint_every=1, val_every=0)
    tr = train(cfg, tmp_path / "fine", source=SphereImages(), progress=False)
    assert tr.init_info["path"] == str(export_dir) and tr.init_info["steps"] == 2
    # after one step with EMA warm-up decay 1/10 the EMA is still close to the init weights,
    # and far closer than a fresh initialisation is
    fresh = UNet(MICRO)
    d_init = (_params(tr.ema.model) - _params(src)).norm()
    d_fresh = (_params(fresh) - _params(src)).norm()
    assert d_init < 0.1 * d_fresh
    from mssfs.model.weights import export_checkpoint

    card = (export_checkpoint(tmp_path / "fine", tmp_path / "exp2") / "MODEL_CARD.md").read_text()
    assert "started from the weights in" in card and "2 steps" in card
    # resuming never re-reads the init weights (they may be gone)
    (export_dir / "model.safetensors").unlink()
    train(None, resume=tmp_path / "fine", overrides={"steps": 2}, progress=False, source=SphereImages())


def test_init_refuses_other_objective_or_shape(tmp_path, export_dir):
    with pytest.raises(TrainingError, match="regression"):
        train(micro_config(objective="regression", init=str(export_dir)), tmp_path / "a", source=SphereImages(), progress=False)
    with pytest.raises(TrainingError, match="model shape"):
        train(micro_config(model=TINY, init=str(export_dir)), tmp_path / "b", source=SphereImages(), progress=False)
    with pytest.raises(TrainingError, match="no such model folder"):
        train(micro_config(init=str(tmp_path / "missing")), tmp_path / "c", source=SphereImages(), progress=False)


def test_init_may_drop_linear_attentions_but_not_add_them(tmp_path, export_dir):
    import dataclasses

    import mssfs
    from mssfs.model.weights import export_checkpoint
    from mssfs.train.trainer import initialise_from

    no_attn = dataclasses.replace(MICRO, linear_attn_from=1)  # MICRO has one level: no linear attention left
    model = UNet(no_attn)
    info = initialise_from(model, micro_config(model=no_attn, init=str(export_dir)))
    assert info["dropped"] == ["down.0.attn", "up.0.attn"]
    src = mssfs.load_model(export_dir).state_dict()
    got = model.state_dict()
    assert set(got) < set(src) and all(torch.equal(got[k], src[k]) for k in got)
    assert not any(".attn." in k for k in got)
    run = tmp_path / "drop"
    train(micro_config(model=no_attn, steps=1, checkpoint_every=1, val_every=0, init=str(export_dir)), run,
          source=SphereImages(), progress=False)
    card = (export_checkpoint(run, tmp_path / "drop_exp") / "MODEL_CARD.md").read_text()
    assert "without its down.0.attn, up.0.attn" in card and "no linear attention below level 1" in card
    # the other way round (the run would have attentions the export lacks) is refused
    train(micro_config(model=no_attn, steps=2, checkpoint_every=2), tmp_path / "na", source=SphereImages(), progress=False)
    small = export_checkpoint(tmp_path / "na", tmp_path / "na_exp")
    assert mssfs.load_model(small).config.linear_attn_from == 1
    with pytest.raises(TrainingError, match="only dropping linear attentions"):
        initialise_from(UNet(MICRO), micro_config(init=str(small)))


def test_max_minutes_stops_with_a_checkpoint_and_resume_continues(tmp_path, monkeypatch):
    import mssfs.train.trainer as T

    calls = {"n": 0}
    real = T.time.perf_counter

    def fake_clock():  # each reading advances a minute: the limit is reached at the first log step
        calls["n"] += 1
        return real() + 60.0 * calls["n"]

    monkeypatch.setattr(T.time, "perf_counter", fake_clock)
    cfg = micro_config(steps=40, log_every=10, max_minutes=1.5, checkpoint_every=0)
    tr = train(cfg, tmp_path / "run", source=SphereImages(), progress=False)
    assert tr.step == 10
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [10]
    monkeypatch.setattr(T.time, "perf_counter", real)
    tr = train(None, resume=tmp_path / "run", overrides={"max_minutes": 0.0}, progress=False, source=SphereImages())
    assert tr.step == 40
    with pytest.raises(TrainingError, match="max_minutes"):
        micro_config(max_minutes=-1)


def test_cli_train_init_without_model_options_takes_the_exports_shape(tmp_path, capsys):
    """`mssfs train --init EXPORT` with no model options continues EXPORT's architecture
    (e.g. the shipped weights, which lack the level-0 linear attentions); a config that
    names another shape is still refused."""
    import dataclasses

    from mssfs.cli import main
    from mssfs.model.weights import export_checkpoint

    lean = dataclasses.replace(TINY, linear_attn_from=1)
    train(micro_config(model=lean, steps=2, checkpoint_every=2), tmp_path / "lean", source=SphereImages(), progress=False)
    exp = export_checkpoint(tmp_path / "lean", tmp_path / "lean_exp")
    cfg = {"steps": 1, "patches_per_step": 4, "image_size": 32, "val_patches": 8, "val_every": 0,
           "checkpoint_every": 1, "precision": "fp32"}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    run = tmp_path / "more"
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--init", str(exp), "--out", str(run),
                 "--no-progress"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert UNetConfig.from_dict(saved["model"]) == lean
    # a file inside the export works as well; an explicit other shape is refused with the reason
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--init", str(exp / "model.safetensors"),
                 "--out", str(tmp_path / "more2"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--init", str(exp), "--linear-attn-from", "0",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "only dropping linear attentions" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
