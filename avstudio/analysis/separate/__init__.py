"""Using the separator: stems per sound cluster, the sound of a pixel, evaluation, benchmark.

* :mod:`.stems` — :func:`separate_clip`, :func:`separate_analysis`, :func:`write_stems`: a clip's
  sound separated into one waveform per sound cluster, conditioned on each cluster's visual
  vectors over time;
* :mod:`.pixel` — :class:`PixelSounder`, :func:`pixel_sound`: "the sound of a pixel", fast
  enough for a click;
* :mod:`.evaluate` — :func:`evaluate_separation`: SDR/SIR/SAR on held-out mixtures with the
  baselines;
* :mod:`.bench` — :func:`bench_separation`: timings for ``avstudio bench``.
"""

from .bench import bench_separation
from .evaluate import evaluate_separation, visual_tracks
from .pixel import PixelSounder, pixel_sound
from .stems import (
                    ClipSpectra,
                    av_match,
                    cluster_vectors,
                    pool_track,
                    read_clip_audio,
                    require_separator,
                    separate_analysis,
                    separate_clip,
                    separate_tracks,
                    tracks_from_analysis,
                    write_stems,
)

__all__ = ["ClipSpectra", "PixelSounder", "av_match", "bench_separation", "cluster_vectors", "evaluate_separation",
           "pixel_sound", "pool_track", "read_clip_audio", "require_separator", "separate_analysis",
           "separate_clip", "separate_tracks", "tracks_from_analysis", "visual_tracks", "write_stems"]
