"""Errors the user can act on.

Every problem that comes from the user's input (a file, a manifest, a checkpoint, a flag)
is raised as an :class:`AVStudioError` subclass with one clear sentence that names the
thing and the problem. The CLI prints that sentence on stderr and exits non-zero; the GUI
shows it in a dialog. Anything else is a bug.
"""


class AVStudioError(Exception):
    """Base class: a message meant for the user, one line, no traceback needed."""


class MediaError(AVStudioError):
    """A media file cannot be opened or decoded (names the file and the problem)."""


class CheckpointError(AVStudioError):
    """A model or checkpoint file cannot be loaded (never unpickled)."""


class DataError(AVStudioError):
    """A manifest, library or data folder is missing or malformed."""


class Cancelled(AVStudioError):
    """A long job was cancelled by the user; finished work is kept."""
