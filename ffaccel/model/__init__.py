"""FF model: float training and inference, quantisation, the bit-exact integer golden model."""

from .embed import embed_all, embed_labels, embed_neutral, input_codes
from .golden import GoldenModel, GoldenResult, QuantModel

__all__ = ["GoldenModel", "GoldenResult", "QuantModel", "embed_all", "embed_labels",
           "embed_neutral", "input_codes"]
