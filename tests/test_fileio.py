import json

import numpy as np
import pytest
from PIL import Image

from mssfs.core.fileio import atomic_path, save_json, save_npy, save_png


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_writers_round_trip(tmp_path):
    save_npy(tmp_path / "a.npy", np.arange(6.0).reshape(2, 3))
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.arange(6.0).reshape(2, 3))
    save_json(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    save_png(tmp_path / "g8.png", np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert np.asarray(Image.open(tmp_path / "g8.png"))[15, 15] == 255
    v = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    save_png(tmp_path / "g16.png", v)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g16.png")).astype(np.uint16), v)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        save_png(tmp_path / "bad.png", np.zeros((4, 4)))
    assert not (tmp_path / "bad.png").exists()
    with pytest.raises(ValueError):
        save_npy(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "obj.npy").exists()
