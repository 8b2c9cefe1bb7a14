"""Training data: procedural shapes, rendered shards and their datasets, augmentation, imported
user maps, and the bundled ambiguous stimuli.
"""

from __future__ import annotations

from .augment import augment, augment_grid, augment_vectors
from .datasets import HeldoutImages, TrainingImages
from .shards import SHARD_FORMAT, ShardSet, check_size, decode_normals, encode_normals, make_shards
from .user_maps import KINDS, MapImportError, find_map_files, import_maps, read_map, square_map

__all__ = [
    "KINDS",
    "SHARD_FORMAT",
    "HeldoutImages",
    "MapImportError",
    "ShardSet",
    "TrainingImages",
    "augment",
    "augment_grid",
    "augment_vectors",
    "check_size",
    "decode_normals",
    "encode_normals",
    "find_map_files",
    "import_maps",
    "make_shards",
    "read_map",
    "square_map",
]
