"""``mssfs demo``: a local web page to sample shapes from an uploaded or drawn image.

Built with Gradio (the optional extra ``pip install "mssfs[demo]"``), imported only when
the demo starts.  The page takes an image (upload, drawing or a bundled stimulus), the
number of samples ``N``, the preset and the seed, runs :func:`mssfs.sample` with a
progress bar, and shows the result as the self-contained report of
:mod:`mssfs.analysis.html_report` (samples grouped by mode, relighting under a light
dragged on a disc, spread, lights, height meshes) inside the page, a gallery of the
samples in mode order, and a zip of the output folder to download.

Every run writes into its own folder ``<workdir>/run-XXXX/<stem>/`` (the folder
``mssfs sample`` writes, plus ``report.html``); the work folder defaults to a temporary
folder removed when the server stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

__all__ = ["DEMO_EXTRA_HINT", "MAX_SAMPLES", "DemoRunner", "build_demo", "require_gradio"]

#: Most samples one request may ask for.
MAX_SAMPLES = 32
#: The one-line hint printed when Gradio is missing.
DEMO_EXTRA_HINT = 'the demo needs Gradio: pip install "mssfs[demo]"'
STIMULI = ("circles", "rings", "star", "snake")
#: Side of the drawing canvas (pixels).
DRAW_SIZE = 256


def require_gradio():
    """Import and return :mod:`gradio`; raise ImportError with :data:`DEMO_EXTRA_HINT` when it is missing."""
    try:
        import gradio
    except ImportError as exc:
        raise ImportError(DEMO_EXTRA_HINT) from exc
    return gradio


def drawing_to_image(value) -> np.ndarray | None:
    """A Gradio sketchpad value (``{"composite": (H, W, 4) uint8, ...}``) as an ``(H, W)``
    float image in [0, 1]: strokes composited over black (black is background)."""
    if value is None:
        return None
    comp = value.get("composite") if isinstance(value, dict) else value
    if comp is None:
        return None
    comp = np.asarray(comp, np.float64) / 255.0
    if comp.ndim == 2:
        return comp
    rgb = comp[..., :3] @ np.array([0.299, 0.587, 0.114])
    alpha = comp[..., 3] if comp.shape[-1] == 4 else 1.0
    gray = rgb * alpha
    return gray if gray.max() > 0 else None


class DemoRunner:
    """Runs one request: sample, save, analyse, report, zip (no Gradio needed).

    Args:
        workdir: where run folders go.
        model: a denoiser module, a weights path or None (the package weights), loaded
            on the first request unless it is a module; model_info: its description for
            ``meta.json`` (from :func:`mssfs.sampler.api.resolve_model`).
        schedule, device, bf16: passed to :func:`mssfs.sample` (``schedule`` overrides the
            request's preset when given).
    """

    def __init__(self, workdir, model=None, model_info: dict | None = None, schedule=None, device: str = "auto",
                 bf16: bool = False):
        self.workdir = Path(workdir)
        self.schedule = schedule
        self.device = device
        self.bf16 = bf16
        self._model = model
        self.model_info = model_info
        self._lock = threading.Lock()

    def model(self):
        """The denoiser module: as given, else loaded once (a path, or None for the package weights)."""
        import torch

        if not isinstance(self._model, torch.nn.Module):
            from ..core.device import resolve_device
            from ..sampler.api import resolve_model

            self._model, self.model_info = resolve_model(self._model, resolve_device(self.device))
        return self._model

    def run(self, image, n: int, preset: str, seed: int) -> dict:
        """Sample ``n`` maps for ``image`` (path, ``stimulus:NAME`` or ``(H, W)`` array).

        Returns a dict: ``folder`` (the output folder), ``report`` (report.html), ``zip``,
        ``gallery`` (``(png path, caption)`` in mode order), ``summary`` (one line).
        Raises ValueError (bad request) or :class:`mssfs.core.images.ImageError`.
        """
        import mssfs

        from ..analysis import analyze, load_sample_set
        from ..analysis.html_report import write_report
        from ..sampler.api import WeightsNotice

        n = int(n)
        if not 1 <= n <= MAX_SAMPLES:
            raise ValueError(f"N must be between 1 and {MAX_SAMPLES}, got {n}")
        if int(seed) < 0:
            raise ValueError(f"the seed must be >= 0, got {seed}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self.workdir))
        if isinstance(image, np.ndarray):  # a drawing: kept as drawing.png, so the outputs are named after it
            from ..core.fileio import save_png

            path = run_dir / "drawing.png"
            save_png(path, np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
            image = str(path)
        with self._lock, warnings.catch_warnings():  # one run at a time: they share the CPU threads
            warnings.simplefilter("ignore", WeightsNotice)  # printed once when the server starts
            result = mssfs.sample(
                image, n=n, seed=int(seed), preset=preset, schedule=self.schedule, device=self.device,
                model=self.model(), bf16=self.bf16, progress=True,
            )
        if self.model_info:
            result.model_info = self.model_info
        folder = result.save(run_dir / (result.stem or "image"))
        samples = load_sample_set(folder)
        analysis = analyze(samples)
        report = write_report(folder / "report.html", samples, analysis)
        archive = shutil.make_archive(str(run_dir / folder.name), "zip", root_dir=run_dir, base_dir=folder.name)
        c = analysis.clustering
        width = max(2, len(str(n - 1)))
        gallery = []
        for k in range(c.n_modes):
            for i in np.flatnonzero(c.labels == k):
                gallery.append((str(folder / f"sample_{i:0{width}d}.png"),
                                f"mode {k} ({100 * c.shares[k]:.0f}%): sample {i}"))
        shares = ", ".join(f"{100 * s:.0f}%" for s in c.shares)
        t = result.timings["total_s"]
        summary = f"{n} sample(s) in {t:.0f} s: {c.n_modes} mode(s) ({shares})"
        return {"folder": folder, "report": report, "zip": Path(archive), "gallery": gallery, "summary": summary}


def _iframe(report: Path) -> str:
    import html

    text = report.read_text(encoding="utf-8")
    return (f'<iframe id="report-frame" title="mssfs report" srcdoc="{html.escape(text, quote=True)}" '
            'style="width:100%;height:1100px;border:0"></iframe>')


def build_demo(runner: DemoRunner, max_samples: int = MAX_SAMPLES):
    """The Gradio ``Blocks`` app for ``runner`` (not launched)."""
    gr = require_gradio()
    from ..core.images import ImageError

    # Gradio finds its progress tracker through this default value (its documented idiom).
    def sample(source, upload, drawing, stimulus, n, preset, seed, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        if source == "draw":
            image = drawing_to_image(drawing)
            if image is None:
                raise gr.Error("the drawing is empty: paint the lit surface in light tones (black is background)")
        elif source == "stimulus":
            image = f"stimulus:{stimulus}"
        else:
            if not upload:
                raise gr.Error("upload an image first (or pick the Draw or Stimulus tab)")
            image = upload
        progress(0, desc="loading the model")
        try:
            out = runner.run(image, n, preset, seed)
        except (ValueError, ImageError) as exc:
            raise gr.Error(str(exc)) from None
        return out["summary"], _iframe(out["report"]), out["gallery"], str(out["zip"])

    with gr.Blocks(title="mssfs demo", analytics_enabled=False) as demo:
        gr.Markdown(
            "## mssfs: many surfaces from one shading image\n"
            "Give a shading image (upload it, draw it, or pick a bundled stimulus), choose how many "
            "samples to draw, and press **Sample**. The samples come back grouped by interpretation; "
            "drag the light on the disc to relight them."
        )
        source = gr.State("upload")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                with gr.Tabs():
                    with gr.Tab("Upload", id="upload") as tab_upload:
                        upload = gr.Image(label="shading image", type="filepath", sources=["upload", "clipboard"],
                                          elem_id="upload", height=280)
                    with gr.Tab("Draw", id="draw") as tab_draw:
                        blank = {"background": np.zeros((DRAW_SIZE, DRAW_SIZE, 3), np.uint8), "layers": [],
                                 "composite": None}
                        drawing = gr.Sketchpad(blank, label="paint the lit surface; black is background",
                                               type="numpy", elem_id="drawing", height=280,
                                               canvas_size=(DRAW_SIZE, DRAW_SIZE),
                                               brush=gr.Brush(colors=["#ffffff", "#bbbbbb", "#777777", "#333333"],
                                                              default_color="#ffffff"))
                    with gr.Tab("Stimulus", id="stimulus") as tab_stimulus:
                        stimulus = gr.Dropdown(list(STIMULI), value="circles", label="bundled stimulus",
                                               elem_id="stimulus")
                n = gr.Slider(1, max_samples, value=8, step=1, label="samples N", elem_id="n")
                preset = gr.Radio(["fast", "paper"], value="fast", label="preset", elem_id="preset",
                                  info="fast: about 1/11 of the work of paper; meets the release bars with the "
                                  "bundled weights")
                seed = gr.Number(0, precision=0, minimum=0, label="seed", elem_id="seed")
                run = gr.Button("Sample", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                report = gr.HTML(elem_id="report")
                gallery = gr.Gallery(label="samples (normal maps) in mode order", elem_id="gallery", columns=6,
                                     height="auto")
                download = gr.File(label="output folder (zip)", elem_id="download")
        tab_upload.select(lambda: "upload", outputs=source)
        tab_draw.select(lambda: "draw", outputs=source)
        tab_stimulus.select(lambda: "stimulus", outputs=source)
        run.click(sample, inputs=[source, upload, drawing, stimulus, n, preset, seed],
                  outputs=[status, report, gallery, download])
    return demo


def serve(host: str = "127.0.0.1", port: int | None = None, workdir=None, **runner_kwargs) -> None:
    """Build and launch the demo until interrupted (``runner_kwargs`` go to :class:`DemoRunner`)."""
    require_gradio()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with tempfile.TemporaryDirectory(prefix="mssfs-demo-") as tmp:
        runner = DemoRunner(workdir or tmp, **runner_kwargs)
        demo = build_demo(runner)
        demo.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, allowed_paths=[str(runner.workdir)], show_error=True,
            footer_links=[],
        )
