"""debiasrec.experiment."""
