"""debiasrec.models."""
