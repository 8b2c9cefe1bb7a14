"""Prediction targets of the denoiser (eps, v, x0): the schedule's conversions, the U-Net that
returns the noise whatever its head predicts, the training loss and its min-SNR weights,
the target-independent validation number, the command line, --init, export and sampling."""

import dataclasses
import json
import types

import numpy as np
import pytest
import torch
from test_train import MICRO, TINY, SphereImages, micro_config

from mssfs.model.diffusion import PREDICTIONS, NoiseSchedule
from mssfs.model.unet import UNet, UNetConfig
from mssfs.train.batches import PatchBatch, validation_batch
from mssfs.train.config import TrainConfig, TrainingError
from mssfs.train.losses import diffusion_loss, min_snr_weights, prediction_of, x0_loss
from mssfs.train.trainer import train

T_CHECKED = (0, 1, 150, 298, 299)


def _data(n, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(n, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    noise = torch.randn(n, 3, 16, 16, generator=g, dtype=torch.float64).to(dtype)
    return x0, noise


# -- the schedule's conversions ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", PREDICTIONS)
def test_targets_convert_back_to_noise_and_normals(kind, dtype):
    sched = NoiseSchedule()
    x0, noise = _data(len(T_CHECKED), dtype)
    t = torch.tensor(T_CHECKED)
    a, b = sched.roots(t, x0)
    x_t = a * x0 + b * noise
    out = sched.target(kind, x0, noise, t)
    assert out.shape == x0.shape and out.dtype == dtype
    abar = sched.alphas_cumprod[t]
    # the conversions divide by sqrt(1 - abar) (x0 -> eps) or sqrt(abar) (eps -> x0): rounding
    # grows by 1 / min of the two, about 80 at t = 0 and 2e4 at t = 299
    scale = 1 / torch.minimum(abar.sqrt(), (1 - abar).sqrt())
    unit = (1e-12 if dtype == torch.float64 else 2e-6) * scale.to(dtype).reshape(-1, 1, 1, 1)
    assert ((sched.eps_from(kind, x_t, out, t) - noise).abs() <= unit).all()
    assert ((sched.x0_from(kind, x_t, out, t) - x0).abs() <= unit).all()
    a, b = abar.sqrt().reshape(-1, 1, 1, 1), (1 - abar).sqrt().reshape(-1, 1, 1, 1)
    expected = {"eps": noise.double(), "x0": x0.double(), "v": a * noise.double() - b * x0.double()}[kind]
    torch.testing.assert_close(out.double(), expected, atol=1e-6 if dtype == torch.float32 else 1e-14, rtol=0)


def test_v_target_at_the_ends_of_the_schedule():
    sched = NoiseSchedule()
    x0, noise = _data(2)
    v = sched.target("v", x0, noise, torch.tensor([0, 299]))
    torch.testing.assert_close(v[0], noise[0], atol=0.02, rtol=0)  # nearly clean: v ~ eps
    torch.testing.assert_close(v[1], -x0[1], atol=2e-4, rtol=0)  # nearly pure noise: v ~ -x0


@pytest.mark.parametrize("kind", PREDICTIONS)
def test_conversions_gradcheck(kind):
    sched = NoiseSchedule(50)
    t = torch.tensor([0, 17, 49])
    x0, noise = (v[:, :, :4, :4].clone().requires_grad_() for v in _data(3, torch.float64, seed=1))
    assert torch.autograd.gradcheck(lambda a, b: sched.target(kind, a, b, t), (x0, noise))
    assert torch.autograd.gradcheck(lambda a, b: sched.eps_from(kind, a, b, t), (x0, noise))
    assert torch.autograd.gradcheck(lambda a, b: sched.x0_from(kind, a, b, t), (x0, noise))


def test_unknown_prediction_is_refused_in_one_line():
    x0, noise = _data(1)
    for call in (lambda: NoiseSchedule().target("score", x0, noise, 3), lambda: UNetConfig(prediction="score"),
                 lambda: NoiseSchedule().eps_from("V", x0, noise, 3)):
        with pytest.raises(ValueError, match="prediction must be one of eps, v, x0") as info:
            call()
        assert "\n" not in str(info.value)
    with pytest.raises(TrainingError, match="prediction must be one of"):
        TrainConfig.from_dict({"model": {"prediction": "score"}})
    with pytest.raises(ValueError, match="timesteps"):
        UNetConfig(timesteps=1)


# -- the network -------------------------------------------------------------------------


def _inputs(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 3, 16, 16, generator=g), torch.tensor([0, 1, 150, 299][:b]),
            torch.rand(b, 1, 16, 16, generator=g))


def test_eps_network_is_unchanged_and_weights_format_is_the_same_for_every_target():
    torch.manual_seed(0)
    eps_model = UNet(TINY).eval()
    x, t, s = _inputs(4)
    with torch.no_grad():
        assert torch.equal(eps_model(x, t, s), eps_model(x, t, s, raw=True))
    assert not list(eps_model.buffers())
    for kind in ("v", "x0"):
        other = UNet(dataclasses.replace(TINY, prediction=kind))
        assert other.state_dict().keys() == eps_model.state_dict().keys()
        other.load_state_dict(eps_model.state_dict())  # the same tensors fit every target


@pytest.mark.parametrize("kind", ["v", "x0"])
def test_v_and_x0_networks_return_the_noise(kind):
    torch.manual_seed(0)
    model = UNet(dataclasses.replace(TINY, prediction=kind, timesteps=300)).eval()
    x, t, s = _inputs(4)
    sched = NoiseSchedule(300)
    with torch.no_grad():
        raw = model(x, t, s, raw=True)
        eps = model(x, t, s)
        torch.testing.assert_close(eps, sched.eps_from(kind, x, raw, t), atol=0, rtol=0)
        # the normals of the returned noise (in float64) are the head's, up to float32
        # rounding divided by sqrt(abar_t)
        x0 = sched.predict_x0(x.double(), eps.double(), t, clip=False)
        gap = (sched.x0_from(kind, x, raw, t).double() - x0).abs()
        a = sched.alphas_cumprod[t].sqrt().reshape(-1, 1, 1, 1)
        assert (gap <= 1e-6 * (1 + x.abs() + raw.abs()) / a).all()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t, s)
    assert low.dtype == torch.float32  # the conversion runs in float32
    x.requires_grad_(True)
    model(x, t, s).sum().backward()  # guidance differentiates through the conversion
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    small = UNet(dataclasses.replace(TINY, prediction=kind, timesteps=50))
    torch.testing.assert_close(small.roots[0] ** 2, NoiseSchedule(50).alphas_cumprod.float())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # importing torch.compile's machinery
