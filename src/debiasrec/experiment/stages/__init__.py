"""The stages of an experiment run, each cached by content hash (see ``experiment.cache``).

- :mod:`.data`: load, purify and split the data;
- :mod:`.fit`: pre-processing transforms, then training with in-processing strategies;
- :mod:`.evaluate`: full-ranking evaluation of a trained model;
- :mod:`.post`: post-processing (re-ranking, self-calibration) and its evaluation.
"""
