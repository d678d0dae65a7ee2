"""Training the visually-guided separator by mix-and-separate (Sound-of-Pixels; Hu et al. 2023).

The clustering-alignment model (``--av-model``) is frozen: it only provides the visual
vectors the separator is conditioned on, exactly as at inference. One training example:

1. take two clips of the stage's source count k (stage C1: two solos; C2: two duets);
2. mix their audio (random 2 s segments, random gains of +-5 dB each): the mixture holds
   2k sources;
3. condition on each source's visual vector, taken from a frame of its own clip by the
   frozen AV model: the k sound clusters of the clip's own audio window (soft k-means,
   k = the clip's count), and for each its *attended* visual vector (the visual features
   pooled where that sound is heard, :func:`avstudio.nets.separator.attend`; or the
   aligned visual center with ``conditioning="center"``). In a duet the k vectors are put
   in stem order by sight: the cluster whose attention lies most on the object of stem s
   (an optimal one-to-one matching; the synthetic ground truth says which object made which
   stem). With probability ``pixel_prob`` the visual feature at a random pixel of the
   object is used instead (so "the sound of a pixel" is in distribution);
4. the separator predicts one mask per source; the loss is on the separated waveforms
   (``loss="snr"``, the default: soft-thresholded SNR, as MixIT) or, as Sound-of-Pixels, on
   the masks (``loss="mask"``: ratio mask weighted L1 / binary mask weighted BCE).

Clips come from the synthetic benchmark rendered on the fly (``--synth-seed S``: every
epoch renders a fresh pool of clips ``render_clip(S, i, k)``, so no clip is seen twice and
the stems are exact) or from a manifest read through the media layer (stems from the
synthetic sidecars; a solo clip without a sidecar is its own stem).

Engineering as :mod:`avstudio.train.trainer`: progress events, a checkpoint (safetensors +
JSON card, optimizer included, never pickle) after every epoch, rerunning the same command
resumes (at most one epoch lost), seeded and reproducible, CPU or CUDA, a ``--max-minutes``
budget shared out over the stages. A run folder holds::

    run.json, history.jsonl
    checkpoint.safetensors (+ .json)      separator + optimizer after the last finished epoch
    stages/C<k>.safetensors (+ .json)     the separator at the end of each stage
    separator.safetensors (+ .json)       the final separator (its card names the AV model)
    model/                                a complete MODEL folder: the AV model's file(s) +
                                          the separator (``avstudio analyze --model RUN/model``)

The pieces: :mod:`.config`, :mod:`.data` (clips, visual vectors, mixtures), :mod:`.loss`,
:mod:`.metric` (validation), :mod:`.trainer`.
"""

from .config import SepTrainConfig
from .data import ManifestSource, SynthSource, make_batch, prepare_clip
from .loss import separation_loss
from .metric import si_sdr, validate
from .trainer import SeparatorTrainer, SepTrainResult

__all__ = ["ManifestSource", "SepTrainConfig", "SepTrainResult", "SeparatorTrainer", "SynthSource", "make_batch",
           "prepare_clip", "separation_loss", "si_sdr", "validate"]
