"""Quick start: sample the shapes a shading image allows, find its interpretations and
look at them -- the Python API in one page.

    python examples/quickstart.py                       # stimulus:circles, 8 samples
    python examples/quickstart.py photo.png -n 16       # your own image (PNG, JPEG, TIFF, NPY)
    python examples/quickstart.py --quick               # seconds: 2 samples, a tiny schedule

Everything lands in OUT/<input name>/ (default OUT: quickstart): the sample folder that
``mssfs sample`` writes, plus ``report.json`` (``mssfs analyze``), a mesh per sample, a
figure of the samples and ``report.html`` (``mssfs report``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mssfs
from mssfs.analysis.html_report import write_report

#: A one-stage schedule on a two-step grid: no use for results, but it runs the whole
#: path in seconds (for trying the script out, and for the test that runs it).
QUICK_SCHEDULE = {
    "name": "quick",
    "num_steps": 2,
    "fuse_last": 1,
    "stages": [{"resolution": 32, "lr": 10, "restart_t": 299, "guidance_start_t": 250, "lighting": True}],
}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", nargs="?", default="stimulus:circles",
                        help="image file, folder or stimulus:NAME (default stimulus:circles)")
    parser.add_argument("--samples", "-n", type=int, default=8, help="samples to draw (default 8)")
    parser.add_argument("--out", default="quickstart", help="output folder (default quickstart)")
    parser.add_argument("--quick", action="store_true", help="2 samples on a tiny schedule: seconds, not minutes")
    args = parser.parse_args(argv)

    # 1. Sample. Defaults: the `fast` preset, CUDA when there is a GPU, progress bars in a
    #    terminal. The input may also be a numpy array, a PIL image or a torch tensor.
    result = mssfs.sample(
        args.image, n=2 if args.quick else args.samples, seed=0, schedule=QUICK_SCHEDULE if args.quick else None
    )
    print(result)  # input, samples, size, preset, seed, time
    folder = result.save(Path(args.out) / result.stem, overwrite=True)

    # 2. Interpretations: the modes `mssfs analyze` finds, with their shares.
    analysis = result.analyze()
    report = analysis.to_json(result.sample_set())
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    for mode in report["modes"]:
        print(f"mode {mode['mode']}: {100 * mode['share']:.0f}% of the samples "
              f"(representative: sample {mode['representative']})")

    # 3. Shapes: height maps (what `mssfs depth` integrates) and a mesh per sample,
    #    coloured by the input image (PLY) -- open them in any mesh viewer.
    heights = result.depth()
    for i in range(result.n):
        result.mesh(i, folder / f"mesh_{i:02d}.ply")
    print(f"height range of sample 0: {heights[0][result.mask].min():.1f} .. {heights[0][result.mask].max():.1f} px")

    # 4. A figure of the input and the samples, and the interactive page of `mssfs report`
    #    (samples grouped by mode, relit under a light you drag, height meshes).
    result.plot(folder / "quickstart.png")
    write_report(folder / "report.html", result.sample_set(), analysis)
    print(f"outputs in {folder} (open report.html in a browser)")
    return folder


if __name__ == "__main__":
    main()
