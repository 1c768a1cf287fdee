"""Errors a user can act on. Stages print them as one message and exit non-zero."""


class PipelineError(Exception):
    """Base class: a problem with the user's input, not a bug."""


class ConfigError(PipelineError):
    """A bad value in params.yaml (the message names the key)."""


class DataError(PipelineError):
    """Bad raw data (the message names the file and line)."""


class ModelError(PipelineError):
    """A model folder or id that cannot be loaded."""
