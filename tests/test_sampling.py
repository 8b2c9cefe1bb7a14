"""Guided DDIM, schedules, the V-cycle pipeline, batching of seeds and input policy."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import mssfs
from mssfs.core.images import ImageError
from mssfs.core.patches import from_patches, to_patches
from mssfs.model.diffusion import NoiseSchedule
from mssfs.sampler.api import sample, sample_many, sample_seed
from mssfs.sampler.ddim import guided_ddim
from mssfs.sampler.denoiser import SlicedDenoiser
from mssfs.sampler.guidance import seam_loss
from mssfs.sampler.inputs import prepare_input
from mssfs.sampler.schedules import Schedule, Stage, get_preset, load_schedule

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def tiny_model(seed: int = 0) -> nn.Module:
    """A few-thousand-parameter denoiser with the package's call signature."""
    torch.manual_seed(seed)
    try:
        from mssfs.model.unet import UNet, UNetConfig

        return UNet(UNetConfig(base_width=8, mults=(1, 2), attn_heads=1, attn_head_dim=8, time_dim=32)).eval()
    except ImportError:  # the model module is not built yet
        return _TinyConv().eval()


class _TinyConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(5, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 3, 3, padding=1))

    def forward(self, x_t, t, shading):
        tt = (t.float() / 300)[:, None, None, None].expand_as(shading)
        return self.net(torch.cat([x_t, shading, tt], 1))


def tiny_schedule(**kw) -> Schedule:
    it = dict(inner_iters_high=2, inner_iters_low=1)
    return Schedule(
        "tiny",
        (
            Stage(48, 10, restart_t=299, guidance_start_t=250, lighting=True, **it),
            Stage(32, 10, **it),
            Stage(48, 10, **it),
        ),
        num_steps=kw.pop("num_steps", 6),
        fuse_last=2,
        **kw,
    )


def sphere_image(h=40, w=56):
    r, c = np.mgrid[0:h, 0:w].astype(float)
    x, y = (c - w / 2) / (0.45 * min(h, w)), -(r - h / 2) / (0.45 * min(h, w))
    inside = x**2 + y**2 < 1
    nz = np.sqrt(np.clip(1 - x**2 - y**2, 0, 1))
    light = np.array([0.3, 0.4, 0.866])
    return np.where(inside, np.clip(x * light[0] + y * light[1] + nz * light[2], 0, 1), 0.0)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


# ---------------------------------------------------------------- schedules
def test_paper_cost_matches_design_and_fast_is_a_tenth():
    paper, fast = get_preset("paper"), get_preset("fast")
    assert paper.total_cost() == (2142, 137609)  # docs/method.md#cost
    (pc, pp), (fc, fp) = paper.total_cost(), fast.total_cost()
    assert fc <= pc / 10 and fp <= pp / 10
    assert [s.resolution for s in paper.stages] == [160, 128, 64, 80, 96, 112, 128, 144, 160]
    assert [s.lr for s in paper.stages] == [20, 15, 10, 10, 10, 15, 15, 20, 20]


def test_restart_timesteps():
    sched = get_preset("paper")
    g = NoiseSchedule().ddim_grid(50)
    runs = sched.runs()
    assert runs[0].timesteps == g and runs[0].guidance_start_t == g[8]
    assert runs[1].rerun and runs[1].timesteps == [t for t in g if t <= 232] and len(runs[1].timesteps) == 39
    assert all(t <= r.guidance_start_t for r in runs[1:] for t in r.timesteps)  # guided from the first step


def test_schedule_files_round_trip(tmp_path):
    import yaml

    sched = tiny_schedule()
    (tmp_path / "s.json").write_text(json.dumps(sched.to_dict()))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sched.to_dict()))
    assert load_schedule(tmp_path / "s.json") == sched
    assert load_schedule(tmp_path / "s.yaml") == sched
    (tmp_path / "bad.yaml").write_text("stages:\n  - {resolution: 40, lr: 1}\n")
    with pytest.raises(ValueError, match="multiple of 16"):
        load_schedule(tmp_path / "bad.yaml")
    (tmp_path / "bad2.json").write_text('{"stages": [{"resolution": 32, "lr": 1, "speed": 3}]}')
    with pytest.raises(ValueError, match="speed"):
        load_schedule(tmp_path / "bad2.json")


