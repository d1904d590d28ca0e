"""Errors a user can act on: the CLI prints their message in one line, the UI shows it."""


class ActiveLearnError(Exception):
    """Base class for errors with a message meant for the user."""


class DatasetError(ActiveLearnError):
    """Fashion-MNIST files missing, corrupt or unreachable."""


class ModelError(ActiveLearnError):
    """A model version missing, corrupt or unusable."""


class StoreError(ActiveLearnError):
    """labels.db refuses an operation (unknown item or class, bad action)."""


class ImportRejected(ActiveLearnError):
    """One input file refused by import; the message is the reason shown in the report."""


class JobError(ActiveLearnError):
    """A training job cannot be started, or failed."""
