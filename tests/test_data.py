"""Training streams, shards, held-out sets and the `mssfs data` command (mssfs.data)."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mssfs.cli import main
from mssfs.core.render import render
from mssfs.data import shapes
from mssfs.data.augment import augment
from mssfs.data.datasets import HeldoutImages, TrainingImages
from mssfs.data.shards import ShardSet, make_shards
from mssfs.evaluation.metrics import angular_error

SIZE = 64


def _take(ds, k):
    return [item for item, _ in zip(ds, range(k))]


def test_item_layout():
    item = _take(TrainingImages(size=SIZE, seed=0), 1)[0]
    h = SIZE - 16
    assert item["image"].shape == (1, h, h) and item["image"].dtype == torch.float32
    assert item["normals"].shape == (3, h, h) and item["mask"].shape == (1, h, h)
    assert item["light"].shape == (3,) and 0.5 <= item["albedo"] <= 1.0
    assert item["light"][2] >= np.cos(np.radians(72)) - 1e-6
    assert item["family"] in shapes.FAMILIES and 0 <= item["seed"] < shapes.TRAIN_SEED_LIMIT
    full = _take(TrainingImages(size=SIZE, seed=0, grid_offset=False), 1)[0]
    assert full["image"].shape == (1, SIZE, SIZE)
    assert float(item["image"].max()) <= 1.0 and float(item["image"].min()) >= 0.0


def test_augmented_item_rerenders_to_its_image():
    for item in _take(TrainingImages(size=SIZE, seed=5), 12):
        n = item["normals"].permute(1, 2, 0).numpy()
        again = render(n, item["light"].numpy(), item["albedo"])
        np.testing.assert_allclose(again, item["image"][0].numpy(), atol=1e-5)
        m = item["mask"][0].numpy() > 0
        assert np.all(n[~m] == 0) and np.all(item["image"][0].numpy()[~m] == 0)


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_augment_transforms_geometry_consistently(k, flip):
    normals, mask = shapes.generate("blob", 3, SIZE)
    light = np.array([0.3, 0.5, 0.81])
    image = render(normals, light)
    img2, n2, m2, l2 = augment(image, normals, mask, light, k, flip)
    np.testing.assert_allclose(render(n2, l2), img2, atol=1e-6)
    # the normals' (x, y) must follow the image: on a blob the normal points away from the
    # centre of mass, so its x component grows to the right and its y component upward
    rows, cols = np.nonzero(m2)
    right = n2[rows, cols, 0][cols > cols.mean()].mean() - n2[rows, cols, 0][cols < cols.mean()].mean()
    up = n2[rows, cols, 1][rows < rows.mean()].mean() - n2[rows, cols, 1][rows > rows.mean()].mean()
    assert right > 0.3 and up > 0.3


def test_streams_are_reproducible_and_distinct():
    def seeds(**kw):
        return [it["seed"] for it in _take(TrainingImages(size=32, **kw), 4)]

    assert seeds(seed=1) == seeds(seed=1)
    a = _take(TrainingImages(size=32, seed=1), 2)
    b = _take(TrainingImages(size=32, seed=1), 2)
    assert torch.equal(a[1]["image"], b[1]["image"]) and torch.equal(a[1]["light"], b[1]["light"])
    assert seeds(seed=1) != seeds(seed=2)
    r0, r1 = seeds(seed=1, rank=0, world_size=2), seeds(seed=1, rank=1, world_size=2)
    assert not set(r0) & set(r1)
    assert all(s % 2 == 0 for s in r0) and all(s % 2 == 1 for s in r1)  # disjoint seed lattices


def test_dataloader_workers_get_distinct_reproducible_streams():
    def run():
        loader = DataLoader(TrainingImages(size=32, seed=4), batch_size=1, num_workers=2)
        return [int(b["seed"]) for b, _ in zip(loader, range(6))]

    first = run()
    assert first == run()
    # DataLoader alternates workers: worker 0 gives items 0, 2, 4 and worker 1 items 1, 3, 5
    assert not set(first[0::2]) & set(first[1::2])
    assert all(s % 2 == 0 for s in first[0::2]) and all(s % 2 == 1 for s in first[1::2])


def test_shards_round_trip(tmp_path):
    out = tmp_path / "shards"
    make_shards(out, 7, size=SIZE, seed=3, shard_size=3, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 7 and manifest["size"] == SIZE
    assert manifest["generator_version"] == shapes.GENERATOR_VERSION
    assert [e["count"] for e in manifest["shards"]] == [3, 3, 1]
    seeds = [s for e in manifest["shards"] for s in e["seeds"]]
    assert len(set(seeds)) == 7 and all(0 <= s < shapes.TRAIN_SEED_LIMIT for s in seeds)
    shards = ShardSet(out)
    data = shards.load(0)
    for i in range(3):
        normals, mask, family, seed = shards.decode(data, i)
        ref_n, ref_m = shapes.generate(family, seed, SIZE)
        assert np.array_equal(mask, ref_m)
        err = angular_error(normals, ref_n, ref_m)
        assert np.nanmax(err) < 1.0 and np.nanmean(err) < 0.02  # int16 (nx, ny) encoding
        assert np.all(normals[~mask] == 0)
    items = _take(TrainingImages(out, size=None, seed=0, grid_offset=False, augment=False), 7)
    assert sorted(it["seed"] for it in items) == sorted(seeds)  # one epoch visits every map once
    for it in items[:3]:
        ref_n, _ = shapes.generate(it["family"], it["seed"], SIZE)
        n = it["normals"].permute(1, 2, 0).numpy()
        assert np.nanmax(angular_error(n, ref_n)) < 1.0


def test_parallel_shard_rendering_gives_the_same_files(tmp_path):
    make_shards(tmp_path / "one", 5, size=32, seed=4, shard_size=2, progress=False)
    make_shards(tmp_path / "many", 5, size=32, seed=4, shard_size=2, progress=False, workers=3)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "many").iterdir())
    assert len(names) == 4  # three shards and the manifest
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes(), name


def test_shard_streams_split_across_ranks(tmp_path):
    make_shards(tmp_path / "s", 8, size=32, shard_size=2, progress=False)
    a = [it["seed"] for it in _take(TrainingImages(tmp_path / "s", size=32, rank=0, world_size=2), 4)]
    b = [it["seed"] for it in _take(TrainingImages(tmp_path / "s", size=32, rank=1, world_size=2), 4)]
    assert not set(a) & set(b) and len(set(a) | set(b)) == 8
    # fewer shards than streams: items are split instead
    make_shards(tmp_path / "one", 6, size=32, shard_size=6, progress=False)
    c = [it["seed"] for it in _take(TrainingImages(tmp_path / "one", size=32, rank=0, world_size=4), 2)]
    d = [it["seed"] for it in _take(TrainingImages(tmp_path / "one", size=32, rank=1, world_size=4), 2)]
    assert not set(c) & set(d)


def test_manifest_written_last_and_overwrite_refused(tmp_path, monkeypatch):
    out = tmp_path / "s"
    import mssfs.data as data_mod

    calls = []
    real = data_mod.shapes.generate

    def failing(family, seed, size):
        calls.append(seed)
        if len(calls) == 4:
            raise KeyboardInterrupt  # killed in the second shard
        return real(family, seed, size)

    monkeypatch.setattr(data_mod.shapes, "generate", failing)
    with pytest.raises(KeyboardInterrupt):
        make_shards(out, 6, size=32, shard_size=3, progress=False)
    assert (out / "shard-00000.npz").exists()
    assert not (out / "manifest.json").exists() and not list(out.glob("*.part"))
    monkeypatch.setattr(data_mod.shapes, "generate", real)
    with pytest.raises(FileNotFoundError, match="manifest"):
        TrainingImages(out, size=32)
    with pytest.raises(FileExistsError, match="not empty"):
        make_shards(out, 6, size=32, shard_size=3, progress=False)
    make_shards(out, 2, size=32, shard_size=3, progress=False, overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["count"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.npz"]


def test_make_shards_rejects_bad_arguments(tmp_path):
    for kw, msg in [({"n": 0}, "n must"), ({"size": 40}, "multiple of 16"), ({"size": 16}, "at least"),
                    ({"mix": {"teapot": 1}}, "unknown shape family"), ({"shard_size": 0}, "shard_size")]:
        args = {"n": 2, "size": 32} | kw
        with pytest.raises(ValueError, match=msg):
            make_shards(tmp_path / "x", progress=False, **args)
    make_shards(tmp_path / "ok", 1, size=32, progress=False)
    with pytest.raises(ValueError, match="differs"):
        TrainingImages(tmp_path / "ok", size=64)


def test_heldout_is_deterministic_and_disjoint():
    objects = HeldoutImages(6, size=32, kind="objects")
    reliefs = HeldoutImages(3, size=32, kind="reliefs")
    assert len(objects) == 6
    assert all(objects[i]["family"] in shapes.OBJECT_FAMILIES for i in range(6))
    assert all(reliefs[i]["family"] in shapes.RELIEF_FAMILIES for i in range(3))
    assert all(objects[i]["seed"] >= shapes.HELDOUT_SEED_BASE for i in range(6))
    assert torch.equal(objects[2]["image"], HeldoutImages(6, size=32, kind="objects")[2]["image"])
    assert torch.equal(objects[-1]["normals"], objects[5]["normals"])
    assert objects[0]["image"].shape == (1, 32, 32)
    with pytest.raises(IndexError):
        objects[6]
    with pytest.raises(ValueError, match="2\\*\\*30"):
        HeldoutImages(2, size=32, seed_base=5)
    with pytest.raises(ValueError, match="kind"):
        HeldoutImages(2, size=32, kind="teapots")


def test_cli_make_preview_families(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["data", "make", "--n", "3", "--out", str(out), "--size", "32", "--shard-size", "2",
                 "--mix", "blob=1,noise=1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["mix"]) == {"blob", "noise"} and len(manifest["shards"]) == 2
    assert main(["data", "preview", str(out), "--out", str(tmp_path / "p.png"), "--n", "3"]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert main(["data", "families"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in shapes.FAMILIES)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["make", "--n", "0", "--out", "{d}/a"], "--n must be positive"),
        (["make", "--n", "2", "--out", "{d}/a", "--size", "40"], "multiple of 16"),
        (["make", "--n", "2", "--out", "{d}/a", "--size", "16"], "at least"),
        (["make", "--n", "2", "--out", "{d}/a", "--mix", "teapot=1"], "unknown shape family"),
        (["make", "--n", "2", "--out", "{d}/a", "--mix", "blob"], "family=share"),
        (["make", "--n", "2", "--out", "{d}/full"], "not empty"),
        (["preview", "{d}/empty", "--out", "{d}/p.png"], "no manifest.json"),
        (["preview", "generated", "--out", "{d}/p.png", "--n", "0"], "--n must be positive"),
        (["preview", "generated", "--out", "{d}/p.jpg"], ".png"),
    ],
)
def test_cli_bad_arguments(tmp_path, capsys, argv, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "empty").mkdir()
    argv = ["data"] + [a.format(d=tmp_path) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
