"""Distillation: a student trained towards an exported teacher's predictions."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from test_train import MICRO, TINY, SphereImages, _params, micro_config

import mssfs
from mssfs.model.diffusion import NoiseSchedule
from mssfs.model.weights import export_checkpoint
from mssfs.train.batches import make_batch
from mssfs.train.config import TrainConfig, TrainingError
from mssfs.train.distill import distill_loss
from mssfs.train.losses import diffusion_loss
from mssfs.train.trainer import Trainer, train


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A tiny diffusion network trained a few steps and exported: the teacher."""
    tmp = tmp_path_factory.mktemp("teacher")
    cfg = micro_config(model=TINY, steps=10, patches_per_step=8, image_size=32, lr=3e-3, checkpoint_every=10,
                       val_every=0)
    train(cfg, tmp / "run", source=SphereImages(32), progress=False)
    return export_checkpoint(tmp / "run", tmp / "export")


def _student_config(teacher, **kw):
    base = dict(steps=30, patches_per_step=8, image_size=32, lr=3e-3, val_every=0, checkpoint_every=30,
                teacher=str(teacher), distill_weight=1.0)
    base.update(kw)
    return micro_config(**base)


def _fixed_inputs(n=16):
    g = torch.Generator().manual_seed(7)
    x_t = torch.randn(n, 3, 16, 16, generator=g)
    t = torch.linspace(0, 299, n).long()
    shading = torch.rand(n, 1, 16, 16, generator=g)
    return x_t, t, shading


@torch.no_grad()
def _distance(model, teacher):
    x_t, t, shading = _fixed_inputs()
    return float((model(x_t, t, shading) - teacher(x_t, t, shading)).abs().mean())


def test_a_smaller_student_moves_towards_its_teacher(tmp_path, teacher_dir):
    teacher = mssfs.load_model(teacher_dir)
    cfg = _student_config(teacher_dir)  # MICRO student, TINY teacher
    before = _distance(Trainer(cfg, tmp_path / "fresh", source=SphereImages(32)).model, teacher)
    tr = train(cfg, tmp_path / "run", source=SphereImages(32), progress=False)
    after = _distance(tr.model, teacher)
    # the data alone also bring a student nearer (both learn the noise), the teacher's term far more
    data_only = train(dataclasses.replace(cfg, distill_weight=0.0), tmp_path / "data", source=SphereImages(32),
                      progress=False)
    assert after < 0.45 * before and after < 0.8 * _distance(data_only.model, teacher)
    # the export says whom it was distilled from
    exp = export_checkpoint(tmp_path / "run", tmp_path / "student")
    info = json.loads((exp / "config.json").read_text())
    sha = teacher.info["weights"]["sha256"]
    assert info["training"]["teacher"] == {"path": str(teacher_dir), "sha256": sha, "distill_weight": 1.0}
    assert info["training"]["config"]["teacher"] == str(teacher_dir) and info["model"]["base_width"] == MICRO.base_width
    card = (exp / "MODEL_CARD.md").read_text()
    assert f"distilled from the network in `{teacher_dir}` (sha256 {sha})" in card and "w = 1.0" in card


def test_distill_weight_zero_is_the_plain_loss(tmp_path, teacher_dir):
    cfg = micro_config(steps=5, val_every=0, checkpoint_every=0, min_snr_gamma=5.0)
    plain = train(cfg, tmp_path / "a", source=SphereImages(), progress=False)
    zero = train(dataclasses.replace(cfg, teacher=str(teacher_dir), distill_weight=0.0), tmp_path / "b",
                 source=SphereImages(), progress=False)
    assert torch.equal(_params(plain.model), _params(zero.model))


def test_distillation_term_in_the_students_target(teacher_dir):
    teacher = mssfs.load_model(teacher_dir)
    sched = NoiseSchedule()
    batch = make_batch(SphereImages(32), 1, 0, 1, 8, micro_config(image_size=32))

    def raw_loss(model, batch, scheduler):  # a data loss on the head's own output
        x_t = scheduler.add_noise(batch.normals, batch.noise, batch.t)
        return F.smooth_l1_loss(model(x_t, batch.t, batch.shading, raw=True), batch.noise)

    def teacher_in(kind):
        def student(x_t, t, shading, raw=False):
            eps = teacher(x_t, t, shading)
            x0 = sched.predict_x0(x_t, eps, t, clip=False)
            return sched.target(kind, x0, eps, t) if raw else eps
        return student

    for kind in ("eps", "v", "x0"):
        student = teacher_in(kind)
        assert float(distill_loss(raw_loss, student, teacher, batch, sched, 1.0, student_prediction=kind)) < 1e-10
        other = "x0" if kind != "x0" else "v"  # the same output read as another target is far off
        assert float(distill_loss(raw_loss, student, teacher, batch, sched, 1.0, student_prediction=other)) > 1e-3
    # w mixes the two terms
    student = teacher_in("eps")
    data = float(diffusion_loss(student, batch, sched))
    assert float(distill_loss(diffusion_loss, student, teacher, batch, sched, 0.25)) == pytest.approx(0.75 * data)


def test_distillation_refusals(tmp_path, teacher_dir):
    with pytest.raises(TrainingError, match="diffusion objective only"):
        TrainConfig(objective="regression", teacher=str(teacher_dir))
    with pytest.raises(TrainingError, match="distill_weight must lie in"):
        TrainConfig(distill_weight=1.5)
    with pytest.raises(TrainingError, match="T = 300; this run has timesteps 100"):
        train(_student_config(teacher_dir, timesteps=100), tmp_path / "t", source=SphereImages(32), progress=False)
    with pytest.raises(TrainingError, match="no such model folder"):
        train(_student_config(tmp_path / "missing"), tmp_path / "m", source=SphereImages(32), progress=False)
    train(micro_config(objective="regression", steps=1, checkpoint_every=1, val_every=0), tmp_path / "reg",
          source=SphereImages(), progress=False)
    reg = export_checkpoint(tmp_path / "reg", tmp_path / "reg_export")
    with pytest.raises(TrainingError, match="'regression' model; distillation needs a diffusion model"):
        train(_student_config(reg), tmp_path / "r", source=SphereImages(32), progress=False)
    for d in ("t", "m", "r"):
        assert not (tmp_path / d / "log.csv").exists()


def test_resume_keeps_the_teacher(tmp_path, teacher_dir):
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir, teacher)
    run = tmp_path / "run"
    train(_student_config(teacher, steps=2, checkpoint_every=2), run, source=SphereImages(32), progress=False)
    with pytest.raises(TrainingError, match="'distill_weight' cannot change"):
        train(None, resume=run, overrides={"steps": 3, "distill_weight": 0.5}, source=SphereImages(32), progress=False)
    tr = train(None, resume=run, overrides={"steps": 3}, source=SphereImages(32), progress=False)
    assert tr.step == 3 and tr.teacher_info["path"] == str(teacher)
    # other weights under the teacher's path are refused
    other = tmp_path / "other"
    train(micro_config(model=TINY, steps=1, checkpoint_every=1, val_every=0, seed=5), other, source=SphereImages(),
          progress=False)
    shutil.rmtree(teacher)
    export_checkpoint(other, teacher)
    with pytest.raises(TrainingError, match="not the ones this run was distilled from"):
        train(None, resume=run, overrides={"steps": 4}, source=SphereImages(32), progress=False)
