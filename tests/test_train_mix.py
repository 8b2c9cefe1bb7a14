"""TrainConfig.mix: the shape-family shares of a run's on-the-fly training data."""

import json

import pytest

from mssfs.data import shapes
from mssfs.model.unet import UNetConfig
from mssfs.train.batches import TrainingImagesSource
from mssfs.train.config import TrainConfig, TrainingError
from mssfs.train.trainer import merge_resume_config, train

MICRO = UNetConfig(base_width=4, mults=(1,), groups=2, res_blocks=1, attn_heads=1, attn_head_dim=4,
                   time_sin_dim=4, time_dim=8, init_kernel=3)


def test_mix_is_validated_and_kept_as_given():
    assert TrainConfig().mix is None
    assert TrainConfig(mix="figures=0.2, blob=0.1").mix == {"figures": 0.2, "blob": 0.1}
    assert TrainConfig(mix={"figures": 2, "noise": 0}).mix == {"figures": 2.0, "noise": 0.0}
    d = json.loads(json.dumps(TrainConfig(mix="figures=1,ridges=3").to_dict()))
    assert TrainConfig.from_dict(d).mix == {"figures": 1.0, "ridges": 3.0}
    for bad, message in [("teapot=1", "unknown shape family 'teapot'"), ("figures", "not of the form"),
                         ("figures=x", "not a number"), ({"figures": -1}, ">= 0"), ({"figures": 0}, "empty"),
                         (["figures"], "mapping")]:
        with pytest.raises(TrainingError, match=message) as info:
            TrainConfig(mix=bad)
        assert str(info.value).startswith("mix") and "\n" not in str(info.value)
    with pytest.raises(TrainingError, match="shards"):
        TrainConfig(mix="figures=1", data="shards/")


def test_mix_cannot_change_on_resume():
    saved = TrainConfig(mix={"figures": 1.0}).to_dict()
    with pytest.raises(TrainingError, match="'mix' cannot change"):
        merge_resume_config(saved, {"mix": {"blob": 1.0}})


def test_training_with_a_mix_draws_only_its_families(tmp_path, monkeypatch):
    drawn = []
    generate = shapes.generate

    def spy(family, seed, size=256):
        drawn.append(family)
        return generate(family, seed, size)

    monkeypatch.setattr(shapes, "generate", spy)
    cfg = TrainConfig(model=MICRO, steps=3, patches_per_step=4, image_size=32, val_patches=4, val_every=3,
                      log_every=1, checkpoint_every=3, warmup_steps=1, precision="fp32", mix={"figures": 1.0})
    tr = train(cfg, tmp_path / "run", progress=False)
    assert tr.step == 3 and len(drawn) >= 3 and set(drawn) == {"figures"}
    assert isinstance(tr.source, TrainingImagesSource) and tr.source.mix == {"figures": 1.0}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["mix"] == {"figures": 1.0}
    drawn.clear()
    for item, _ in zip(TrainingImagesSource(None, 32, {"figures": 1.0, "blob": 1.0})(0, 0, 1), range(30)):
        assert item["family"] in ("figures", "blob")
    assert set(drawn) == {"figures", "blob"}
