"""``report.html`` (``mssfs report``, ``mssfs sample --report``): content, files, and the page
in a real headless browser."""

import base64
import json
import re

import numpy as np
import pytest
from headless import canvas_pixels, chrome, drag, picture_stats, severe_logs, wait_for

from mssfs.analysis import analyze, generated_bump_dent_layout, load_sample_set
from mssfs.analysis.html_report import MESH_SIDE, render_report, report_data, write_report
from mssfs.cli import main
from mssfs.core.render import render


def write_sample_folder(folder, reads=(1, 1, 1, -1, -1), size=48, crop=8, seed=3):
    """A sample folder of a bump/dent layout: one sample per entry of ``reads``, +1 the
    true reading, -1 the inverted one (x and y of the normals negated), each with a
    little noise; cropped to a non-square frame with a black band outside the mask."""
    layout = generated_bump_dent_layout(seed, size=size)
    rng = np.random.default_rng(seed)
    normals, lights = [], []
    for r in reads:
        n = layout.normals * np.array([r, r, 1.0])
        n = n + rng.normal(0, 0.02, n.shape)
        normals.append(n / np.linalg.norm(n, axis=-1, keepdims=True))
        lights.append(layout.light * np.array([r, r, 1.0]))
    normals = np.stack(normals)[:, :, crop:]
    mask = np.ones(normals.shape[1:3], bool)
    mask[:, -4:] = False
    normals[:, ~mask] = 0
    image = np.where(mask, render(normals[0], lights[0]), 0)
    folder.mkdir(parents=True)
    np.save(folder / "normals.npy", normals.astype(np.float32))
    np.save(folder / "mask.npy", mask)
    np.save(folder / "image.npy", image.astype(np.float32))
    np.save(folder / "lights.npy", np.array(lights, np.float32))
    (folder / "meta.json").write_text(json.dumps({"input": "layout", "stem": folder.name, "preset": "test",
                                                  "seed": seed}))
    return folder


@pytest.fixture
def folder(tmp_path):
    return write_sample_folder(tmp_path / "layout")


def page_data(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="mssfs-data">(.*?)</script>', text, re.DOTALL)
    assert m, "the data block is missing"
    return json.loads(m.group(1))


def test_page_carries_the_analysis_and_the_normals(folder):
    samples = load_sample_set(folder)
    result = analyze(samples)
    assert result.clustering.n_modes >= 2  # the layout and its inversion
    text = render_report(samples, result)
    data = page_data(text)
    summary = result.to_json(samples)
    assert data["n"] == 5 and data["modes"] == summary["modes"] and data["labels"] == summary["labels"]
    assert data["lights"] == summary["lights"]["per_sample"]
    # normals: 48 x 40 is under the size limit, so they are kept at full size, quantised to 8 bits
    h, w = samples.normals.shape[1:3]
    assert (data["h"], data["w"]) == (h, w)
    q = np.frombuffer(base64.b64decode(data["normals"]), np.uint8).reshape(5, h, w, 3)
    back = q / 127.5 - 1
    assert np.abs(back - samples.normals)[:, samples.mask].max() <= 1 / 127.5 + 1e-6
    m = np.frombuffer(base64.b64decode(data["mask"]), np.uint8).reshape(h, w)
    assert np.array_equal(m.astype(bool), samples.mask)
    # heights: a bump reads high in the middle of a +1 sample and low in an inverted one
    mesh = data["mesh"]
    assert max(mesh["h"], mesh["w"]) <= MESH_SIDE
    z = np.frombuffer(base64.b64decode(mesh["heights"]), "<u2").reshape(5, mesh["h"], mesh["w"]).astype(float)
    lo, hi = np.array(mesh["ranges"]).T
    z = lo[:, None, None] + (hi - lo)[:, None, None] * z / 65535
    inside = np.frombuffer(base64.b64decode(mesh["mask"]), np.uint8).reshape(mesh["h"], mesh["w"]).astype(bool)
    corr = np.corrcoef(z[0][inside], z[3][inside])[0, 1]
    assert corr < -0.5, corr
    assert np.corrcoef(z[0][inside], z[1][inside])[0, 1] > 0.9


def test_page_is_self_contained(folder):
    samples = load_sample_set(folder)
    text = render_report(samples, analyze(samples))
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text), "the page refers to an outside file"
    assert "http://" not in text and "https://" not in text
    assert "fetch(" not in text and "XMLHttpRequest" not in text


def test_large_maps_are_downsampled(tmp_path):
    folder = write_sample_folder(tmp_path / "big", reads=(1, -1), size=160, crop=0)
    samples = load_sample_set(folder)
    data = report_data(samples, analyze(samples), normal_side=64, mesh_side=20)
    assert max(data["h"], data["w"]) == 64 and max(data["mesh"]["h"], data["mesh"]["w"]) == 20
    assert len(base64.b64decode(data["normals"])) == 2 * data["h"] * data["w"] * 3


