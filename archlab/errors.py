"""Errors a user can act on.

``ConfigError`` is a ``ValueError``: bad arguments, shapes or settings. Its message names the
argument, what was expected and what was given. The CLI turns it into exit status 2.
``TrainingError`` is a run that cannot go on (a non-finite loss); the CLI exits with status 1.
"""


class ConfigError(ValueError):
    """A bad argument, shape or setting; the message says which, what was expected, what was given."""


class CheckpointError(ConfigError):
    """A checkpoint that is missing, truncated, corrupted or from another model."""


class TrainingError(RuntimeError):
    """A training run that stopped because it cannot go on (e.g. a non-finite loss), naming the step."""


def check(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
