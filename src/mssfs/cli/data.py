"""``mssfs data``: make training shards, preview them, list the shape families."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import UsageError

DESCRIPTION = """Procedural training data (ground-truth normal maps of smooth objects and reliefs).

  mssfs data families                         list the shape families and their default shares
  mssfs data make --n 10000 --out shards/     render maps into .npz shards + manifest.json
  mssfs data import my_normals/ --out shards/ shards from your own normal maps (or --kind height|depth)
  mssfs data preview shards/ --out sheet.png  contact sheet: shading and normal maps
  mssfs data preview generated --out sheet.png   the same for maps generated on the fly
  mssfs data preview generated --mix figures=1 --out sheet.png   one family (any mix)

Training seeds lie in [0, 2**30); evaluation sets use seeds >= 2**30."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="make, preview and list procedural training data",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")

    fam = sub.add_parser("families", help="list the shape families with descriptions and default shares")
    fam.set_defaults(func=_families)

    make = sub.add_parser(
        "make",
        help="render a sharded training set",
        description="Render N ground-truth normal maps into shards (int16 normals, packed masks) "
        "and a manifest.json, written last.",
    )
    make.add_argument("--n", type=int, required=True, help="number of maps")
    make.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    make.add_argument("--size", type=int, default=256, help="map side in pixels, a multiple of 16 >= 32 (default 256)")
    make.add_argument("--seed", type=int, default=0, help="seed choosing families and shape seeds (default 0)")
    make.add_argument("--shard-size", type=int, default=256, help="maps per shard file (default 256)")
    make.add_argument("--mix", default=None, help="family shares, e.g. 'blob=2,bumps=1' (normalised; default: the default mix)")
    make.add_argument("--workers", type=int, default=1,
                      help="render shards in this many processes (same output as 1; default 1)")
    make.add_argument("--overwrite", action="store_true", help="replace the shards in a non-empty --out")
    make.set_defaults(func=_make)

    imp = sub.add_parser(
        "import",
        help="make training shards from your own normal, height or depth maps",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""Turn your own surfaces into training shards for `mssfs train --data DIR`
(the shading is rendered from them under random lights during training, as for
`mssfs data make`). Each map is cropped to its central square and resized to --size.
Every file is checked before anything is written.

  --kind normals  .npy float (H, W, 3), x right, y up, z toward the viewer, background
                  (0, 0, 0) or NaN; or .png storing (n + 1) / 2 (8/16 bit, as mssfs
                  sample writes them), background mid-grey or black. --flip-y for maps
                  whose y axis points down ("DirectX" normal maps).
  --kind height   .npy float (H, W), height toward the viewer in pixel units (x
                  --height-scale), background NaN; or a grayscale 8/16-bit .png read
                  as 0..1 of its range, which needs --height-scale.
  --kind depth    the same as a distance from the camera (height = -depth).

examples:
  mssfs data import scans/*.npy --kind depth --height-scale 0.5 --out data/scans
  mssfs data import normal_maps/ --out data/mine && mssfs train --data data/mine --out runs/mine""",
    )
    imp.add_argument("paths", nargs="+", metavar="PATH", help="map files, or folders of .npy/.png maps")
    imp.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    imp.add_argument("--kind", choices=("normals", "height", "depth"), default="normals",
                     help="what the files hold (default normals)")
    imp.add_argument("--size", type=int, default=256, help="map side in pixels, a multiple of 16 >= 32 (default 256)")
    imp.add_argument("--flip-y", action="store_true", help="normal maps whose y axis points down")
    imp.add_argument("--height-scale", type=float, default=None,
                     help="multiply height/depth values by this to get pixel units (default 1 for .npy; "
                          "required for .png)")
    imp.add_argument("--shard-size", type=int, default=256, help="maps per shard file (default 256)")
    imp.add_argument("--overwrite", action="store_true", help="replace the shards in a non-empty --out")
    imp.set_defaults(func=_import)

    prev = sub.add_parser(
        "preview",
        help="contact sheet of shading images and normal maps",
        description="Write a PNG contact sheet of N training items (shading under a random light "
        "and the normal map as (n+1)/2 RGB, background black), labelled with their family.",
    )
    prev.add_argument("source", help="a shard folder, or 'generated' for maps generated on the fly")
    prev.add_argument("--out", required=True, help="PNG file to write")
    prev.add_argument("--n", type=int, default=24, help="number of items (default 24)")
    prev.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    prev.add_argument("--size", type=int, default=256, help="map size for 'generated' (default 256)")
    prev.add_argument("--mix", default=None, help="family shares for 'generated' (default: the default mix)")
    prev.set_defaults(func=_preview)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _families(args) -> int:
    from ..data.shapes import DEFAULT_MIX, FAMILIES

    width = max(map(len, FAMILIES))
    print(f"{'family':<{width}}  {'kind':<7}  share  description")
    for name, fam in FAMILIES.items():
        print(f"{name:<{width}}  {fam.kind:<7}  {DEFAULT_MIX.get(name, 0.0) * 100:4.0f}%  {fam.description}")
    return 0


def _mix(text):
    from ..data.shapes import parse_mix

    if text is None:
        return None
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise UsageError(f"--mix: {exc}") from None


def _size(size: int) -> int:
    from ..data.shards import check_size

    try:
        return check_size(size)
    except ValueError as exc:
        raise UsageError(f"--size: {exc}") from None


def _make(args) -> int:
    from ..data.shards import make_shards

    if args.n <= 0:
        raise UsageError(f"--n must be positive, got {args.n}")
    if args.shard_size <= 0:
        raise UsageError(f"--shard-size must be positive, got {args.shard_size}")
    if args.workers <= 0:
        raise UsageError(f"--workers must be positive, got {args.workers}")
    size, mix = _size(args.size), _mix(args.mix)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"--out {out} is not empty; pass --overwrite to replace its shards")
    path = make_shards(out, args.n, size=size, seed=args.seed, mix=mix, shard_size=args.shard_size,
                       progress=True, overwrite=args.overwrite, workers=args.workers)
    print(f"wrote {args.n} maps of {size}x{size} to {out} ({path.name})")
    return 0


def _import(args) -> int:
    from ..data.user_maps import MapImportError, import_maps

    if args.shard_size <= 0:
        raise UsageError(f"--shard-size must be positive, got {args.shard_size}")
    if args.height_scale is not None and not args.height_scale > 0:
        raise UsageError(f"--height-scale must be positive, got {args.height_scale}")
    size = _size(args.size)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"--out {out} is not empty; pass --overwrite to replace its shards")
    try:
        path = import_maps(args.paths, out, kind=args.kind, size=size, flip_y=args.flip_y,
                           height_scale=args.height_scale, shard_size=args.shard_size, progress=True,
                           overwrite=args.overwrite)
    except MapImportError as exc:
        raise UsageError(str(exc)) from None
    import json

    count = json.loads(path.read_text())["count"]
    print(f"imported {count} {args.kind} map(s) as {size}x{size} training maps into {out} ({path.name})")
    return 0


def _preview(args) -> int:
    from ..data.datasets import TrainingImages
    from ..data.shards import ShardSet

    if args.n <= 0:
        raise UsageError(f"--n must be positive, got {args.n}")
    if not args.out.lower().endswith(".png"):
        raise UsageError(f"--out must name a .png file, got {args.out}")
    from ..core.outputs import OutputError, ensure_folder

    try:  # the sheet's folder writable before any rendering
        ensure_folder(Path(args.out).parent)
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    if args.source == "generated":
        ds = TrainingImages(None, size=_size(args.size), seed=args.seed, mix=_mix(args.mix), grid_offset=False)
    else:
        try:
            ShardSet(args.source)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        ds = TrainingImages(args.source, size=None, seed=args.seed, grid_offset=False)
    items = [item for item, _ in zip(ds, range(args.n))]
    contact_sheet(items, args.out)
    print(f"wrote {args.out} ({len(items)} items)")
    return 0


def contact_sheet(items: list[dict], path, cols: int = 6) -> None:
    """Save a PNG grid: each item's shading image above its normal map, titled with its family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..analysis.plots import save_figure

    rows = -(-len(items) // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.0 * cols, 4.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, item in enumerate(items):
        r, c = divmod(k, cols)
        img = item["image"][0].numpy()
        n = item["normals"].permute(1, 2, 0).numpy()
        m = item["mask"][0].numpy()[..., None] > 0
        axes[2 * r, c].imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[2 * r, c].set_title(item["family"], fontsize=9)
        axes[2 * r + 1, c].imshow(np.where(m, (n + 1) / 2, 0.0), interpolation="nearest")
    fig.tight_layout(pad=0.3)
    save_figure(fig, path, dpi=80)