def test_documented_schedule_files_load_and_name_what_they_say():
    """docs/results' schedule files load and are what docs/results/README.md says:
    ``schedule_fast_no_shading`` is ``fast`` without shading guidance or region flips,
    ``schedule_fast_shading10`` is ``fast`` without region flips,
    ``schedule_fast_regions`` (the region-flips candidate) is ``fast`` without its refinement,
    ``schedule_fast_undecided`` (the undecided-regions candidate) is ``fast`` without its
    light floor, ``schedule_fast_refine`` is that without its undecided-disc step, and
    ``schedule_fast_lateral`` (the light-floor candidate) is ``fast``, and the two tilt
    candidates ``schedule_fast_tilt`` / ``schedule_fast_tilt_early`` are that with the
    light's tilt from the image in every stage / in the first two.  All of them predate
    ``refine_contour_light``, which ``fast`` has and they do not, except
    ``schedule_fast_contour_guided``: ``fast`` with ``shading_contour_light`` in every stage,
    and ``schedule_fast_contour_guided_fused``: the same for ``fast`` as it is now."""
    from dataclasses import replace
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "docs" / "results").glob("schedule_*.json"))
    if not files:
        pytest.skip("docs/results not in this checkout")
    loaded = {f.stem: load_schedule(f) for f in files}
    assert get_preset("fast").refine_contour_light and not get_preset("paper").refine_contour_light
    guided = loaded.pop("schedule_fast_contour_guided")
    now = get_preset("fast")
    # fast guides under the contour's light on the way down (its first two stages);
    # ``free`` is fast with the guidance's light free everywhere, as the candidates before it
    assert [s.shading_contour_light for s in now.stages] == [True, True, False, False]
    free = replace(now, stages=tuple(replace(s, shading_contour_light=False) for s in now.stages))
    guided_fused = loaded.pop("schedule_fast_contour_guided_fused")  # the fourth question's: every stage
    # the fifth question's candidates: fast with the contour's light in some stages only
    parts = {name: loaded.pop(f"schedule_fast_contour_guided_{name}") for name in ("first", "down", "last")}
    for name, stages in (("first", {0}), ("down", {0, 1}), ("last", {3})):
        part = parts[name]
        assert [s.shading_contour_light for s in part.stages] == [i in stages for i in range(len(now.stages))], name
        assert replace(part, name="fast", description=now.description,
                       stages=tuple(replace(s, shading_contour_light=False) for s in part.stages)) == free, name
    assert replace(parts["down"], name="fast", description=now.description) == now  # the one adopted
    assert replace(loaded.pop("schedule_fast_free_light"), name="fast", description=now.description) == free
    assert replace(guided_fused, name="fast", description=now.description,
                   stages=tuple(replace(s, shading_contour_light=False) for s in guided_fused.stages)) == free
    assert all(s.shading_contour_light for s in guided_fused.stages)
    assert guided.stages == tuple(replace(s, shading_contour_light=True) for s in now.stages)
    # the guided candidate was written before fast's refinement dropped its integrable projection
    # on objects and took the shading-weighted fusion
    assert now.refine_contour_integrability == 0.0 and guided.refine_contour_integrability == 0.5
    assert now.refine_contour_fuse == 0.2 and guided.refine_contour_fuse == 0.0
    # which schedules guide by the contour's light: a stage needs the key and a shading weight
    assert guided_fused.guides_by_contour_light and now.guides_by_contour_light and not free.guides_by_contour_light
    assert not replace(guided_fused, stages=tuple(replace(s, shading_weight=0.0) for s in guided_fused.stages)
                       ).guides_by_contour_light
    assert replace(guided, stages=now.stages, description=now.description, refine_contour_integrability=0.0,
                   refine_contour_fuse=0.2) == now
    assert not any(f.refine_contour_light for f in loaded.values())
    before = replace(free, refine_contour_light=False, refine_contour_integrability=0.5, refine_contour_fuse=0.0)
    lateral = loaded["schedule_fast_lateral"]
    assert replace(lateral, name="fast", description=before.description) == before
    assert all(s.shading_min_lateral == 0.5 for s in lateral.stages)
    assert not any(s.shading_tilt_from_image for s in lateral.stages)
    for stem, locked in (("schedule_fast_tilt", (True,) * 4), ("schedule_fast_tilt_early", (True, True, False, False))):
        tilt = loaded[stem]
        assert tilt.stages == tuple(replace(s, shading_tilt_from_image=k) for s, k in zip(lateral.stages, locked))
        assert replace(tilt, stages=lateral.stages, name=lateral.name, description=lateral.description) == lateral
    fast = replace(before, stages=tuple(replace(s, shading_min_lateral=0.0) for s in before.stages))
    no_regions = tuple(replace(s, region_flips=False) for s in fast.stages)
    old = loaded["schedule_fast_no_shading"]
    assert old.stages == tuple(replace(s, shading_weight=0.0) for s in no_regions)
    assert (old.num_steps, old.fuse_last) == (fast.num_steps, fast.fuse_last)
    shading = loaded["schedule_fast_shading10"]
    assert shading.stages == no_regions and not shading.final_region_flips and not old.final_region_flips
    regions = loaded["schedule_fast_regions"]
    assert not regions.refine and fast.refine
    assert replace(regions, name=fast.name, description=fast.description, refine=True, refine_undecided=0.1) == fast
    undecided = loaded["schedule_fast_undecided"]
    assert fast.refine_undecided > 0 and not regions.refine_undecided
    assert replace(undecided, name=fast.name, description=fast.description) == fast
    settled = loaded["schedule_fast_refine"]
    assert replace(settled, name=fast.name, description=fast.description, refine_undecided=0.1) == fast


