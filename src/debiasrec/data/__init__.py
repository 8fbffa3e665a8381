"""Data layer: Dataset, Schema, loaders, purification, splits, synthetic data.

Note on names: the functions :func:`~debiasrec.data.purify.purify` and
:func:`~debiasrec.data.describe.describe` are exported here under their own names, so
``debiasrec.data.purify`` and ``debiasrec.data.describe`` are those functions; import from the
submodules (``from debiasrec.data.purify import PurifyConfig``) to reach everything else.
The download function ``fetch`` is *not* re-exported: doing so would hide the submodule
``debiasrec.data.fetch``, which callers (and tests) use as a module. Call it as
``debiasrec.data.fetch.fetch(...)`` or ``from debiasrec.data.fetch import fetch``.
"""

from debiasrec.data.dataset import INTERSECTION_SEP, Dataset
from debiasrec.data.describe import describe, format_description, gini
from debiasrec.data.fetch import (
    DATASETS,
    ML100K_ATOMIC_SHA256,
    cache_dir,
    cached,
    file_digest,
    recbole_ml100k_dir,
)
from debiasrec.data.loaders import (
    ML1M_OCCUPATIONS,
    ML100K_GENRES,
    RawData,
    from_pandas,
    infer_sensitive,
    load,
    load_atomic,
    load_ml1m,
    load_ml100k,
    load_table,
    ml100k_schema,
)
from debiasrec.data.purify import (
    REASONS,
    UNKNOWN_GROUP,
    PurifyConfig,
    PurifyReport,
    load_dataset,
    purify,
)
from debiasrec.data.schema import ML1M_AGE_BINS, Schema, SensitiveAttr, bucket_labels
from debiasrec.data.split import (
    Split,
    leave_one_out_split,
    make_split,
    random_split,
    temporal_split,
)
from debiasrec.data.synthetic import SyntheticConfig, SyntheticTruth, generate

__all__ = [
    "DATASETS",
    "INTERSECTION_SEP",
    "ML1M_AGE_BINS",
    "ML1M_OCCUPATIONS",
    "ML100K_ATOMIC_SHA256",
    "ML100K_GENRES",
    "REASONS",
    "UNKNOWN_GROUP",
    "Dataset",
    "PurifyConfig",
    "PurifyReport",
    "RawData",
    "Schema",
    "SensitiveAttr",
    "Split",
    "SyntheticConfig",
    "SyntheticTruth",
    "bucket_labels",
    "cache_dir",
    "cached",
    "describe",
    "file_digest",
    "format_description",
    "from_pandas",
    "generate",
    "gini",
    "infer_sensitive",
    "leave_one_out_split",
    "load",
    "load_atomic",
    "load_dataset",
    "load_ml1m",
    "load_ml100k",
    "load_table",
    "make_split",
    "ml100k_schema",
    "purify",
    "random_split",
    "recbole_ml100k_dir",
    "temporal_split",
]
