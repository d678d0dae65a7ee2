"""AVIN, the Induction Network (Liu et al., ACM MM 2023): a second, single-map localizer.

The method, piece by piece (each a small tensor-in/tensor-out function, so that the tests
check them against values worked out by hand):

* a visual map ``fv`` [B, D, h, w] (a trunk + a 1x1 projection, no bias) and an audio
  embedding ``fa`` [B, D] (an audio trunk, pooled, + a two-layer MLP, no biases);
* the **induction vector** of each image: the spatial mean of its own ``fv``
  (:func:`induction_vectors`): the visual stand-in for "the sounding object", bootstrapped
  from the same network at the same step (no teacher, no memory bank);
* the cosine map ``S[i, j] = cos(fv_i, ind_j)`` over the positions of image i for every
  induction vector j (:func:`similarity_maps`); per map, **adaptive thresholds** at its
  top-``pos_fraction`` value and its bottom-``neg_fraction`` value (:func:`adaptive_thresholds`;
  ``int(N * fraction)``-th value, never a fixed number), and **soft masks**
  ``sigmoid((S - thr) / ts)`` and ``1 - sigmoid((S - thr_neg) / ts)`` (:func:`soft_masks`)
  that pool S into a positive score ``SP[i, j]`` and a background score ``SN[i, j]``
  (:func:`pooled_scores`);
* the **visual loss** (:func:`visual_loss`): a symmetric cross-entropy at temperature ``tc``
  where image i's positive is ``SP[i, i]`` and its negatives are ``SP[i, j != i]`` and every
  ``SN[i, .]`` (its own background included). It never sees audio;
* **gradient decoupling** and the **visual-weighted alignment loss** (:func:`alignment_loss`):
  squared distances from each audio embedding to the *detached* induction vectors, weighted
  by the *detached* cosine between induction vectors (own pair 1, other pairs
  ``cos / (B - 1)``: pulled towards similar images, pushed from dissimilar ones), summed per
  row and per column, hinged at ``-margin``, symmetric. Only the audio side learns from it;
  the visual side learns only from the visual loss;
* the heatmap (:meth:`AVINModel.heatmap`): ``cos(fa, fv)`` at every position; the evaluation
  protocol upsamples it, min-max normalises it and binarises it at 0.5.

The reference code uses an ImageNet ResNet-18 (layer4 at stride 1) and a frozen pretrained
audio network; here both trunks train from scratch (the ``conv`` trunk is the clustering
model's stride-4 encoder with replicate padding), and a ResNet-18 trunk can be initialised
from a torchvision-format weights file the user already has (:func:`load_resnet18_weights`).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError
from .config import SAMPLE_RATE, check_config
from .model import LogMel, _conv

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AVINConfig:
    # input (the same settings as the clustering model: the same data pipeline serves both)
    sample_rate: int = SAMPLE_RATE
    frame_size: int = 112
    audio_seconds: float = 1.0
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    # visual trunk: "conv" (stride 4, replicate padding: 28 x 28 maps from 112 px) or
    # "resnet18" (torchvision layout, layer4 at stride 1: stride 16, 7 x 7 from 112 px)
    visual_trunk: str = "conv"
    vis_channels: tuple[int, ...] = (32, 64, 64, 64, 64)
    aud_channels: tuple[int, ...] = (32, 64, 64, 64)
    embed_dim: int = 64
    audio_hidden: int = 128  # the audio MLP: pooled trunk -> hidden -> embed_dim
    # the method's constants (the reference's values)
    pos_fraction: float = 0.3  # positive threshold: the top-30 % value of each map
    neg_fraction: float = 0.5  # negative threshold: the bottom-50 % value
    mask_temperature: float = 0.03  # soft masks sigmoid((S - thr) / 0.03)
    temperature: float = 0.07  # the visual loss's cross-entropy
    margin: float = 0.6  # the alignment loss's hinge

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AVINConfig:
        check_config(cls, d)
        known = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        cfg = cls(**kw)
        if cfg.visual_trunk not in VISUAL_TRUNKS:
            raise ValueError(f"visual_trunk is {cfg.visual_trunk!r}, it must be one of {', '.join(VISUAL_TRUNKS)}")
        return cfg

    @property
    def audio_samples(self) -> int:
        return int(round(self.audio_seconds * self.sample_rate))

    # AVIN sees one still frame per sample (the data pipeline asks every model how many)
    stack = 1
    stack_step_s = 0.0

    def stack_offsets_s(self) -> list[float]:
        return [0.0]

    def stack_indices(self, centre: int, fps: float, n_frames: int) -> list[int]:
        return [min(max(int(centre), 0), max(0, int(n_frames) - 1))]


VISUAL_TRUNKS = ("conv", "resnet18")

#: a tiny AVIN for tests and quick experiments (same code, fewer channels)
AVIN_ARCHS = {
    "default": {},
    "small": {"vis_channels": (8, 16, 16), "aud_channels": (8, 16, 16), "embed_dim": 16, "audio_hidden": 32},
}


def avin_config(arch: str = "default", **overrides: Any) -> AVINConfig:
    return AVINConfig(**{**AVIN_ARCHS[arch], **overrides})


# -- the method's pieces ---------------------------------------------------------------------

def induction_vectors(fv: torch.Tensor) -> torch.Tensor:
    """The induction vector of each image: the spatial mean of its own map. [B,D,h,w] -> [B,D]."""
    return fv.mean(dim=(2, 3))


def similarity_maps(fv: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """``S[i, j, n] = cos(fv_i at position n, ind_j)``: maps [Bi,D,h,w], vectors [Bj,D] -> [Bi,Bj,h*w]."""
    v = F.normalize(fv.flatten(2), dim=1)
    u = F.normalize(ind, dim=1)
    return torch.einsum("idn,jd->ijn", v, u)


def adaptive_thresholds(S: torch.Tensor, pos_fraction: float = 0.3,
                        neg_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per map (the last axis holds its N positions): the ``int(N * pos_fraction)``-th largest
    value and the ``int(N * neg_fraction)``-th smallest (at least the 1st). Shapes ``[..., 1]``."""
    n = S.shape[-1]
    kp = max(1, int(n * pos_fraction))
    kn = max(1, int(n * neg_fraction))
    thr_p = S.topk(kp, dim=-1).values[..., -1:]
    thr_n = S.topk(kn, dim=-1, largest=False).values[..., -1:]
    return thr_p, thr_n


