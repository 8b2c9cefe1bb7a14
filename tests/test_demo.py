"""``mssfs demo``: the request runner, the missing-extra message, and the whole page end to
end in a headless browser against a local server (loading an exported tiny denoiser with
``--model``: the page, the preset and the output are under test here, not the network)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import numpy as np
import pytest
from faults_support import tiny_export
from headless import canvas_pixels, chrome, drag, need_module, severe_logs, wait_for
from PIL import Image
from test_sampling import sphere_image, tiny_model, tiny_schedule

from mssfs.analysis import analyze, load_sample_set
from mssfs.app.demo import DemoRunner, drawing_to_image
from mssfs.cli import main


def test_runner_writes_folder_report_zip_and_mode_ordered_gallery(tmp_path):
    runner = DemoRunner(tmp_path / "runs", model=tiny_model(), model_info={"path": "tiny"}, schedule=tiny_schedule())
    out = runner.run(sphere_image(40, 48), n=3, preset="fast", seed=1)
    folder = out["folder"]
    assert folder.name == "drawing" and (folder.parent / "drawing.png").is_file()  # arrays come from the Draw tab
    assert (folder / "normals.npy").is_file() and out["report"] == folder / "report.html"
    with zipfile.ZipFile(out["zip"]) as z:
        names = set(z.namelist())
    assert {f"{folder.name}/normals.npy", f"{folder.name}/report.html", f"{folder.name}/meta.json"} <= names
    labels = analyze(load_sample_set(folder)).clustering.labels
    shown = [int(caption.rsplit(" ", 1)[1]) for _, caption in out["gallery"]]
    assert sorted(shown) == [0, 1, 2] and list(labels[shown]) == sorted(labels[shown])
    assert "3 sample(s)" in out["summary"]


@pytest.mark.parametrize("n, seed, message", [(0, 0, "N must be between"), (2, -1, "seed must be")])
def test_runner_refuses_bad_requests(tmp_path, n, seed, message):
    runner = DemoRunner(tmp_path, model=tiny_model(), schedule=tiny_schedule())
    with pytest.raises(ValueError, match=message):
        runner.run(sphere_image(), n=n, preset="fast", seed=seed)
    assert not list(tmp_path.iterdir())


def test_drawing_is_composited_over_black():
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[5:10, 5:15] = [255, 255, 255, 255]
    rgba[12:15, 5:15] = [255, 255, 255, 128]
    img = drawing_to_image({"composite": rgba, "layers": [], "background": None})
    assert img.shape == (20, 30) and img[0, 0] == 0 and img[7, 7] == pytest.approx(1.0)
    assert img[13, 7] == pytest.approx(128 / 255)
    assert drawing_to_image({"composite": np.zeros((8, 8, 4), np.uint8)}) is None and drawing_to_image(None) is None


def test_missing_gradio_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    assert main(["demo"]) == 2
    err = capsys.readouterr().err.strip()
    assert 'pip install "mssfs[demo]"' in err and len(err.splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc, log, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"the demo server exited with {proc.returncode}:\n{log.read_text()[-2000:]}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the demo server did not answer within {timeout:g} s:\n{log.read_text()[-2000:]}", pytrace=False)


@pytest.mark.slow
def test_demo_end_to_end_in_headless_chromium(tmp_path):
    need_module("gradio")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    Image.fromarray(np.round(sphere_image(40, 48) * 255).astype(np.uint8)).save(tmp_path / "ball.png")
    port, runs, log = _free_port(), tmp_path / "runs", tmp_path / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    url = f"http://127.0.0.1:{port}/"
    with chrome(1400, 1200) as d, open(log, "w") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mssfs", "demo", "--host", "127.0.0.1", "--port", str(port), "--precision", "bf16",
             "--model", str(tiny_export(tmp_path / "model")), "--workdir", str(runs)],
            stdout=logf, stderr=subprocess.STDOUT, env=env,
        )
        try:
            _wait_for_server(url, proc, log, 120)
            d.get(url)
            wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), 60, "the upload field")
            d.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(tmp_path / "ball.png"))
            wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, "#upload img"), 30, "the uploaded image")
            n = d.find_element(By.CSS_SELECTOR, "#n input[type=number]")
            n.send_keys(Keys.CONTROL, "a")
            n.send_keys("2", Keys.TAB)
            # clicked from the page's script: Gradio's progress overlays may cover them for a moment
            d.execute_script("arguments[0].click()", d.find_element(By.CSS_SELECTOR, "#preset input[value=fast]"))
            d.execute_script("arguments[0].click()", d.find_element(By.CSS_SELECTOR, "#run"))
            wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, "#report iframe"), 180, "the samples")
            assert "2 sample(s)" in d.find_element(By.CSS_SELECTOR, "#status").text
            assert len(d.find_elements(By.CSS_SELECTOR, "#gallery img")) == 2
            links = [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "#download a")]
            assert any(h and h.endswith(".zip") for h in links), links
            folder = next(runs.glob("run-*/ball"))
            assert np.load(folder / "normals.npy").shape == (2, 40, 48, 3)
            assert json.loads((folder / "meta.json").read_text())["preset"].startswith("fast")  # fast@R when scaled
            modes = analyze(load_sample_set(folder)).clustering.n_modes

            d.switch_to.frame(d.find_element(By.CSS_SELECTOR, "#report iframe"))
            wait_for(d, lambda: d.execute_script("return document.body.dataset.ready") == "1", 30, "the report")
            assert len(d.find_elements(By.CSS_SELECTOR, ".sample-card")) == 2
            assert len(d.find_elements(By.CSS_SELECTOR, ".mode-group")) == modes
            relit = d.find_element(By.CSS_SELECTOR, "canvas.relit")
            before = canvas_pixels(d, relit)
            disc = d.find_element(By.ID, "light-disc")
            d.execute_script("arguments[0].scrollIntoView({block: 'center'})", disc)
            drag(d, disc, 80, -60)
            wait_for(d, lambda: (canvas_pixels(d, relit) != before).mean() > 0.1, 10, "the relit sample to change")
            d.switch_to.default_content()
            assert severe_logs(d) == []
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