def test_prediction_of_looks_through_wrappers():
    v_model = UNet(dataclasses.replace(MICRO, prediction="v"))
    assert prediction_of(v_model) == "v"
    assert prediction_of(torch.compile(v_model)) == "v"  # lazily compiled: nothing runs here
    assert prediction_of(types.SimpleNamespace(module=types.SimpleNamespace(model=v_model))) == "v"
    assert prediction_of(lambda x, t, s: x) == "eps"


# -- the loss ----------------------------------------------------------------------------


def _batch(n, seed=0):
    x0, noise = _data(n, seed=seed)
    t = torch.tensor([0, 10, 50, 150, 250, 299][:n])
    return PatchBatch(torch.rand(n, 1, 16, 16), x0, torch.ones(n, 1, 16, 16), t, noise)


@torch.no_grad()
@pytest.mark.parametrize("kind", PREDICTIONS)
def test_diffusion_loss_compares_the_head_with_its_target(kind):
    torch.manual_seed(0)
    model = UNet(dataclasses.replace(MICRO, prediction=kind)).eval()
    sched, batch = NoiseSchedule(), _batch(6)
    x_t = sched.add_noise(batch.normals, batch.noise, batch.t)
    per = torch.nn.functional.smooth_l1_loss(model(x_t, batch.t, batch.shading, raw=True),
                                             sched.target(kind, batch.normals, batch.noise, batch.t),
                                             reduction="none").mean((1, 2, 3))
    assert float(diffusion_loss(model, batch, sched)) == pytest.approx(float(per.mean()), rel=1e-6)
    w = min_snr_weights(sched, batch.t, 5.0, kind)
    assert float(diffusion_loss(model, batch, sched, min_snr_gamma=5.0)) == pytest.approx(float((w * per).mean()), rel=1e-6)


