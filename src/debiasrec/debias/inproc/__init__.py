"""debiasrec.debias.inproc: in-processing debiasing as Strategies for the one Trainer."""

from debiasrec.debias.inproc.adversarial import Adversarial, AdversarialConfig, grad_reverse
from debiasrec.debias.inproc.multitask import (
    MultiTask,
    MultiTaskConfig,
    TaskSpec,
    TextTaskData,
    pcgrad_project,
)
from debiasrec.debias.inproc.regularizers import (
    FOCF_KINDS,
    FOCFRegularizer,
    UtilityGapPenalty,
    focf_unfairness,
)

__all__ = [
    "FOCF_KINDS",
    "Adversarial",
    "AdversarialConfig",
    "FOCFRegularizer",
    "MultiTask",
    "MultiTaskConfig",
    "TaskSpec",
    "TextTaskData",
    "UtilityGapPenalty",
    "focf_unfairness",
    "grad_reverse",
    "pcgrad_project",
]
