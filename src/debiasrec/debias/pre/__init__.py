"""debiasrec.debias.pre: pre-processing transforms (``Dataset -> Dataset``, training split only)."""

from debiasrec.debias.pre.base import PRE_METHODS, PreConfig, PreTransform, register

__all__ = ["PRE_METHODS", "PreConfig", "PreTransform", "register"]
