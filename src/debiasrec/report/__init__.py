"""debiasrec.report."""
