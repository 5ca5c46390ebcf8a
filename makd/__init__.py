"""makd: distil a frozen teacher into small students with vanilla or Taylor-series KD.

The library has no Ray dependency; the Ray Tune driver lives in the top-level `tune` package.
"""

__version__ = "0.1.0"
