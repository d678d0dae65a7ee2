"""The model's building blocks: soft k-means, matching, the model, checkpoint files."""

import itertools
import json
import pickle
import struct

import pytest
import torch

from avstudio.errors import CheckpointError
from avstudio.nets.checkpoint import component_tensors, load_model, load_tensors, save_tensors
from avstudio.nets.config import AVConfig, CounterConfig
from avstudio.nets.counter import Counter, rate_to_count
from avstudio.nets.kmeans import best_matching, normalize, soft_kmeans
from avstudio.nets.model import AVModel

SMALL = AVConfig(vis_channels=(8, 16, 16), aud_channels=(8, 16, 16), embed_dim=16)


def test_soft_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    true = normalize(torch.randn(3, 16, generator=g))
    labels = torch.randint(0, 3, (200,), generator=g)
    x = normalize(true[labels] + 0.05 * torch.randn(200, 16, generator=g)).unsqueeze(0)
    centers, assign = soft_kmeans(x, 3, iters=6, beta=30.0)
    assert centers.shape == (1, 3, 16) and assign.shape == (1, 200, 3)
    assert torch.allclose(assign.sum(-1), torch.ones(1, 200), atol=1e-5)
    # every true cluster is found by one center, and assignments agree with the labels
    sim = normalize(centers[0]) @ true.t()
    assert (sim.max(0).values > 0.97).all()
    hard = assign[0].argmax(1)
    agree = max((hard == torch.tensor(p)[labels]).float().mean().item()
                for p in itertools.permutations(range(3)))
    assert agree > 0.97


def test_soft_kmeans_weights_ignore_silent_positions():
    loud = normalize(torch.tensor([[1.0, 0, 0, 0]])).expand(50, 4)
    silent = normalize(torch.tensor([[0, 1.0, 0, 0]])).expand(150, 4)
    x = torch.cat([loud, silent]).unsqueeze(0)
    w = torch.cat([torch.ones(50), torch.zeros(150)]).unsqueeze(0)
    c, _ = soft_kmeans(x, 1, weights=w)
    assert torch.allclose(normalize(c[0, 0]), loud[0], atol=1e-4)


def test_best_matching_is_the_optimal_assignment_and_differentiable():
    g = torch.Generator().manual_seed(1)
    sim = torch.randn(5, 3, 4, generator=g, requires_grad=True)
    score, perm = best_matching(sim)
    for b in range(5):
        brute = max(sum(sim[b, r, c].item() for r, c in enumerate(p)) / 3
                    for p in itertools.permutations(range(4), 3))
        assert score[b].item() == pytest.approx(brute, abs=1e-6)
        assert len(set(perm[b].tolist())) == 3
    score.sum().backward()
    assert (sim.grad != 0).sum() == 5 * 3  # only the matched entries get gradient


