"""What a model is trained to do: batches, loss and metrics for each kind of problem.

``get_task(name)`` returns a task class; every module of this package registers its tasks by
existing (``lm``: language modelling, ``classify``: image classification, ``textclass``: text
classification, ``mlm``: masked language modelling, ``forecast``: time-series forecasting,
``seq2seq``: translation, e.g. spelling -> phonemes, ``span_corruption``: T5's pre-training on a
text file, ``clip``: image-text contrastive learning). The contract every task follows is in
``archlab.tasks.base``.
"""

from archlab.tasks.base import Batch, Task, get_task, list_tasks, register_task

__all__ = ["Batch", "Task", "get_task", "list_tasks", "register_task"]
