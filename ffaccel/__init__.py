"""ffaccel: Forward-Forward inference accelerator generator and models."""
__version__ = "0.1.0"