def test_model_any_k_shapes_and_loss_decreases():
    torch.manual_seed(0)
    m = AVModel(SMALL)
    frames = torch.randint(0, 255, (8, 3, 112, 112), dtype=torch.uint8)
    wave = 0.1 * torch.randn(8, 16000)
    for k in (1, 2, 3):
        loc = m.eval().localize(frames[:2], wave[:2], k)
        assert loc.heatmaps.shape == (2, k, 28, 28)
        assert float(loc.heatmaps.min()) >= 0 and float(loc.heatmaps.max()) <= 1
        assert loc.aligned.shape == (2, k, 28, 28) and loc.unaligned.shape == (2, 28, 28)
    m.train()
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    losses = []
    for _ in range(15):
        loss, acc = m(frames, wave, 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3  # it can fit 8 distinct pairs
    loss, _ = m(frames, wave, 2, alignment="scene")
    assert torch.isfinite(loss)


def _write_model(path):
    m = AVModel(SMALL)
    c = Counter(CounterConfig(), SMALL)
    t = component_tensors("av", m)
    t.update(component_tensors("counter", c))
    card = {"components": {"av": {"config": SMALL.to_dict()}, "counter": {"config": c.cfg.to_dict()}}}
    save_tensors(path, t, card)
    return m


def test_checkpoint_round_trip(tmp_path):
    m = _write_model(tmp_path / "m.safetensors")
    b = load_model(tmp_path / "m.safetensors")
    for (k, v), (k2, v2) in zip(m.state_dict().items(), b.av.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert b.counter is not None
    assert load_model(tmp_path).av is not None  # a folder holding the files


class Boom:
    def __reduce__(self):
        return (exec, ("open('PWNED','w').write('x')",))


_BAD_FILES = {  # what the file holds instead of safetensors -> the word the refusal says
    "pickle": (lambda good: pickle.dumps(Boom()), "pickle"),
    "torchzip": (lambda good: b"PK\x03\x04" + b"\0" * 100, "zip"),
    "truncated": (lambda good: good.read_bytes()[: good.stat().st_size // 2], "truncated"),
    "empty": (lambda good: b"", "empty"),
    "garbage": (lambda good: struct.pack("<Q", 10) + b"not json!!", "safetensors"),
}


@pytest.mark.parametrize("kind", list(_BAD_FILES))
def test_checkpoint_refuses_what_is_not_safetensors(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.safetensors"
    _write_model(good)
    make, word = _BAD_FILES[kind]
    p = tmp_path / f"{kind}.safetensors"
    p.write_bytes(make(good))
    p.with_suffix(".json").write_text(good.with_suffix(".json").read_text())
    with pytest.raises(CheckpointError, match=word):
        load_model(p)
    assert not (tmp_path / "PWNED").exists()  # nothing from the file was executed


def test_checkpoint_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.safetensors"
    _write_model(good)
    card = json.loads(good.with_suffix(".json").read_text())

    # wrong shapes: a card that does not match the weights
    bad = tmp_path / "shape.safetensors"
    bad.write_bytes(good.read_bytes())
    c2 = json.loads(json.dumps(card))
    c2["components"]["av"]["config"]["embed_dim"] = 32
    bad.with_suffix(".json").write_text(json.dumps(c2))
    with pytest.raises(CheckpointError, match="shape|match"):
        load_model(bad)
    # no card / a card that is not ours
    nocard = tmp_path / "nocard.safetensors"
    nocard.write_bytes(good.read_bytes())
    with pytest.raises(CheckpointError, match="card"):
        load_model(nocard)
    nocard.with_suffix(".json").write_text("{\"format\": \"other\"}")
    with pytest.raises(CheckpointError, match="not an AV Studio model card"):
        load_tensors(nocard)


def test_rate_to_count():
    assert rate_to_count(2.0) == 2 and rate_to_count(2.4) == 2 and rate_to_count(2.6) == 3
    assert rate_to_count(0.2) == 0


def test_stacked_frames_input_and_residual_trunk():
    """A model that stacks F frames sees the centre frame and F-1 grey differences; a still
    frame given to it means no motion (the same as F identical frames); the residual trunk
    gives stride-4 maps."""
    from avstudio.nets.config import default_config
    from avstudio.nets.model import AVModel, stack_input

    cfg = default_config("photo-small")
    m = AVModel(cfg).eval()
    S = cfg.frame_size
    g = torch.Generator().manual_seed(0)
    still = torch.randint(0, 256, (2, 3, S, S), dtype=torch.uint8, generator=g)
    same = still[:, None].expand(2, cfg.stack, 3, S, S)
    x = stack_input(same, cfg.stack)
    assert x.shape == (2, 3 + cfg.stack - 1, S, S)
    assert torch.equal(x[:, 3:], torch.zeros_like(x[:, 3:]))
    assert torch.allclose(x[:, :3], still.float() / 255 - 0.5, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(m.visual(still), m.visual(same), atol=1e-6)
        moving = same.clone()
        moving[:, -1] = 255 - moving[:, -1]
        assert not torch.allclose(m.visual(moving), m.visual(same), atol=1e-3)
        v = m.visual(moving)
    assert v.shape == (2, cfg.embed_dim, S // 4, S // 4)
    assert torch.allclose(v.norm(dim=1), torch.ones(2, S // 4, S // 4), atol=1e-4)
    with pytest.raises(ValueError, match="stacks"):
        m.visual(same[:, :2])
    # the stack's frames around a moment, clamped to the clip
    assert (cfg.stack, cfg.stack_step_s) == (3, 0.08)
    assert cfg.stack_indices(50, 25.0, 100) == [48, 50, 52]
    assert cfg.stack_indices(0, 25.0, 100) == [0, 0, 2]
    assert cfg.stack_indices(99, 25.0, 100) == [97, 99, 99]
    assert cfg.stack_indices(50, 50.0, 100) == [46, 50, 54]  # offsets are in seconds


def test_background_score_is_the_similarity_to_the_bottom_half():
    """background_score: the mean cosine over the half of the frame least like the sound (soft
    mask at the median); it is the extra negative of bg_negatives, which changes the loss."""
    from avstudio.nets.config import default_config
    from avstudio.nets.model import AVModel

    m = AVModel(default_config("small", bg_negatives=True))
    D = m.cfg.embed_dim
    A = torch.zeros(1, 1, D)
    A[0, 0, 0] = 1.0
    vis = torch.zeros(1, D, 4, 4)
    vis[0, 0, :2] = 1.0  # top half: the sound's own direction (cos 1)
    vis[0, 1, 2:] = 1.0  # bottom half: orthogonal (cos 0)
    bg = m.background_score(A, vis, sharpness=1e-3)
    assert bg.shape == (1,) and abs(float(bg)) < 1e-3
    vis[0, 0, 2:] = 0.6  # the bottom half now partly like the sound
    assert abs(float(m.background_score(A, vis, sharpness=1e-3)) - 0.6) < 1e-3
    g = torch.Generator().manual_seed(1)
    fr = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    wv = 0.1 * torch.randn(4, m.cfg.audio_samples, generator=g)
    torch.manual_seed(0)
    l_bg, _ = m(fr, wv, 1)
    m.cfg.bg_negatives = False
    torch.manual_seed(0)
    l_plain, _ = m(fr, wv, 1)
    assert float(l_bg) > float(l_plain)  # one more negative in each audio row
