"""debiasrec.debias.pre: pre-processing transforms (``Dataset -> Dataset``, training split only).

Registered transforms (:data:`TRANSFORMS`, also known as ``PRE_METHODS``): ``group_reweight``,
``activity_reweight`` and ``ips`` (per-interaction weights), ``oversample`` (copies of real users of under-represented groups), ``gan_balance``
(WGAN-GP synthetic users of under-represented groups) and ``gan_twins`` (WGAN-GP counterfactual
twins). See ``docs/augmentation.md``.
"""

from debiasrec.debias.pre.activity import ActivityReweight
from debiasrec.debias.pre.base import PRE_METHODS, TRANSFORMS, PreConfig, PreTransform, register
from debiasrec.debias.pre.gan import GANBalance, GANTwins, ProfileGAN
from debiasrec.debias.pre.oversample import Oversample
from debiasrec.debias.pre.reweight import GroupReweight, PopularityIPS

__all__ = [
    "PRE_METHODS",
    "TRANSFORMS",
    "ActivityReweight",
    "GANBalance",
    "GANTwins",
    "GroupReweight",
    "Oversample",
    "PopularityIPS",
    "PreConfig",
    "PreTransform",
    "ProfileGAN",
    "register",
]
