"""debiasrec.debias."""
