"""AV Studio: see and hear what a self-supervised audiovisual model learned.

The package is Qt-free except :mod:`avstudio.gui`. GUI, CLI and tests call the same core.
"""

__version__ = "0.1.0"

from .errors import AVStudioError, CheckpointError, DataError, MediaError  # noqa: F401