def soft_masks(S: torch.Tensor, thr_p: torch.Tensor, thr_n: torch.Tensor,
               ts: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive mask ``sigmoid((S - thr_p) / ts)`` and background mask ``1 - sigmoid((S - thr_n) / ts)``."""
    return torch.sigmoid((S - thr_p) / ts), 1.0 - torch.sigmoid((S - thr_n) / ts)


def pooled_scores(S: torch.Tensor, m_p: torch.Tensor, m_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask-weighted means of S over positions: (SP, SN), each S's shape without its last axis."""
    return (S * m_p).sum(-1) / m_p.sum(-1), (S * m_n).sum(-1) / m_n.sum(-1)


def visual_loss(SP: torch.Tensor, SN: torch.Tensor, temperature: float = 0.07, reduction: str = "mean",
                rows: Optional[torch.Tensor] = None, SP_all: Optional[torch.Tensor] = None,
                SN_all: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Symmetric cross-entropy over ``[SP, SN] / temperature``.

    One process: ``SP``, ``SN`` are [B, B] (image i, induction vector j); image i's positive is
    ``SP[i, i]``, its negatives ``SP[i, j != i]`` and ``SN[i, :]``; the other direction takes
    the columns (induction vector j: positive ``SP[j, j]``, negatives ``SP[i != j, j]`` and
    ``SN[:, j]``); the result is the mean of the two directions' means.

    Distributed (``rows`` = this rank's global indices): ``SP``, ``SN`` are this rank's rows
    [b, G], ``SP_all``, ``SN_all`` every rank's [G, G]; the result (``reduction="sum"``) is half
    the sum of both directions' terms for this rank's images and induction vectors.
    """
    if rows is None:
        rows = torch.arange(SP.shape[0], device=SP.device)
        SP_all, SN_all = SP, SN
    l_img = F.cross_entropy(torch.cat([SP, SN], 1) / temperature, rows, reduction=reduction)
    l_ind = F.cross_entropy(torch.cat([SP_all[:, rows].t(), SN_all[:, rows].t()], 1) / temperature, rows,
                            reduction=reduction)
    return 0.5 * (l_img + l_ind)


def _pair_weights(ind_a: torch.Tensor, ind_b: torch.Tensor, same: torch.Tensor, n_total: int) -> torch.Tensor:
    """Alignment weights: 1 for an image's own pair, ``cos(ind_a, ind_b) / (B - 1)`` otherwise."""
    cos = F.normalize(ind_a, dim=1) @ F.normalize(ind_b, dim=1).t()
    off = cos / max(1, n_total - 1)
    return torch.where(same, torch.ones_like(cos), off)


def alignment_loss(ind: torch.Tensor, fa: torch.Tensor, margin: float = 0.6, reduction: str = "mean",
                   rows: Optional[torch.Tensor] = None, ind_all: Optional[torch.Tensor] = None,
                   fa_all: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The visual-weighted alignment loss with gradient decoupling (only ``fa`` gets gradient).

    ``d[i, j] = ||ind_i - fa_j||^2`` to the detached induction vectors, weighted by the detached
    cosine between induction vectors (own pair 1, others ``cos(ind_i, ind_j) / (B - 1)``);
    per induction vector i the row sum and per audio j the column sum, each hinged
    ``max(0, sum + margin)``; the result is the mean of the two directions' means.

    Distributed (``rows`` = this rank's global indices; ``ind``, ``fa`` this rank's rows,
    ``ind_all``, ``fa_all`` every rank's): half the sum of both directions' hinged terms for
    this rank's induction vectors and audio windows (``reduction="sum"``).
    """
    ind = ind.detach()
    if rows is None:
        rows = torch.arange(ind.shape[0], device=ind.device)
        ind_all, fa_all = ind, fa
    ind_all = ind_all.detach()
    G = ind_all.shape[0]
    cols = torch.arange(G, device=ind.device)
    same = rows[:, None] == cols[None, :]  # [b, G]
    # rows: induction vector i (this rank's) against every audio window j
    d_rows = ((ind[:, None, :] - fa_all[None, :, :]) ** 2).sum(-1)
    w_rows = _pair_weights(ind, ind_all, same, G)
    row_sum = (d_rows * w_rows).sum(1)
    # columns: audio window j (this rank's) against every induction vector i
    d_cols = ((ind_all[:, None, :] - fa[None, :, :]) ** 2).sum(-1)  # [G, b]
    w_cols = _pair_weights(ind_all, ind, same.t(), G)
    col_sum = (d_cols * w_cols).sum(0)
    h_rows = torch.clamp(row_sum + margin, min=0.0)
    h_cols = torch.clamp(col_sum + margin, min=0.0)
    if reduction == "sum":
        return 0.5 * (h_rows.sum() + h_cols.sum())
    return 0.5 * (h_rows.mean() + h_cols.mean())


# -- networks --------------------------------------------------------------------------------

class ConvTrunk(nn.Module):
    """The clustering model's visual trunk: stride 4, replicate padding (28 x 28 from 112 px)."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        layers, cin = [], 3
        for i, c in enumerate(channels):
            layers.append(_conv(cin, c, stride=2 if i < 2 else 1))
            cin = c
        self.body = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (frames.float() * (1.0 / 255.0) - 0.5).contiguous(memory_format=torch.channels_last)
        return self.body(x)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(out + idt)


class ResNet18Trunk(nn.Module):
    """ResNet-18 up to layer4, its parameter names those of torchvision's ``resnet18`` (so a
    torchvision weights file loads into it), layer4 at stride 1 as in AVIN (stride 16 overall);
    ImageNet normalisation of the 0..255 frames."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(_BasicBlock(64, 64, 1), _BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(_BasicBlock(64, 128, 2), _BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(_BasicBlock(128, 256, 2), _BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(_BasicBlock(256, 512, 1), _BasicBlock(512, 512, 1))
        self.out_channels = 512
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = ((frames.float() - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class AudioTrunk(nn.Module):
    """Log-mel + conv net (the clustering model's audio layers), pooled to one vector:
    mean over frequency, then max + mean over time (as the field's audio networks pool)."""

    def __init__(self, cfg: AVINConfig):
        super().__init__()
        self.logmel = LogMel(cfg)
        self.norm = nn.BatchNorm2d(1)
        layers, cin = [], 1
        for i, c in enumerate(cfg.aud_channels):
            layers.append(_conv(cin, c, stride=2 if i < 2 else 1))
            cin = c
        self.body = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.norm(torch.log(self.logmel(wave) + 1e-8))
        h = self.body(x).mean(2)  # [B, C, t]
        return h.amax(-1) + h.mean(-1)


class AVINModel(nn.Module):
    """The Induction Network with from-scratch trunks (or a ResNet-18 visual trunk)."""

    def __init__(self, cfg: AVINConfig | None = None):
        super().__init__()
        self.cfg = cfg or AVINConfig()
        trunk = self.cfg.visual_trunk
        if trunk == "conv":
            self.visual_trunk = ConvTrunk(tuple(self.cfg.vis_channels))
        elif trunk == "resnet18":
            self.visual_trunk = ResNet18Trunk()
        else:
            raise ValueError(f"unknown visual trunk {trunk!r} (one of {', '.join(VISUAL_TRUNKS)})")
        self.visual_proj = nn.Conv2d(self.visual_trunk.out_channels, self.cfg.embed_dim, 1, bias=False)
        self.audio_trunk = AudioTrunk(self.cfg)
        self.audio_proj = nn.Sequential(
            nn.Linear(self.audio_trunk.out_channels, self.cfg.audio_hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(self.cfg.audio_hidden, self.cfg.embed_dim, bias=False),
        )

    # parameter groups: the visual side learns from the visual loss only, the audio side
    # from the alignment loss only
    def visual_parameters(self):
        return list(self.visual_trunk.parameters()) + list(self.visual_proj.parameters())

    def audio_parameters(self):
        return list(self.audio_trunk.parameters()) + list(self.audio_proj.parameters())

    def visual_map(self, frames: torch.Tensor) -> torch.Tensor:
        """frames uint8/float [B, 3, H, W] (0..255) -> fv [B, D, h, w] (not normalised)."""
        return self.visual_proj(self.visual_trunk(frames)).contiguous()

    def audio_embedding(self, wave: torch.Tensor) -> torch.Tensor:
        """wave [B, S] -> fa [B, D] (not normalised)."""
        return self.audio_proj(self.audio_trunk(wave))

    def objective(self, fv: torch.Tensor, fa: torch.Tensor,
                  gather: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                  offset: int = 0) -> dict[str, torch.Tensor]:
        """The two losses from the maps and embeddings.

        One process (``gather`` None): ``visual`` and ``alignment`` are the method's losses
        (means). Distributed: ``gather(x)`` returns every rank's rows of ``x`` (with gradient),
        ``offset`` is this rank's first global index, and both terms are this rank's *sums*
        (the caller scales them). ``acc``: the share of this rank's audio windows whose nearest
        induction vector (cosine) is their own image's.
        """
        c = self.cfg
        ind = induction_vectors(fv)
        if gather is None:
            S = similarity_maps(fv, ind)
            thr_p, thr_n = adaptive_thresholds(S, c.pos_fraction, c.neg_fraction)
            m_p, m_n = soft_masks(S, thr_p, thr_n, c.mask_temperature)
            SP, SN = pooled_scores(S, m_p, m_n)
            lv = visual_loss(SP, SN, c.temperature)
            la = alignment_loss(ind, fa, c.margin)
            ind_all = ind
            rows = torch.arange(ind.shape[0], device=ind.device)
        else:
            b, D = ind.shape
            both = gather(torch.cat([ind, fa], 1))
            ind_all, fa_all = both[:, :D], both[:, D:]
            rows = torch.arange(offset, offset + b, device=ind.device)
            S = similarity_maps(fv, ind_all)  # [b, G, N]
            thr_p, thr_n = adaptive_thresholds(S, c.pos_fraction, c.neg_fraction)
            m_p, m_n = soft_masks(S, thr_p, thr_n, c.mask_temperature)
            SP, SN = pooled_scores(S, m_p, m_n)  # [b, G]
            G = ind_all.shape[0]
            sp_sn = gather(torch.cat([SP, SN], 1))
            lv = visual_loss(SP, SN, c.temperature, "sum", rows, sp_sn[:, :G], sp_sn[:, G:])
            la = alignment_loss(ind, fa, c.margin, "sum", rows, ind_all, fa_all)
        with torch.no_grad():
            sim = F.normalize(fa, dim=1) @ F.normalize(ind_all, dim=1).t()
            acc = (sim.argmax(1) == rows).float().mean()
        return {"visual": lv, "alignment": la, "acc": acc}

    def losses(self, frames: torch.Tensor, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.objective(self.visual_map(frames), self.audio_embedding(wave))

    def forward(self, frames: torch.Tensor, wave: torch.Tensor, k: int = 1, alignment: Any = None,
                pos_weight: Any = None):
        """Training forward (so DistributedDataParallel sees it): (loss, accuracy). ``k``,
        ``alignment`` and ``pos_weight`` belong to the clustering model's trainer call and
        are ignored here (AVIN has no clusters)."""
        out = self.losses(frames, wave)
        return out["visual"] + out["alignment"], out["acc"]

    @torch.no_grad()
    def heatmap(self, frames: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
        """``cos(fa, fv)`` at every position: [B, h, w] in -1..1."""
        return self.heatmap_features(self.visual_map(frames), self.audio_embedding(wave))

    @staticmethod
    def heatmap_features(fv: torch.Tensor, fa: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bd,bdhw->bhw", F.normalize(fa, dim=1), F.normalize(fv, dim=1))


def minmax01(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map [B, ...] to 0..1 (a flat map becomes all ones, "everywhere")."""
    flat = maps.flatten(1)
    lo = flat.amin(1, keepdim=True)
    hi = flat.amax(1, keepdim=True)
    span = hi - lo
    out = torch.where(span > 1e-6, (flat - lo) / span.clamp_min(1e-12), torch.ones_like(flat))
    return out.reshape(maps.shape)


# -- a ResNet-18 visual trunk from a torchvision-format weights file -----------------------------

def _tensor_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        for key in ("state_dict", "model"):  # a checkpoint that wraps the weights
            if isinstance(obj.get(key), dict):
                return _tensor_dict(obj[key], where)
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and torch.is_tensor(v)
                                                        for k, v in obj.items()):
        raise CheckpointError(f"{where}: not a ResNet-18 weights file (it holds {type(obj).__name__}, "
                              "not a mapping of parameter names to tensors)")
    out = {}
    for k, v in obj.items():
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def read_resnet18_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a torchvision-format ResNet-18 file (``.pth``/``.pt`` read with
    ``torch.load(weights_only=True)``, so nothing but tensors is ever unpickled; or
    ``.safetensors``), ``fc.*`` dropped. Raises CheckpointError with one clear line."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such weights file")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder, expected a ResNet-18 weights file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read the file ({exc.strerror or exc})") from None
    if len(head) > 8 and head[8:9] == b"{":  # safetensors: 8-byte header length, then JSON
        from .files import sniff

        sniff(p)
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(p))
        except Exception as exc:
            raise CheckpointError(f"{p}: corrupt safetensors data ({exc})") from None
    elif head[:2] != b"PK" and head[:1] != b"\x80":  # neither torch.save's zip nor a pickle
        raise CheckpointError(f"{p}: not a PyTorch weights file (neither a torch.save file nor safetensors)")
    else:
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            text = str(exc)
            why = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else ""
            why = next((ln.strip() for ln in why.splitlines() if ln.strip()), "").split(". ")[0]
            raise CheckpointError(f"{p}: refused: the file holds more than tensors and AV Studio loads weights "
                                  f"only (torch.load with weights_only=True{': ' + why if why else ''})") from None
        except Exception as exc:
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "unreadable").split(". ")[0]
            raise CheckpointError(f"{p}: not a PyTorch weights file ({type(exc).__name__}: {first})") from None
    tensors = _tensor_dict(obj, str(p))
    return {k: v for k, v in tensors.items() if not k.startswith("fc.")}


def load_resnet18_weights(trunk: ResNet18Trunk, path: str | Path) -> dict[str, Any]:
    """Initialise ``trunk`` from a torchvision-format ResNet-18 file (``fc.*`` dropped; a
    file without ``num_batches_tracked`` counters is accepted). Anything else is refused
    with the offending key named. Returns a short summary for the model card."""
    where = str(path)
    sd = read_resnet18_weights(path)
    own = trunk.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise CheckpointError(f"{where}: not a torchvision ResNet-18 ({what}; {len(missing)} missing, "
                              f"{len(extra)} unexpected keys after dropping fc.*)")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{where}: {k} has shape {tuple(v.shape)}, a ResNet-18 needs {tuple(own[k].shape)}")
        if not v.is_floating_point() and own[k].is_floating_point():
            raise CheckpointError(f"{where}: {k} has dtype {v.dtype}, expected floating point")
    full = {k: (sd[k].to(own[k].dtype) if k in sd else own[k]) for k in own}
    trunk.load_state_dict(full, strict=True)
    return {"file": Path(path).name, "tensors": len(sd)}


__all__ = ["AVINConfig", "AVINModel", "AVIN_ARCHS", "ResNet18Trunk", "adaptive_thresholds", "alignment_loss",
           "avin_config", "induction_vectors", "load_resnet18_weights", "minmax01", "pooled_scores",
           "read_resnet18_weights", "similarity_maps", "soft_masks", "visual_loss"]