# ---------------------------------------------------------------- guided DDIM
def _single_stage_run(model, lr, seed=0, r=48, **stage_kw):
    noise = NoiseSchedule()
    stage = Stage(r, lr, restart_t=299, guidance_start_t=299, inner_iters_high=2, inner_iters_low=2, **stage_kw)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(((r // 16) ** 2, 3, 16, 16), generator=g)
    img = torch.from_numpy(sphere_image(r, r)).float()[None, None]
    steps = noise.ddim_grid(8)
    infos = []
    with torch.no_grad():
        out = guided_ddim(model, x, to_patches(img), noise, steps, stage, 299, (r, r), callback=infos.append)
    return out, infos, stage


class Squash(nn.Module):
    """Denoiser whose clean estimate is ``tanh(x_t) / 2``: smooth, never clipped."""

    def __init__(self):
        super().__init__()
        self.abar = NoiseSchedule().alphas_cumprod.float()

    def forward(self, x_t, t, shading):
        a = self.abar[t][:, None, None, None]
        return (x_t - a.sqrt() * 0.5 * torch.tanh(x_t)) / (1 - a).sqrt()


def test_guidance_lowers_seam_loss():
    loss = lambda x: float(seam_loss(from_patches(x, 48, 48)))
    plain = loss(_single_stage_run(Squash(), 0.0)[0])
    guided = loss(_single_stage_run(Squash(), 20.0)[0])
    assert guided < 0.5 * plain


def test_seam_weight_scales_the_seam_step():
    # Without the integrability term and with the clamp out of reach, weight w at lr equals
    # weight 1 at lr * w; weight 0 leaves the seams as unguided sampling does.
    kw = dict(integrability_weight=0.0, grad_clip=1e6)
    a = _single_stage_run(Squash(), 10.0, seam_weight=2.0, **kw)[0]
    b = _single_stage_run(Squash(), 20.0, **kw)[0]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    c = _single_stage_run(Squash(), 20.0, seam_weight=0.0, **kw)[0]
    torch.testing.assert_close(c, _single_stage_run(Squash(), 0.0)[0])
    assert not torch.allclose(a, c, atol=1e-3)
    with pytest.raises(ValueError, match="seam_weight"):
        Stage(32, 1.0, seam_weight=-1.0)


def test_shading_weight_makes_samples_explain_the_image():
    from mssfs.sampler.guidance import shading_loss

    r = 48
    img = torch.from_numpy(sphere_image(r, r)).float()[None, None]
    score = lambda x: float(shading_loss(from_patches(x, r, r), img))
    kw = dict(seam_weight=0.0, integrability_weight=0.0)
    plain = score(_single_stage_run(Squash(), 0.0, **kw)[0])
    guided = score(_single_stage_run(Squash(), 20.0, shading_weight=10.0, **kw)[0])
    assert guided < 0.2 * plain
    assert all(s.shading_weight == 0 for s in get_preset("paper").stages)  # the publication's method
    assert all(s.shading_weight == 10 for s in get_preset("fast").stages)  # ours (docs/decisions/shading-guidance.md)
    assert not any(s.region_flips for s in get_preset("paper").stages) and not get_preset("paper").final_region_flips


def _spy_shading_loss(monkeypatch, key, convert=lambda value: value) -> list:
    """Record ``convert(kw[key])`` of every call the guided DDIM makes to the shading loss."""
    import mssfs.sampler.ddim as ddim_module

    seen = []
    real = ddim_module.shading_loss

    def spy(*args, **kw):
        seen.append(convert(kw.get(key)))
        return real(*args, **kw)

    monkeypatch.setattr(ddim_module, "shading_loss", spy)
    return seen


def test_shading_min_lateral_reaches_the_guidance_and_is_checked(monkeypatch):
    # The stage's floor on the fitted light is what the shading loss gets at every guided iteration.
    seen = _spy_shading_loss(monkeypatch, "min_lateral")
    kw = dict(seam_weight=0.0, integrability_weight=0.0, shading_weight=10.0)
    plain = _single_stage_run(Squash(), 20.0, **kw)[0]
    assert seen and set(seen) == {0.0}
    seen.clear()
    floored = _single_stage_run(Squash(), 20.0, shading_min_lateral=0.6, **kw)[0]
    assert seen and set(seen) == {0.6}
    assert plain.shape == floored.shape
    assert all(s.shading_min_lateral == 0 for s in get_preset("paper").stages)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="shading_min_lateral"):
            Stage(32, 1.0, shading_min_lateral=bad)


def test_shading_min_lateral_applies_only_to_images_without_an_occluding_contour(model, monkeypatch):
    # An object on black (occluding contour) keeps the free light fit; a relief filling the
    # frame gets the floor.  Both share one batch, so the floor is per image.
    from dataclasses import replace

    seen = _spy_shading_loss(monkeypatch, "min_lateral", lambda v: torch.as_tensor(v).clone())
    r, c = np.mgrid[0:40, 0:56].astype(float)
    relief = 0.5 + 0.2 * np.sin(r / 5.0) * np.cos(c / 7.0)
    base = tiny_schedule()
    sched = replace(base, stages=tuple(replace(s, shading_weight=1.0, shading_min_lateral=0.6) for s in base.stages))
    obj, rel = sample_many([sphere_image(), relief], n=1, seed=0, model=model, schedule=sched, batch_samples=2)
    assert seen
    for floors in seen:
        torch.testing.assert_close(floors.float(), torch.tensor([0.0, 0.6]))
    # each result says which way it went (meta.json carries the notes)
    assert any("occluding contour in the mask" in note for note in obj.notes)
    assert any("no occluding contour" in note and "0.6" in note for note in rel.notes)
    plain = sample_many([relief], n=1, seed=0, model=model, schedule=base)[0]
    assert not any("occluding contour" in note for note in plain.notes)


def _relief(h=48, w=48):
    """A smooth relief filling an ``(h, w)`` frame: no occluding contour."""
    r, c = np.mgrid[0:h, 0:w].astype(float)
    return 0.5 + 0.2 * np.sin(r / 5.0 + c / 9.0)


def _every_stage(schedule, **stage_kw):
    """``schedule`` with ``stage_kw`` set in every stage."""
    from dataclasses import replace

    return replace(schedule, stages=tuple(replace(s, **stage_kw) for s in schedule.stages))


def test_shading_tilt_from_image_reaches_the_guidance_per_image(model, monkeypatch):
    # With Stage.shading_tilt_from_image the shading loss gets the image's shading axis for a
    # relief filling the frame and a zero row (free light) for an object on black.

    from mssfs.sampler.guidance import image_tilt_axis

    seen = _spy_shading_loss(monkeypatch, "tilt_axis")
    relief = _relief()
    base = tiny_schedule()
    sched = _every_stage(base, shading_weight=1.0, shading_tilt_from_image=True)
    obj, rel = sample_many([sphere_image(), relief], n=1, seed=0, model=model, schedule=sched, batch_samples=2)
    assert seen and all(axis is not None for axis in seen)
    want = image_tilt_axis(torch.tensor(relief, dtype=torch.float32)[None, None])[0]
    for axis in seen:
        assert torch.equal(axis[0], torch.zeros(2))  # occluding contour: free
        torch.testing.assert_close(axis[1], want, atol=0.02, rtol=0)  # the sampler works on its own square
    assert any("occluding contour in the mask" in note for note in obj.notes)
    assert any("shading_tilt_from_image" in note for note in rel.notes)
    seen.clear()
    sample_many([relief], n=1, seed=0, model=model, schedule=_every_stage(base, shading_weight=1.0))
    assert seen and all(axis is None for axis in seen)
    assert not any(s.shading_tilt_from_image for s in get_preset("paper").stages)
    with pytest.raises(ValueError, match="shading_tilt_from_image"):
        Stage(32, 1.0, shading_tilt_from_image="yes")


def test_shading_contour_light_reaches_the_guidance_for_objects_only(model, monkeypatch):
    # With Stage.shading_contour_light the shading loss gets the light read off an object's
    # occluding contour (read at the input's resolution: at a 32-px stage the contour is too
    # short for it), and a zero row (free light) for a relief filling a non-square frame
    # (the padding to a square is not a contour).
    from dataclasses import replace

    from mssfs.core.sfs import contour_light

    seen = _spy_shading_loss(monkeypatch, "light")
    relief = _relief(40, 56)
    base = tiny_schedule()
    sched = _every_stage(base, shading_weight=1.0, shading_contour_light=True)
    obj, rel = sample_many([sphere_image(), relief], n=1, seed=0, model=model, schedule=sched, batch_samples=2)
    assert seen and all(light is not None for light in seen)
    assert any("keeps the light read off the contour (shading_contour_light)" in note for note in obj.notes)
    assert not any("contour" in note for note in rel.notes)
    def tilt(v):
        return np.degrees(np.arctan2(v[1], v[0]))

    truth = np.array([0.3, 0.4, 0.866])  # sphere_image's light: tilt 53 degrees
    want = contour_light(sphere_image(), sphere_image() > 0)[0]
    assert abs(tilt(want) - tilt(truth)) < 3 and np.degrees(np.arccos(want @ truth / np.linalg.norm(truth))) < 15
    from mssfs.sampler.inputs import prepare_input

    item = prepare_input(sphere_image())  # the image and automatic mask the sampler uses
    used = contour_light(item.image, item.mask)[0]
    for light in seen:  # read once, off the input at its own resolution, for every stage
        np.testing.assert_allclose(light[0].double().numpy(), used, atol=1e-6)
        assert torch.equal(light[1], torch.zeros(3))
    seen.clear()
    sample_many([relief], n=1, seed=0, model=model, schedule=_every_stage(base, shading_weight=1.0))
    assert seen and all(light is None for light in seen)
    assert not any(s.shading_contour_light for s in get_preset("paper").stages)
    with pytest.raises(ValueError, match="shading_contour_light"):
        Stage(32, 1.0, shading_contour_light="yes")
    # the refinement's contour light is noted where it applies
    refined = replace(base, refine=True, refine_contour_light=True, refine_contour_fuse=0.0)
    obj, rel = sample_many([sphere_image(), relief], n=1, seed=0, model=model, schedule=refined)
    assert any("the refinement reads its light off the contour" in note for note in obj.notes)
    assert not any("refine_contour_fuse" in note for note in obj.notes)
    assert not any("contour" in note for note in rel.notes)
    obj, rel = sample_many([sphere_image(), relief], n=2, seed=0, model=model,
                           schedule=replace(refined, refine_contour_fuse=0.2))
    assert any("weights the refined samples by how well they render the image" in note for note in obj.notes)
    assert not any("contour" in note for note in rel.notes)


def test_lr_decays_cumulatively_after_late_t(model):
    _, infos, stage = _single_stage_run(model, 10.0)
    late_iters = 0
    for info in infos:
        if info.t <= stage.late_t:
            late_iters += info.guided_iters
        assert info.lr == pytest.approx(10.0 / 1.5**late_iters)
        # the step's report carries the guidance loss of its last inner iteration, if any
        assert (info.loss is None) == (info.guided_iters == 0)
        assert info.loss is None or (isinstance(info.loss, float) and np.isfinite(info.loss) and info.loss >= 0)
    assert late_iters > 0
    assert all(info.loss is not None for info in infos)  # every step of this run is guided
    _, unguided, _ = _single_stage_run(model, 0.0)  # lr 0: no guidance, no loss to report
    assert unguided and all(info.loss is None and info.guided_iters == 0 for info in unguided)


def test_denoiser_counts_equal_schedule_cost(model):
    sched = tiny_schedule()
    counter = SlicedDenoiser(model)
    sample(sphere_image(), n=2, model=counter, schedule=sched)
    calls, patches = sched.total_cost()
    assert counter.calls == calls and counter.patch_forwards == 2 * patches


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("bf16", [False, True])
def test_workers_give_the_numbers_of_one_thread(model, one_thread, bf16):
    """Slices on 3 worker threads: the same eps and input gradient as one thread, bit for bit."""
    torch.manual_seed(0)
    x, s = torch.randn(70, 3, 16, 16), torch.rand(70, 1, 16, 16)
    t = torch.randint(0, 300, (70,))
    frozen = tiny_model().requires_grad_(False)  # as load_model returns it
    got = {}
    for workers in (1, 3):
        net = SlicedDenoiser(frozen, bf16=bf16, chunk=16, workers=workers)
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            eps = net(xg, t, s)
            assert ("_PooledSlices" in type(eps.grad_fn).__name__) == (workers == 3)  # the workers' backward
            (grad,) = torch.autograd.grad((eps**2 * torch.arange(70.0)[:, None, None, None]).sum(), xg)
        with torch.no_grad():
            plain = net(x, t, s)
        got[workers] = (eps.detach(), grad, plain)
        assert eps.dtype == torch.float32 and net.calls == 2 and net.patch_forwards == 140
    for a, b in zip(got[1], got[3]):
        assert torch.equal(a, b)
    assert grad.abs().sum() > 0 and torch.get_num_threads() == 1


def test_workers_restore_the_thread_count(model):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = SlicedDenoiser(model, chunk=8, workers=2)
        net(torch.randn(20, 3, 16, 16), torch.zeros(20, dtype=torch.long), torch.rand(20, 1, 16, 16))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        SlicedDenoiser(model, workers=0)


def test_workers_keep_parameter_and_shading_gradients(one_thread):
    """A model that is not frozen, or a shading that needs gradients, gets them as without workers."""
    torch.manual_seed(1)
    x, s = torch.randn(40, 3, 16, 16), torch.rand(40, 1, 16, 16)
    t = torch.randint(0, 300, (40,))
    got = {}
    for workers in (1, 2):
        net = tiny_model()
        sg = s.clone().requires_grad_(True)
        with torch.enable_grad():
            SlicedDenoiser(net, chunk=16, workers=workers)(x, t, sg).square().sum().backward()
        got[workers] = [sg.grad] + [p.grad for p in net.parameters()]
    assert all(g is not None for g in got[2])
    for a, b in zip(got[1], got[2]):
        torch.testing.assert_close(a, b)


def test_sampling_with_workers_matches_one_thread(one_thread):
    model = tiny_model().requires_grad_(False)
    sched = tiny_schedule()
    one = sample(sphere_image(), n=2, seed=4, model=model, schedule=sched, chunk_patches=8, workers=1)
    two = sample(sphere_image(), n=2, seed=4, model=model, schedule=sched, chunk_patches=8, workers=2)
    np.testing.assert_array_equal(one.normals, two.normals)
    for a, b in zip(one.stages, two.stages):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        sample(sphere_image(), n=1, model=model, schedule=sched, workers=0)


@pytest.mark.slow
def test_paper_preset_counts_by_running_it():
    """Run the real paper and fast presets with a trivial denoiser and count its calls."""

    class Zero(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x_t, t, shading):
            return self.w * x_t

    got = {}
    for name in ("paper", "fast"):
        counter = SlicedDenoiser(Zero())
        sample(sphere_image(64, 64), n=1, model=counter, preset=name, resolution="preset")
        got[name] = (counter.calls, counter.patch_forwards)
    assert got["paper"] == (2142, 137609)
    assert got["fast"][0] <= got["paper"][0] / 10 and got["fast"][1] <= got["paper"][1] / 10


# ---------------------------------------------------------------- pipeline
def test_sample_result_shapes_and_background(model):
    img = sphere_image(40, 56)
    res = sample(img, n=2, seed=3, model=model, schedule=tiny_schedule())
    assert res.normals.shape == (2, 40, 56, 3) and res.normals.dtype == np.float32
    fg = res.mask
    assert fg.shape == (40, 56) and 0 < fg.mean() < 1
    assert np.allclose(np.linalg.norm(res.normals[:, fg], axis=-1), 1, atol=1e-4)
    assert np.all(res.normals[:, ~fg] == 0)
    assert res.lights.shape == (2, 3)
    assert [s.shape for s in res.stages] == [(2, 48, 48, 3), (2, 32, 32, 3), (2, 48, 48, 3)]
    assert any("padded" in n for n in res.notes)


def test_region_flips_run_and_are_recorded(model, tmp_path):
    from dataclasses import replace

    img = sphere_image(40, 56)
    plain = sample(img, n=2, seed=3, model=model, schedule=tiny_schedule())
    assert plain.region_flips == [[], []] and plain.meta()["region_flips"] == [[], []]
    base = tiny_schedule()
    sched = replace(base, final_region_flips=True, stages=tuple(replace(s, region_flips=True) for s in base.stages))
    res = sample(img, n=2, seed=3, model=model, schedule=sched)
    # one entry per stage run (stage 1 runs twice, for its lighting step) and one for the fused result
    assert [len(f) for f in res.region_flips] == [len(sched.runs()) + 1] * 2
    assert all(isinstance(x, int) and x >= 0 for f in res.region_flips for x in f)
    res.save(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["region_flips"] == res.region_flips
    assert meta["schedule"]["final_region_flips"] is True
    assert all(s["region_flips"] for s in meta["schedule"]["stages"])
    for bad in (dict(region_threshold=1.0), dict(region_threshold=-0.1), dict(flat_gradient=0.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            replace(base, **bad)


#: Float tolerance for results computed in batches of different composition: batched
#: convolutions reduce in a different order (~1e-7 relative), which guidance amplifies
#: at a few pixels (the untrained test model saturates x0 at the clip, where seam angles
#: are near the acos clamp).  Stated tolerance: 99.5 % of stage-output components within
#: 1e-3 and all within 5e-2 (AVX-512 kernels: 99.9 % and 2e-2; an AVX2-only CPU: down to
#: 99.87 % and up to 2.4e-2 in the first test below; a sample drawn from other noise agrees
#: on almost no component); fused normals: 99 % of pixels within 0.1 degree and all
#: within 2 degrees (gradient-space fusion spreads a stage's rounding to a few pixels:
#: with one OpenMP thread up to 1.05 degrees at 8 of 942 pixels in the first test below).
def assert_same_samples(a, b):
    for sa, sb in zip(a.stages, b.stages):
        d = np.abs(sa - sb)
        assert np.mean(d <= 1e-3) >= 0.995 and d.max() <= 5e-2
    cos = np.clip((a.normals * b.normals).sum(-1)[:, a.mask], -1, 1)
    angle = np.degrees(np.arccos(cos))
    assert np.mean(angle <= 0.1) >= 0.99 and angle.max() < 2.0


def _first(res, k):
    import dataclasses

    return dataclasses.replace(res, normals=res.normals[:k], stages=[s[:k] for s in res.stages])


def test_first_samples_do_not_depend_on_n(model):
    """Sample i is seeded from (seed, i); batch composition only changes float rounding."""
    sched = tiny_schedule()
    one = sample(sphere_image(), n=1, seed=7, model=model, schedule=sched)
    three = sample(sphere_image(), n=3, seed=7, model=model, schedule=sched)
    assert_same_samples(_first(three, 1), one)
    assert not np.allclose(three.normals[0], three.normals[1], atol=1e-2)  # seeds differ
    assert three.seeds[0] == one.seeds[0] == sample_seed(7, 0)
    chunked = sample(sphere_image(), n=3, seed=7, model=model, schedule=sched, batch_samples=2)
    assert_same_samples(chunked, three)


def test_inputs_batched_together_match_separate_runs(model):
    sched = tiny_schedule()
    a, b = sphere_image(40, 56), sphere_image(48, 48)
    both = sample_many([a, b], n=2, seed=1, model=model, schedule=sched)
    alone = sample(b, n=2, seed=1, model=model, schedule=sched)
    assert_same_samples(both[1], alone)
    # one seed per input: input k gets the samples of a run with seed[k]
    own = sample_many([a, b], n=2, seed=[5, 1], model=model, schedule=sched)
    assert_same_samples(own[1], alone)
    assert own[0].seed == 5 and own[0].seeds == [sample_seed(5, i) for i in range(2)]
    with pytest.raises(ValueError, match="2 seeds for 1 inputs"):
        sample_many([a], n=1, seed=[1, 2], model=model, schedule=sched)
    with pytest.raises(ValueError, match="seeds must be >= 0"):
        sample_many([a], n=1, seed=[-1], model=model, schedule=sched)


def test_bf16_runs(model):
    res = sample(sphere_image(), n=1, seed=0, model=model, schedule=tiny_schedule(), bf16=True)
    assert np.isfinite(res.normals).all() and res.bf16


@CUDA
def test_cuda_matches_cpu_loosely(model):
    sched = tiny_schedule()
    cpu = sample(sphere_image(), n=2, seed=0, model=tiny_model(), schedule=sched)
    gpu = sample(sphere_image(), n=2, seed=0, model=tiny_model(), schedule=sched, device="cuda")
    assert gpu.device.startswith("cuda")
    err = np.degrees(np.arccos(np.clip((cpu.normals * gpu.normals).sum(-1)[:, cpu.mask], -1, 1)))
    assert np.median(err) < 5.0


# ---------------------------------------------------------------- input policy
def test_input_policy():
    img = sphere_image(40, 56) * 255.0
    item = prepare_input(img)
    assert item.image.max() == pytest.approx(1.0) and any("divided" in n for n in item.notes)
    assert item.square.shape == (56, 56) and item.offset == (8, 0)
    assert not item.square_mask[:8].any()
    neg = prepare_input(sphere_image() - 0.5)
    assert neg.image.min() >= 0 and any("rescaled" in n for n in neg.notes)
    m = np.zeros((40, 56), bool)
    m[5:30, 5:40] = True
    assert np.array_equal(prepare_input(sphere_image(), mask=m).mask, m)
    with pytest.raises(ImageError, match="does not match"):
        prepare_input(sphere_image(), mask=np.ones((10, 10), bool))


def test_alpha_channel_is_the_default_mask(tmp_path):
    from PIL import Image

    img = np.round(sphere_image() * 255).astype(np.uint8)
    img[:, :6] = 255  # bright, not black, where the picture is transparent
    alpha = np.full(img.shape, 255, np.uint8)
    alpha[:, :6] = 0
    Image.fromarray(np.stack([img, alpha], -1), "LA").save(tmp_path / "cut.png")
    item = prepare_input(tmp_path / "cut.png")
    assert np.array_equal(item.mask, alpha > 0)
    assert (item.image[:, :6] == 0).all()
    assert any("alpha channel" in n and f"{6 * 40} transparent" in n for n in item.notes)
    explicit = np.zeros(img.shape, bool)
    explicit[10:30, 10:40] = True  # an explicit mask wins over the alpha channel
    assert np.array_equal(prepare_input(tmp_path / "cut.png", mask=explicit).mask, explicit)
    alpha[:] = 0
    alpha[0, :3] = 255
    Image.fromarray(np.stack([img, alpha], -1), "LA").save(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="alpha channel leaves 3 opaque"):
        prepare_input(tmp_path / "gone.png")


def test_bad_input_refused_before_any_work():
    class Exploding(nn.Module):
        def forward(self, *a):
            raise AssertionError("the model must not run")

    bad = sphere_image()
    bad[3, 3] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        sample(bad, n=1, model=Exploding(), schedule=tiny_schedule())
    with pytest.raises(ValueError, match="samples"):
        sample(sphere_image(), n=0, model=Exploding(), schedule=tiny_schedule())
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            sample(sphere_image(), n=1, model=Exploding(), schedule=tiny_schedule(), device="cuda")


def test_api_is_exported():
    assert mssfs.sample is sample and mssfs.SampleResult.__name__ == "SampleResult"
