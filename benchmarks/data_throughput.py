"""Throughput of the procedural training data on this CPU.

Prints (1) milliseconds per 256x256 ground-truth map for every shape family and (2)
training items per second from :class:`mssfs.data.datasets.TrainingImages`, generated on the fly
and read from shards, in one process and with a DataLoader of 2 workers.

    OMP_NUM_THREADS=1 python benchmarks/data_throughput.py [--size 256] [--items 96]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from torch.utils.data import DataLoader

from mssfs.data import shapes
from mssfs.data.datasets import TrainingImages
from mssfs.data.shards import make_shards


def per_family_ms(size: int, maps: int) -> dict[str, float]:
    out = {}
    for name in shapes.FAMILIES:
        shapes.generate(name, 10_000, size)  # warm caches
        t = time.perf_counter()
        for seed in range(maps):
            shapes.generate(name, seed, size)
        out[name] = (time.perf_counter() - t) / maps * 1e3
    return out


def items_per_second(dataset, items: int, workers: int) -> float:
    if workers == 0:
        it = iter(dataset)
        next(it)
        t = time.perf_counter()
        for _ in range(items):
            next(it)
        return items / (time.perf_counter() - t)
    loader = DataLoader(dataset, batch_size=8, num_workers=workers)
    it = iter(loader)
    next(it)  # start-up (worker spawn, first shard) is not counted
    batches = max(1, items // 8)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * 8 / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--maps", type=int, default=20, help="maps per family for the per-family timing")
    parser.add_argument("--items", type=int, default=96, help="training items per throughput measurement")
    args = parser.parse_args()

    ms = per_family_ms(args.size, args.maps)
    mix_ms = sum(shapes.DEFAULT_MIX[k] * v for k, v in ms.items())
    print(f"\nGround-truth maps, {args.size}x{args.size}, one process ({args.maps} maps each)")
    print(f"{'family':<12} {'ms/map':>8} {'vs mix':>7}")
    for name, v in ms.items():
        print(f"{name:<12} {v:8.1f} {v / mix_ms:7.2f}")
    print(f"{'default mix':<12} {mix_ms:8.1f} {1.0:7.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_shards(tmp, 256, size=args.size, shard_size=64, progress=False)
        make_s = time.perf_counter() - t
        rows = []
        for label, source in (("on the fly", None), ("shards", tmp)):
            for workers in (0, 2):
                ds = TrainingImages(source, size=args.size, seed=0)
                rows.append((label, workers, items_per_second(ds, args.items, workers)))
    base = rows[0][2]
    out = args.size - 16
    print(f"\nTraining items ({out}x{out} crops of {args.size}x{args.size} maps, relit, augmented)")
    print(f"{'source':<11} {'workers':>7} {'items/s':>8} {'vs fly/0':>9}")
    for label, workers, rate in rows:
        print(f"{label:<11} {workers:>7} {rate:8.1f} {rate / base:9.2f}")
    print(f"\nmake_shards: 256 maps in {make_s:.1f} s ({256 / make_s:.1f} maps/s)")
    print(f"published batch (8 images) every {8 / base * 1e3:.0f} ms on the fly in one process")


if __name__ == "__main__":
    main()
