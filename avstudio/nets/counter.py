"""Source counting by Poisson regression on audio-visual features (as in the paper).

The counter sees one audio window and its frame: a small audio conv trunk of its own on
the log-mel spectrogram, plus the (frozen) clustering-alignment model's pooled audio and
visual embeddings. It predicts a Poisson rate lambda, the expected number of sound sources;
a clip's rate is the mean rate of its windows and the predicted count is that rate rounded
to the nearest whole number (0 when it is below 0.5). The rate is what the app and the CLI
show beside the count: 1.94 and 1.51 both give 2, the second one barely.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import AVConfig, CounterConfig
from .model import AVModel, LogMel


class Counter(nn.Module):
    def __init__(self, cfg: CounterConfig, av_cfg: AVConfig):
        super().__init__()
        self.cfg = cfg
        self.logmel = LogMel(av_cfg)
        self.norm = nn.BatchNorm2d(1)
        layers = []
        cin = 1
        for c in cfg.aud_channels:
            layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True)]
            cin = c
        self.trunk = nn.Sequential(*layers)
        feat = cin * 2 + av_cfg.embed_dim * 4 + 2 * cfg.cluster_feats
        self.head = nn.Sequential(nn.Linear(feat, cfg.hidden), nn.ReLU(inplace=True),
                                  nn.Linear(cfg.hidden, 1))

    def features(self, wave: torch.Tensor, av: AVModel, frames: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(torch.log(self.logmel(wave) + 1e-8))
        t = self.trunk(x)
        own = torch.cat([t.mean((2, 3)), t.amax((2, 3))], 1)
        with torch.no_grad():
            aud, w = av.audio(wave)
            af = aud.flatten(2)
            wn = w / w.sum(1, keepdim=True).clamp_min(1e-6)
            a_mean = (af * wn.unsqueeze(1)).sum(-1)
            a_std = ((af - a_mean.unsqueeze(-1)) ** 2 * wn.unsqueeze(1)).sum(-1).clamp_min(0).sqrt()
            if frames is not None:
                vf = av.visual(frames).flatten(2)
                v_mean, v_max = vf.mean(-1), vf.amax(-1)
            else:
                v_mean = torch.zeros_like(a_mean)
                v_max = torch.zeros_like(a_mean)
            extra = [cluster_statistics(av, aud, w, self.cfg.cluster_feats)] if self.cfg.cluster_feats else []
        return torch.cat([own, a_mean, a_std, v_mean, v_max] + extra, 1)

    def log_rate(self, wave: torch.Tensor, av: AVModel, frames: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(wave, av, frames)).squeeze(1).clamp(-5.0, 3.0)

    def loss(self, wave, av, frames, counts: torch.Tensor) -> torch.Tensor:
        return F.poisson_nll_loss(self.log_rate(wave, av, frames), counts.float(), log_input=True)


def cluster_statistics(av: AVModel, aud: torch.Tensor, w: torch.Tensor, kmax: int) -> torch.Tensor:
    """How well k audio clusters explain the window, for k = 1..kmax (the same soft k-means).

    Per k: the weighted mean squared distance of the time-frequency embeddings to their
    nearest center (the distortion falls steeply until k reaches the number of sources),
    and the largest cosine between two of the k centers (near 1 once k is too many).
    """
    x = aud.flatten(2).transpose(1, 2)  # [B, N, D]
    wn = w / w.sum(1, keepdim=True).clamp_min(1e-6)
    dist, close = [], []
    for k in range(1, kmax + 1):
        c, _ = av.audio_centers(aud, w, k)
        d = (2.0 - 2.0 * torch.einsum("bnd,bkd->bnk", x, c)).amin(-1)  # unit vectors
        dist.append((d * wn).sum(1))
        if k == 1:
            close.append(torch.zeros_like(dist[-1]))
        else:
            g = torch.einsum("bkd,bjd->bkj", c, c) - 2.0 * torch.eye(k, device=c.device)
            close.append(g.flatten(1).amax(1))
    return torch.cat([torch.stack(dist, 1), torch.stack(close, 1)], 1)


def rate_to_count(rate: torch.Tensor | float, max_count: int = 16) -> int:
    """The count a Poisson rate stands for: the nearest whole number, 0..max_count."""
    lam = float(rate)
    return int(min(max(round(lam), 0), max_count))
