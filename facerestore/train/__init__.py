"""Training engine: ``facerestore train`` (see ``docs/training.md``).

:class:`Trainer` builds every component of a recipe through the registry and runs the schedule;
:mod:`.state` stores the complete training state in safetensors; :mod:`.sampler` gives the
resumable data order; :mod:`.dist` the ``torchrun`` data parallelism.
"""

from .trainer import TrainResult, Trainer, TrainingDiverged, train

__all__ = ["Trainer", "TrainResult", "TrainingDiverged", "train"]
