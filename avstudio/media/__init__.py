"""Media layer: decoding, seeking, audio resampling, encoding and audio output (Qt-free).

See docs/media.md. Every problem with a user's file raises :class:`avstudio.errors.MediaError`.
"""

from ..errors import MediaError
from .audio import iter_audio, read_audio, read_wav, write_wav
from .audio_out import AudioOutput, SilentOutput, SoundDeviceOutput, list_output_devices, open_output
from .probe import MediaInfo, probe
from .video import FrameIndexError, VideoReader
from .writer import Mp4Writer, write_mp4

__all__ = [
    "MediaError", "MediaInfo", "probe", "VideoReader", "FrameIndexError",
    "read_audio", "iter_audio", "read_wav", "write_wav", "write_mp4", "Mp4Writer",
    "open_output", "list_output_devices", "AudioOutput", "SilentOutput", "SoundDeviceOutput",
]
