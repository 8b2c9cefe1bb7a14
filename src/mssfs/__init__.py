"""mssfs: multistable shape from shading by guided patch diffusion.

Conventions (normal frame, image layout, slopes) are documented in :mod:`mssfs.core.frame`.
"""

__version__ = "0.2.0"

# Heavy modules load on first use: ``mssfs.sample`` imports torch only when called for.
_LAZY = {"sample": "sampler.api", "sample_many": "sampler.api", "SampleResult": "sampler.result"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(path=None, device="cpu"):
    """Load an exported denoiser (default: the package weights); see :func:`mssfs.model.weights.load_model`.

    Returns a model in eval mode: ``eps = model(x_t (B,3,16,16), t (B,) int64, shading (B,1,16,16))``.
    """
    from .model.weights import load_model as _load_model

    return _load_model(path, device=device)
