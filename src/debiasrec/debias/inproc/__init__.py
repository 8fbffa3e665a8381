"""debiasrec.debias.inproc."""
