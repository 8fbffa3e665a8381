"""debiasrec.debias.pre."""
