"""formula-gan: realistic synthetic handwritten formula images from LaTeX."""

__version__ = "0.1.0"
