"""debiasrec.serve."""
