"""debiasrec.debias.post."""
