"""lamina: a container image builder and layered image store."""

__version__ = "0.1.0"
