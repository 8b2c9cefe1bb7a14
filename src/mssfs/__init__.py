"""mssfs: multistable shape from shading by guided patch diffusion.

Conventions (normal frame, image layout, slopes) are documented in :mod:`mssfs.geometry`.
"""

__version__ = "0.1.0"
