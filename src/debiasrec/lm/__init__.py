"""debiasrec.lm."""
