"""debiasrec.training."""