def test_min_snr_weights_weigh_the_x0_error_alike_for_every_target():
    """With squared errors, each target's weighted loss is ``min(SNR, gamma)`` times the
    x0 error of the same prediction: the weights are the same weighting in three units."""
    sched, gamma = NoiseSchedule(), 5.0
    x0, noise = _data(6, torch.float64)
    t = torch.tensor([0, 10, 50, 150, 250, 299])
    x_t = sched.add_noise(x0, noise, t)
    guess = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eps_guess = sched.eps_from("x0", x_t, guess, t)  # the noise that goes with the guessed x0
    abar = sched.alphas_cumprod[t]
    per_x0 = (abar / (1 - abar)).clamp(max=gamma) * ((guess - x0) ** 2).mean((1, 2, 3))
    for kind in PREDICTIONS:
        err = ((sched.target(kind, guess, eps_guess, t) - sched.target(kind, x0, noise, t)) ** 2).mean((1, 2, 3))
        torch.testing.assert_close(min_snr_weights(sched, t, gamma, kind).double() * err, per_x0, rtol=1e-5, atol=0)


def test_x0_loss_does_not_depend_on_the_target():
    sched, batch = NoiseSchedule(), _batch(6)
    guess = batch.normals.flip(0) * 0.5  # one fixed guess of the normals

    class Guessing(torch.nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.config = types.SimpleNamespace(prediction=kind)

        def forward(self, x_t, t, s, raw=False):
            out = sched.target(self.config.prediction, guess, sched.eps_from("x0", x_t, guess, t), t)
            return out if raw else sched.eps_from(self.config.prediction, x_t, out, t)

    losses = [float(x0_loss(Guessing(kind), batch, sched)) for kind in PREDICTIONS]
    expected = float(torch.nn.functional.smooth_l1_loss(guess.clamp(-1, 1), batch.normals))
    assert losses == pytest.approx([expected] * 3, rel=1e-4)


# -- training, command line, --init, resume ------------------------------------------------


def test_train_config_gives_the_model_the_runs_schedule():
    cfg = TrainConfig(model=dataclasses.replace(TINY, prediction="x0"), timesteps=50)
    assert cfg.model.timesteps == 50 and cfg.model.prediction == "x0"
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(TrainingError, match="diffusion objective only"):
        TrainConfig(objective="regression", model=dataclasses.replace(TINY, prediction="v"))


def test_cli_timesteps_is_the_runs_and_the_models(capsys):
    import yaml

    from mssfs.cli import main

    assert main(["train", "--print-config", "--prediction", "x0", "--timesteps", "100"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["timesteps"] == 100 and printed["model"]["timesteps"] == 100
    assert printed["model"]["prediction"] == "x0"


def test_v_run_logs_val_x0_and_refuses_another_target_on_resume(tmp_path):
    cfg = micro_config(model=dataclasses.replace(MICRO, prediction="v"), steps=20, val_every=10)
    tr = train(cfg, tmp_path / "v", source=SphereImages(), progress=False)
    val = validation_batch(tr.source, tr.cfg)
    assert tr.validate(val) == pytest.approx(float(diffusion_loss(tr.ema.model, val, tr.scheduler)), rel=1e-6)
    assert tr.last_val_x0 == pytest.approx(float(x0_loss(tr.ema.model, val, tr.scheduler)), rel=1e-6)
    rows = (tmp_path / "v" / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[3] == "val_x0"
    assert [r.split(",")[3] != "" for r in rows[1:]] == [r.split(",")[2] != "" for r in rows[1:]] == [True, True]
    eps_model = {**cfg.model.to_dict(), "prediction": "eps"}
    with pytest.raises(TrainingError, match="cannot change"):
        train(None, resume=tmp_path / "v", overrides={"model": eps_model, "steps": 30}, progress=False,
              source=SphereImages())


def test_resume_of_a_log_without_val_x0_keeps_one_header(tmp_path):
    run = tmp_path / "run"
    train(micro_config(steps=10, val_every=5, checkpoint_every=10), run, source=SphereImages(), progress=False)
    log = run / "log.csv"
    old = [",".join(c for i, c in enumerate(line.split(",")) if i != 3) for line in log.read_text().splitlines()]
    log.write_text("\n".join(old) + "\n")  # as written before the column existed
    assert old[0] == "step,loss,val_loss,patches_per_s,lr,time"
    train(None, resume=run, overrides={"steps": 20}, progress=False, source=SphereImages())
    lines = log.read_text().splitlines()
    assert lines[0] == "step,loss,val_loss,val_x0,patches_per_s,lr,time"
    assert all(len(line.split(",")) == 7 for line in lines) and lines.count(lines[0]) == 1
    assert [line.split(",")[3] != "" for line in lines[1:]] == [False, False, True, True]


@pytest.fixture()
def eps_export(tmp_path):
    from mssfs.model.weights import export_checkpoint

    train(micro_config(model=TINY, steps=2, checkpoint_every=2, patches_per_step=4, image_size=32), tmp_path / "eps",
          source=SphereImages(32), progress=False)
    return export_checkpoint(tmp_path / "eps", tmp_path / "eps_exp")


def test_cli_init_of_an_eps_export_into_a_v_run(tmp_path, eps_export, capsys):
    import mssfs
    from mssfs.cli import main
    from mssfs.model.weights import export_checkpoint

    cfg = {"steps": 1, "patches_per_step": 4, "image_size": 32, "val_patches": 8, "val_every": 1,
           "checkpoint_every": 1, "precision": "fp32"}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    run = tmp_path / "v"
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--init", str(eps_export), "--prediction", "v",
                 "--out", str(run), "--no-progress"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert UNetConfig.from_dict(saved["model"]) == dataclasses.replace(TINY, prediction="v")  # the export's shape
    from mssfs.model.checkpoint import latest_checkpoint, load_checkpoint

    meta = load_checkpoint(latest_checkpoint(run)).meta
    assert meta["init"]["prediction"] == {"from": "eps", "to": "v"}
    src = mssfs.load_model(eps_export).state_dict()
    from mssfs.train.trainer import initialise_from

    model = UNet(dataclasses.replace(TINY, prediction="v"))
    initialise_from(model, TrainConfig.from_dict(saved))
    assert model.state_dict().keys() == src.keys() and all(torch.equal(v, src[k]) for k, v in model.state_dict().items())

    exp = export_checkpoint(run, tmp_path / "v_exp")
    info = json.loads((exp / "config.json").read_text())
    assert info["model"]["prediction"] == "v" and isinstance(info["training"]["val_x0"], float)
    card = (exp / "MODEL_CARD.md").read_text()
    assert "prediction target changed from eps to v" in card and "the head predicts v" in card
    assert "comparable across prediction targets" in card
    loaded = mssfs.load_model(exp)
    assert loaded.config.prediction == "v" and loaded.config.timesteps == 300
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--prediction", "eps", "--steps", "2", "--no-progress"]) == 2
    assert "model options cannot change" in capsys.readouterr().err
    assert main(["train", "--prediction", "vee", "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "prediction must be one of eps, v, x0" in err and len(err.splitlines()) == 1


def test_load_model_refuses_a_model_on_another_schedule(eps_export):
    import mssfs
    from mssfs.model.checkpoint import CheckpointError

    path = eps_export / "config.json"
    cfg = json.loads(path.read_text())
    cfg["model"].pop("prediction")
    cfg["model"].pop("timesteps")  # as the shipped weights' config.json: loads as eps on the schedule's T
    path.write_text(json.dumps(cfg))
    model = mssfs.load_model(eps_export)
    assert model.config.prediction == "eps" and model.config.timesteps == 300
    cfg["model"]["timesteps"] = 50
    path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="'timesteps' 50 differs from the schedule's 'T' 300"):
        mssfs.load_model(eps_export)


def test_shipped_weights_predict_eps():
    import mssfs
    from mssfs.model.weights import DEFAULT_DIR

    if not (DEFAULT_DIR / "config.json").is_file():
        pytest.skip("no default weights exported yet")
    assert "prediction" not in json.loads((DEFAULT_DIR / "config.json").read_text())["model"]
    model = mssfs.load_model()
    assert model.config.prediction == "eps" and not list(model.buffers())


def test_sampling_an_x0_export_gives_unit_normals(tmp_path):
    from test_sampling import sphere_image, tiny_schedule

    import mssfs
    from mssfs.model.weights import export_checkpoint

    x0_cfg = dataclasses.replace(MICRO, prediction="x0")
    train(micro_config(model=x0_cfg, steps=1, checkpoint_every=1, val_every=0), tmp_path / "run",
          source=SphereImages(), progress=False)
    exp = export_checkpoint(tmp_path / "run", tmp_path / "exp")
    assert json.loads((exp / "config.json").read_text())["model"]["prediction"] == "x0"
    res = mssfs.sample(sphere_image(32, 32), n=1, seed=0, model=str(exp), schedule=tiny_schedule(num_steps=3),
                       device="cpu", progress=False)
    n = np.asarray(res.normals)[0]
    inside = np.asarray(res.mask)
    assert n.shape == (32, 32, 3) and np.isfinite(n).all()
    np.testing.assert_allclose(np.linalg.norm(n[inside], axis=-1), 1.0, atol=1e-4)
