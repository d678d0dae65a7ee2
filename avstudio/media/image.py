"""Still images (a test set's frames: .jpg, .png) decoded with PyAV, like video frames."""

from __future__ import annotations

import os
from typing import Optional

import av
import numpy as np

from ..errors import MediaError
from ._common import reason, show


def read_image(path: str | os.PathLike, size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` of an image file, resized to ``size`` = (width, height) if given."""
    if not os.path.isfile(path):
        raise MediaError(f"{show(path)}: no such image file")
    try:
        with av.open(os.fspath(path)) as c:
            if not c.streams.video:
                raise MediaError(f"{show(path)} is not an image")
            for frame in c.decode(video=0):
                kw = {} if size is None else {"width": int(size[0]), "height": int(size[1])}
                return np.ascontiguousarray(frame.to_ndarray(format="rgb24", **kw))
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{show(path)} is not an image FFmpeg can read ({reason(exc)})") from None
    raise MediaError(f"{show(path)}: no picture decoded")
