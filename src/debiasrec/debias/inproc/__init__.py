"""debiasrec.debias.inproc: in-processing debiasing as strategies for the one Trainer.

Every strategy registers itself in :data:`STRATEGIES` (see :mod:`debiasrec.debias.inproc.base`).
"""

from debiasrec.debias.inproc.adversarial import Adversarial, AdversarialConfig, grad_reverse
from debiasrec.debias.inproc.base import STRATEGIES, InprocStrategy, StrategyConfig
from debiasrec.debias.inproc.group_dro import GroupDRO, GroupDROConfig
from debiasrec.debias.inproc.group_validation import GroupValidation, GroupValidationConfig
from debiasrec.debias.inproc.multitask import (
    MultiTask,
    MultiTaskConfig,
    TaskSpec,
    TextTaskData,
    pcgrad_project,
)
from debiasrec.debias.inproc.regularizers import (
    FOCF_KINDS,
    FOCFConfig,
    FOCFRegularizer,
    UtilityGapConfig,
    UtilityGapPenalty,
    focf_unfairness,
)

__all__ = [
    "FOCF_KINDS",
    "STRATEGIES",
    "Adversarial",
    "AdversarialConfig",
    "FOCFConfig",
    "FOCFRegularizer",
    "GroupDRO",
    "GroupDROConfig",
    "GroupValidation",
    "GroupValidationConfig",
    "InprocStrategy",
    "StrategyConfig",
    "UtilityGapConfig",
    "MultiTask",
    "MultiTaskConfig",
    "TaskSpec",
    "TextTaskData",
    "UtilityGapPenalty",
    "focf_unfairness",
    "grad_reverse",
    "pcgrad_project",
]
