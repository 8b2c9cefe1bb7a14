"""Checkpoint files: round trip, atomic writes, corruption detection, optimizer state."""

import os

import pytest
import torch

from mssfs.model.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_bytes,
    checkpoint_path,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)


def _ckpt():
    g = torch.Generator().manual_seed(0)
    return Checkpoint(
        tensors={"model": {"w": torch.randn(3, 4, generator=g), "b": torch.zeros(4)},
                 "optim": {"0.step": torch.tensor(5.0)}, "rng": {"torch": torch.get_rng_state()}},
        meta={"step": 7, "config": {"lr": 2e-4, "mults": [1, 2]}, "rng": {"python": [3, [1, 2], None]}},
    )


def test_round_trip(tmp_path):
    c = _ckpt()
    path = save_checkpoint(tmp_path / "c.safetensors", c)
    back = load_checkpoint(path)
    assert back.meta == c.meta and back.path == path
    for group, tensors in c.tensors.items():
        assert set(back.tensors[group]) == set(tensors)
        for k, v in tensors.items():
            assert torch.equal(back.tensors[group][k], v) and back.tensors[group][k].dtype == v.dtype


def test_truncated_file_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", _ckpt())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    with pytest.raises(CheckpointError, match="c.safetensors"):
        load_checkpoint(path)


def test_flipped_byte_fails_the_checksum(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", _ckpt())
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_other_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="no mssfs metadata"):
        load_checkpoint(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left behind


def test_optimizer_state_round_trip_continues_identically():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    oa = torch.optim.AdamW(a.parameters(), lr=1e-2, betas=(0.8, 0.95))
    x = torch.randn(8, 4)
    for _ in range(3):
        oa.zero_grad()
        a(x).square().mean().backward()
        oa.step()
    b.load_state_dict(a.state_dict())
    tensors, info = flatten_optimizer_state(oa.state_dict())
    tensors = {k: v.clone() for k, v in tensors.items()}  # as read from a file: no aliasing with oa
    import json

    info = json.loads(json.dumps(info))  # what a checkpoint stores
    ob = torch.optim.AdamW(b.parameters(), lr=0.5)
    ob.load_state_dict(unflatten_optimizer_state(tensors, info))
    assert ob.param_groups[0]["betas"] == (0.8, 0.95) and ob.param_groups[0]["lr"] == 1e-2
    for m, o in ((a, oa), (b, ob)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_listing_and_latest(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (20, 3, 100):
        save_checkpoint(checkpoint_path(tmp_path, step), _ckpt())
    (tmp_path / "checkpoints" / "notes.txt").write_text("x")
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 20, 100]
    assert latest_checkpoint(tmp_path).name == "step_00000100.safetensors"
