"""Errors a user can cause. Each carries one line saying what is wrong and what to do.

The CLI turns any ``NasflowError`` into that line on stderr and exit status 2; anything
else is a bug and keeps its traceback.
"""


class NasflowError(Exception):
    """Base class: a problem with the user's input, files or options."""


class ArchError(NasflowError, ValueError):
    """A malformed or invalid cell: bad arch string, unknown op, bad matrix, bad index."""


class SpaceError(NasflowError, ValueError):
    """An unknown search space, or an operation the space does not support."""


class BenchmarkError(NasflowError):
    """A benchmark file that is missing, truncated, malformed or lacks a dataset."""


class DataError(NasflowError, ValueError):
    """Labels or user data that cannot be used (NaNs, wrong shapes, too few items)."""


class CheckpointError(NasflowError):
    """A predictor checkpoint that is corrupted or belongs to another space."""


class NasflowWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints it as one line)."""