def test_write_is_atomic(folder, monkeypatch):
    from mssfs.analysis import html_report

    out = folder / "report.html"
    out.write_text("old")
    samples = load_sample_set(folder)
    result = analyze(samples)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(html_report, "render_report", boom)
    with pytest.raises(RuntimeError):
        html_report.write_report(out, samples, result)
    assert out.read_text() == "old" and sorted(p.name for p in folder.iterdir() if "report" in p.name) == ["report.html"]


def test_cli_writes_one_page_per_folder(tmp_path, capsys):
    root = tmp_path / "runs"
    write_sample_folder(root / "a", reads=(1, -1))
    write_sample_folder(root / "b", reads=(1, 1))
    assert main(["report", str(root)]) == 0
    for name in ("a", "b"):
        assert page_data((root / name / "report.html").read_text())["title"] == name
    out = tmp_path / "one.html"
    assert main(["report", str(root / "a"), "--out", str(out), "--modes", "1"]) == 0
    assert len(page_data(out.read_text())["modes"]) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing"], "no such folder"),
        (["runs", "--out", "x.html"], "--out names one file"),
        (["runs/a", "--out", "nowhere/x.html"], "nowhere"),
        (["runs/a", "--threshold", "0"], "--threshold must be positive"),
    ],
)
def test_cli_refusals_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    write_sample_folder(tmp_path / "runs" / "a", reads=(1, -1))
    write_sample_folder(tmp_path / "runs" / "b", reads=(1, -1))
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.rglob("*.html"))


def test_sample_report_flag_writes_the_page(tmp_path, monkeypatch):
    from test_sampling import sphere_image, tiny_model, tiny_schedule

    from mssfs.sampler import api

    monkeypatch.setattr(api, "resolve_model", lambda path, device: (tiny_model().to(device), {"path": "tiny"}))
    sched = tmp_path / "tiny.json"
    sched.write_text(json.dumps(tiny_schedule().to_dict()))
    np.save(tmp_path / "ball.npy", sphere_image(40, 48))
    argv = ["sample", str(tmp_path / "ball.npy"), "--samples", "2", "--out", str(tmp_path / "out"),
            "--schedule", str(sched), "-q", "--report"]
    assert main(argv) == 0
    data = page_data((tmp_path / "out" / "ball" / "report.html").read_text())
    assert data["n"] == 2 and data["title"] == "ball"


# ---------------------------------------------------------------- in a real browser


def test_page_in_headless_chromium(folder):
    samples = load_sample_set(folder)
    result = analyze(samples)
    path = write_report(folder / "report.html", samples, result)
    with chrome(1400, 1100) as d:
        d.get(path.as_uri())
        wait_for(d, lambda: d.execute_script("return document.body.dataset.ready") == "1", 30, "the page to draw")
        cards = d.find_elements("css selector", ".sample-card")
        groups = d.find_elements("css selector", ".mode-group")
        assert len(cards) == samples.normals.shape[0]
        assert len(groups) == result.clustering.n_modes
        for k, g in enumerate(groups):
            members = [int(c.get_attribute("data-sample")) for c in g.find_elements("css selector", ".sample-card")]
            assert sorted(members) == np.flatnonzero(result.clustering.labels == k).tolist()

        # drag the light to the upper left: the light and the relit pixels change
        relit = d.find_element("css selector", "canvas.relit")
        before = canvas_pixels(d, relit)
        light0 = d.execute_script("return window.mssfsReport.light()")
        drag(d, d.find_element("id", "light-disc"), -80, -60)
        wait_for(d, lambda: d.execute_script("return window.mssfsReport.light()") != light0, 10, "the light to move")
        lx, ly, lz = d.execute_script("return window.mssfsReport.light()")
        assert lx < -0.3 and ly > 0.2 and abs(lx * lx + ly * ly + lz * lz - 1) < 1e-6
        wait_for(d, lambda: (canvas_pixels(d, relit) != before).mean() > 0.2, 10, "the relit sample to change")
        # the shading is max(0, n . l) of the embedded normals
        data = page_data(path.read_text())
        h, w = data["h"], data["w"]
        n0 = np.frombuffer(base64.b64decode(data["normals"]), np.uint8)[: h * w * 3].reshape(h, w, 3) / 127.5 - 1
        expect = np.round(255 * np.clip(n0 @ np.array([lx, ly, lz]), 0, 1))
        got = canvas_pixels(d, relit).reshape(h, w)
        assert np.abs(got[samples.mask] - expect[samples.mask]).max() <= 1

        # turning a height mesh redraws it
        mesh = d.find_element("css selector", "canvas.mesh")
        before = canvas_pixels(d, mesh)
        drag(d, mesh, 60, 0)
        wait_for(d, lambda: (canvas_pixels(d, mesh) != before).mean() > 0.05, 10, "the mesh to turn")

        std, colours = picture_stats(d.get_screenshot_as_png())
        assert std > 20 and colours > 200, (std, colours)
        assert severe_logs(d) == []
