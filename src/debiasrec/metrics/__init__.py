"""debiasrec.metrics."""
