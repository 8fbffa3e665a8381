"""Data layer: Dataset, Schema, loaders, purification, splits, synthetic data."""

from debiasrec.data.dataset import Dataset
from debiasrec.data.schema import ML1M_AGE_BINS, Schema, SensitiveAttr

__all__ = ["ML1M_AGE_BINS", "Dataset", "Schema", "SensitiveAttr"]
