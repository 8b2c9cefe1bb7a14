"""The GPU training step: the CUDA-graph step (mssfs.train.graphstep), its pieces, compile, prefetching.

The refusals and pure pieces run everywhere; the graph itself needs CUDA (those tests
skip without it and run on a GPU machine: tools/gpu_session.sh).
"""

import dataclasses
import json
import os

import pytest
import torch
from test_train import MICRO, TINY, SphereImages, _params, micro_config

from mssfs.model.checkpoint import flatten_optimizer_state, load_checkpoint
from mssfs.model.diffusion import NoiseSchedule
from mssfs.model.unet import UNet
from mssfs.train.batches import PatchBatch
from mssfs.train.config import TrainConfig, TrainingError
from mssfs.train.ema import EMA
from mssfs.train.graphstep import capturable_adam_state, portable_optimizer_state
from mssfs.train.prefetch import prefetched
from mssfs.train.trainer import Trainer, merge_resume_config, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def random_batch(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return PatchBatch(shading=torch.rand(n, 1, 16, 16, generator=g),
                      normals=torch.nn.functional.normalize(torch.randn(n, 3, 16, 16, generator=g), dim=1),
                      mask=(torch.rand(n, 1, 16, 16, generator=g) > 0.3).float(),
                      t=torch.randint(0, 300, (n,), generator=g), noise=torch.randn(n, 3, 16, 16, generator=g))


# -- refusals and options -----------------------------------------------------------------


def test_cuda_graph_is_refused_off_cuda_and_with_accumulation():
    with pytest.raises(TrainingError, match="cuda_graph needs a CUDA device, got device 'cpu'"):
        TrainConfig(cuda_graph=True, device="cpu")
    with pytest.raises(TrainingError, match="use accumulate 1"):
        TrainConfig(cuda_graph=True, accumulate=2, patches_per_step=64)
    TrainConfig(cuda_graph=True, device="cuda:1")  # checked against the hardware by the trainer


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_graph_run_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(TrainingError, match=r"cuda_graph needs one process on a CUDA device; this run has 1 process\(es\) on cpu"):
        train(micro_config(steps=2, cuda_graph=True), tmp_path / "run", source=SphereImages(), progress=False)
    assert not (tmp_path / "run").exists()


def test_cuda_graph_may_change_on_resume():
    saved = micro_config().to_dict()
    assert merge_resume_config(saved, {"cuda_graph": True})["cuda_graph"] is True


def test_cli_refuses_cuda_graph_on_cpu_in_one_line(tmp_path, capsys):
    from mssfs.cli import main

    code = main(["train", "--cuda-graph", "true", "--device", "cpu", "--steps", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "cuda_graph needs a CUDA device" in err[0]
    assert not (tmp_path / "r").exists()


# -- pure pieces --------------------------------------------------------------------------


def test_ema_update_with_a_tensor_weight_equals_the_float_form():
    torch.manual_seed(0)
    model = UNet(MICRO)
    a, b = EMA(model, 0.99), EMA(model, 0.99)
    for step in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        a.update(model, step)
        b.update(model, 123, weight=torch.tensor(1.0 - b.decay_at(step)))  # step unused with a weight
    torch.testing.assert_close(_params(b.model), _params(a.model), rtol=1e-6, atol=1e-6)
    assert not torch.equal(_params(a.model), _params(UNet(MICRO)))


def test_capturable_state_is_the_state_adamw_creates_and_saves_like_an_eager_run():
    torch.manual_seed(0)
    model = UNet(MICRO)
    eager = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    eager.step()  # the state AdamW creates on its first step
    graphed = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    lr = torch.tensor(5e-4)
    capturable_adam_state(graphed, lr)
    assert all(g["capturable"] and g["lr"] is lr for g in graphed.param_groups)
    for p in model.parameters():
        mine, theirs = graphed.state[p], eager.state[p]
        assert mine.keys() == theirs.keys()
        for k in mine:
            assert mine[k].shape == theirs[k].shape and mine[k].dtype == theirs[k].dtype
            assert not mine[k].any()  # step 0 and zero moments
    portable = portable_optimizer_state(graphed.state_dict())
    assert all(g["lr"] == pytest.approx(5e-4) and type(g["lr"]) is float and g["capturable"] is False
               for g in portable["param_groups"])
    _, info = flatten_optimizer_state(portable)
    json.dumps(info)  # the checkpoint's JSON part
    # an eager state dict comes back equal
    plain = eager.state_dict()
    again = portable_optimizer_state(plain)
    assert again["param_groups"] == plain["param_groups"]
    assert all(torch.equal(again["state"][i][k], plain["state"][i][k]) for i in plain["state"] for k in plain["state"][i])
    # and loads back into an eager optimiser that continues like the original
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    fresh.load_state_dict(portable)
    assert all(not g["capturable"] for g in fresh.param_groups)


def test_noise_schedule_on_a_device_gives_the_same_values():
    sched = NoiseSchedule(300)
    moved = sched.to("cpu")
    assert moved is not sched and moved.alphas_cumprod.dtype == torch.float64
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    t = torch.tensor([-1, 0, 1, 150, 298, 299])
    assert torch.equal(moved.abar(t, x0), sched.abar(t, x0))
    assert torch.equal(moved.add_noise(x0, noise, t.clamp(min=0)), sched.add_noise(x0, noise, t.clamp(min=0)))


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_the_unet_traces_into_one_graph_for_compile(prediction):
    """torch.compile fuses only inside a traced graph: no data-dependent Python branches,
    host reads or other graph breaks in the training forward (fp32 and bf16 autocast)."""
    torch.manual_seed(0)
    net = UNet(dataclasses.replace(TINY, prediction=prediction))
    b = random_batch(4)
    x_t = torch.randn(4, 3, 16, 16)
    for autocast in (False, True):
        torch._dynamo.reset()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            explained = torch._dynamo.explain(net)(x_t, b.t, b.shading, raw=True)
        assert explained.graph_break_count == 0, explained.break_reasons
        assert explained.graph_count == 1
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MSSFS_TEST_COMPILE"),
                    reason="compiling the U-Net takes minutes on a CPU; set MSSFS_TEST_COMPILE=1")
def test_compiled_unet_matches_eager_in_outputs_and_gradients():
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    net = UNet(TINY).to(dev)
    b = random_batch(4).to(dev)
    x_t = torch.randn(4, 3, 16, 16, device=dev)
    torch._dynamo.reset()
    compiled = torch.compile(net, dynamic=False)
    out = compiled(x_t, b.t, b.shading)
    out.square().mean().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    ref = net(x_t, b.t, b.shading)
    ref.square().mean().backward()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for g, p in zip(grads, net.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-3, atol=1e-5)


# -- data off the critical path -----------------------------------------------------------


def test_prefetched_yields_in_order_and_hands_over_errors():
    assert list(prefetched(range(50), 3)) == list(range(50))
    assert list(prefetched(iter([1, 2]), 0)) == [1, 2]

    def failing():
        yield 1
        raise TrainingError("the data source ran out of images")

    gen = prefetched(failing(), 2)
    assert next(gen) == 1
    with pytest.raises(TrainingError, match="ran out of images"):
        next(gen)


def test_closing_prefetched_stops_its_thread():
    import threading

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    gen = prefetched(endless(), 2)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert not any(t.name == "mssfs-prefetch" for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 1  # at most depth ahead, plus the one being made


def test_prefetch_gives_the_same_run_on_the_real_training_maps(tmp_path):
    """The training maps' stream depends on DataLoader workers, not on the prefetching thread."""
    runs = [train(micro_config(steps=4, image_size=32, prefetch=k, val_every=0, checkpoint_every=0),
                  tmp_path / f"p{k}", progress=False) for k in (0, 2)]
    assert torch.equal(_params(runs[0].model), _params(runs[1].model))
    assert torch.equal(_params(runs[0].ema.model), _params(runs[1].ema.model))
    log0, log2 = ((tmp_path / f"p{k}" / "log.csv").read_text().splitlines() for k in (0, 2))
    assert [r.split(",")[1] for r in log0] == [r.split(",")[1] for r in log2]  # the same losses


def test_prefetch_must_be_a_count():
    with pytest.raises(TrainingError, match="prefetch must be an integer >= 0"):
        TrainConfig(prefetch=-1)
    assert merge_resume_config(micro_config().to_dict(), {"prefetch": 4})["prefetch"] == 4


# -- the graph on a GPU -------------------------------------------------------------------


def _pair(tmp_path, **kw):
    base = dict(model=TINY, patches_per_step=32, image_size=16, device="cuda", warmup_steps=5, grad_clip=0.05,
                val_patches=0, seed=3)
    base.update(kw)
    eager = Trainer(TrainConfig(**base), tmp_path / "eager", source=SphereImages(), progress=False)
    graphed = Trainer(TrainConfig(**base, cuda_graph=True), tmp_path / "graph", source=SphereImages(), progress=False)
    return eager, graphed


@cuda
@pytest.mark.parametrize("kw,tol", [
    (dict(precision="fp32"), 1e-4),
    (dict(precision="bf16"), 2e-2),
    (dict(precision="fp32", min_snr_gamma=5.0, model=dataclasses.replace(TINY, prediction="v")), 1e-4),
    (dict(precision="fp32", objective="regression"), 1e-4),
    (dict(precision="fp32", channels_last=True), 1e-4),
])
def test_graph_step_matches_the_eager_step(tmp_path, kw, tol):
    eager, graphed = _pair(tmp_path, **kw)
    assert torch.equal(_params(eager.model), _params(graphed.model))
    val = random_batch(16, seed=99)
    assert graphed.validate(val) == pytest.approx(eager.validate(val), rel=1e-6)  # fills the EMA copy's kernel caches
    for step in range(6):  # through the lr warm-up, the EMA warm-up and clipping
        batch = random_batch(32, seed=step).pin_memory()
        le, lg = eager.train_step(batch), graphed.train_step(batch)
        torch.testing.assert_close(lg, le, rtol=tol, atol=tol)
    assert graphed.step == eager.step == 6
    torch.testing.assert_close(_params(graphed.model), _params(eager.model), rtol=tol, atol=tol)
    torch.testing.assert_close(_params(graphed.ema.model), _params(eager.ema.model), rtol=tol, atol=tol)
    assert graphed.opt.param_groups[0]["lr"].item() == pytest.approx(eager.opt.param_groups[0]["lr"], rel=1e-6)
    # the EMA weights changed inside the graph: validation must not reuse stale cached kernels
    assert graphed.validate(val) == pytest.approx(eager.validate(val), rel=10 * tol, abs=tol)
    assert not torch.equal(_params(graphed.model), _params(Trainer(graphed.cfg, tmp_path / "x", source=SphereImages(),
                                                                    progress=False).model))


@cuda
def test_graph_checkpoint_resumes_in_either_mode(tmp_path):
    eager, graphed = _pair(tmp_path, precision="fp32")
    for step in range(3):
        graphed.train_step(random_batch(32, seed=step))
    state = graphed.state()
    assert all(type(g["lr"]) is float and g["capturable"] is False for g in state.meta["optimizer"]["param_groups"])
    assert all(v.device.type == "cpu" for k, v in state.tensors["optim"].items() if k.endswith(".step"))
    state = load_checkpoint(graphed.save())  # fresh tensors, as a resumed run has them
    again = Trainer(graphed.cfg, tmp_path / "again", source=SphereImages(), progress=False)
    again.load_state(state)
    as_eager = Trainer(eager.cfg, tmp_path / "as_eager", source=SphereImages(), progress=False)
    as_eager.load_state(state)
    for step in range(3, 5):
        batch = random_batch(32, seed=step)
        graphed.train_step(batch), again.train_step(batch), as_eager.train_step(batch)
    for resumed in (again, as_eager):  # the optimiser's state came back: its counters went on from 3
        assert all(float(st["step"]) == 5 for st in resumed.opt.state.values())
    torch.testing.assert_close(_params(again.model), _params(graphed.model), rtol=1e-5, atol=5e-5)
    torch.testing.assert_close(_params(as_eager.model), _params(graphed.model), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_params(again.ema.model), _params(graphed.ema.model), rtol=1e-5, atol=5e-5)


@cuda
def test_graph_training_run_logs_checkpoints_and_resumes_without_the_graph(tmp_path):
    cfg = micro_config(steps=8, patches_per_step=16, device="cuda", cuda_graph=True, val_every=4, checkpoint_every=4)
    train(cfg, tmp_path / "run", source=SphereImages(), progress=False)
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) >= 2 and all("nan" not in r for r in rows)
    tr = train(None, resume=tmp_path / "run", overrides={"steps": 10, "cuda_graph": False}, source=SphereImages(),
               progress=False)
    assert tr.step == 10


@cuda
def test_noise_schedule_on_cuda_gives_the_cpu_values():
    sched = NoiseSchedule(300)
    t = torch.tensor([-1, 0, 7, 299])
    x = torch.zeros(4, 3, 2, 2)
    assert torch.equal(sched.to("cuda").abar(t.cuda(), x.cuda()).cpu(), sched.abar(t, x))


@cuda
def test_graph_step_with_compile_matches_eager(tmp_path):
    eager, graphed = _pair(tmp_path, precision="fp32")
    graphed.cfg.compile = True
    for step in range(3):
        batch = random_batch(32, seed=step)
        torch.testing.assert_close(graphed.train_step(batch), eager.train_step(batch), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(_params(graphed.model), _params(eager.model), rtol=1e-3, atol=1e-4)
