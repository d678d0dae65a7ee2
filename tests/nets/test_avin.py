"""AVIN, the Induction Network: its pieces against values worked out by hand on tiny tensors,
the gradient decoupling, the ResNet-18 weights loader and the model files."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch

from avstudio.errors import CheckpointError
from avstudio.nets.avin import (
    AVINConfig,
    AVINModel,
    ResNet18Trunk,
    adaptive_thresholds,
    alignment_loss,
    avin_config,
    induction_vectors,
    load_resnet18_weights,
    minmax01,
    pooled_scores,
    similarity_maps,
    soft_masks,
    visual_loss,
)
from avstudio.nets.checkpoint import component_tensors, load_model, save_tensors


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- thresholds and soft masks -------------------------------------------------------------------

MAP10 = [0.9, 0.1, -0.3, 0.5, 0.7, 0.2, -0.1, 0.0, 0.4, 0.8]


def test_thresholds_are_the_top_30_and_bottom_50_percent_values_of_each_map():
    S = torch.tensor([MAP10, [-x for x in MAP10]])
    thr_p, thr_n = adaptive_thresholds(S, 0.3, 0.5)
    # N = 10: int(3.0) = 3rd largest, int(5.0) = 5th smallest
    # map 0 sorted down: 0.9 0.8 0.7 | ...; sorted up: -0.3 -0.1 0.0 0.1 0.2 | ...
    # map 1 (negated):  0.3 0.1 0.0 | ...;            -0.9 -0.8 -0.7 -0.5 -0.4 | ...
    assert thr_p.shape == (2, 1) and thr_n.shape == (2, 1)
    assert thr_p[:, 0].tolist() == pytest.approx([0.7, 0.0])
    assert thr_n[:, 0].tolist() == pytest.approx([0.2, -0.4])
    # 7 x 7 maps (the ResNet trunk at 112 px): int(14.7) = 14th largest, int(24.5) = 24th smallest
    vals = torch.arange(49.0).flip(0)[None]  # 48, 47, ..., 0
    p, n = adaptive_thresholds(vals)
    assert float(p) == 48 - 13 and float(n) == 23
    # never fewer than one position
    p, n = adaptive_thresholds(torch.tensor([[0.2, 0.6]]), 0.3, 0.3)
    assert float(p) == pytest.approx(0.6) and float(n) == pytest.approx(0.2)


def test_soft_masks_at_temperature_0_03():
    S = torch.tensor([0.7, 0.73, 0.67, 0.2, 0.17, 0.23])
    m_p, m_n = soft_masks(S, torch.tensor(0.7), torch.tensor(0.2), 0.03)
    # sigmoid((S - 0.7) / 0.03): 0.5 at the threshold, sigmoid(+-1) one temperature away
    assert m_p[:3].tolist() == pytest.approx([0.5, sig(1.0), sig(-1.0)], abs=1e-6)
    # 1 - sigmoid((S - 0.2) / 0.03)
    assert m_n[3:].tolist() == pytest.approx([0.5, 1 - sig(-1.0), 1 - sig(1.0)], abs=1e-6)


def test_pooled_scores_are_mask_weighted_means():
    S = torch.tensor([[0.8, 0.4, -0.2]])
    m_p = torch.tensor([[1.0, 0.5, 0.0]])
    m_n = torch.tensor([[0.0, 0.25, 1.0]])
    SP, SN = pooled_scores(S, m_p, m_n)
    assert float(SP) == pytest.approx((0.8 + 0.2) / 1.5)
    assert float(SN) == pytest.approx((0.1 - 0.2) / 1.25)


def test_induction_vector_and_similarity_maps_by_hand():
    # image 0: two positions (1, 0) and (1, 2); image 1: (0, 3) and (0, 1)
    fv = torch.tensor([[[[1.0, 1.0]], [[0.0, 2.0]]],
                       [[[0.0, 0.0]], [[3.0, 1.0]]]])  # [B=2, D=2, h=1, w=2]
    ind = induction_vectors(fv)
    assert ind.tolist() == [[1.0, 1.0], [0.0, 2.0]]
    S = similarity_maps(fv, ind)  # [image, induction vector, position]
    r2, r5 = math.sqrt(2), math.sqrt(5)
    assert S[0, 0].tolist() == pytest.approx([1 / r2, 3 / (r5 * r2)])
    assert S[0, 1].tolist() == pytest.approx([0.0, 2 / r5])
    assert S[1, 0].tolist() == pytest.approx([1 / r2, 1 / r2])
    assert S[1, 1].tolist() == pytest.approx([1.0, 1.0])


# -- the two losses ---------------------------------------------------------------------------------

def test_visual_loss_by_hand():
    SP = torch.tensor([[0.5, 0.1], [0.2, 0.4]])
    SN = torch.tensor([[0.0, -0.1], [0.1, 0.0]])
    t = 0.07

    def ce(pos, others):
        return -pos / t + math.log(sum(math.exp(x / t) for x in [pos] + others))

    # image i: positive SP[i,i]; negatives SP[i,j!=i] and all of SN[i,:] (its own background too)
    img = [ce(0.5, [0.1, 0.0, -0.1]), ce(0.4, [0.2, 0.1, 0.0])]
    # induction vector j: positive SP[j,j]; negatives SP[i!=j,j] and all of SN[:,j]
    ind = [ce(0.5, [0.2, 0.0, 0.1]), ce(0.4, [0.1, -0.1, 0.0])]
    want = 0.5 * (sum(img) / 2 + sum(ind) / 2)
    assert float(visual_loss(SP, SN, t)) == pytest.approx(want, rel=1e-6)


def test_alignment_loss_by_hand_pull_and_push():
    # similar images (cos 1): every audio window is pulled to both induction vectors.
    # d = [[1, 4], [4, 1]]; weights 1 on the diagonal, cos / (B - 1) = 1 off it;
    # row sums 5, 5 and column sums 5, 5, each + 0.6 -> 5.6
    ind = torch.tensor([[1.0], [2.0]], requires_grad=True)
    fa = torch.tensor([[0.0], [3.0]], requires_grad=True)
    loss = alignment_loss(ind, fa, 0.6)
    assert float(loss.detach()) == pytest.approx(5.6)
    loss.backward()
    # d loss / d fa_j = 0.5 * (1/2 + 1/2) * sum_i 2 (fa_j - ind_i) = sum_i (fa_j - ind_i)
    assert fa.grad[:, 0].tolist() == pytest.approx([-3.0, 3.0])
    assert ind.grad is None  # detached: the visual side gets nothing from this loss

    # opposite images (cos -1): the other image's vector pushes. fa0 = (1, 1), fa1 = (0, 0)
    # d = [[1, 1], [5, 1]]; off-diagonal weight -1: rows 1 - 1 = 0 and -5 + 1 = -4,
    # columns 1 - 5 = -4 and -1 + 1 = 0; hinged at -0.6: (0.6 + 0) / 2 each way -> 0.3
    ind = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    fa = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert float(alignment_loss(ind, fa, 0.6)) == pytest.approx(0.3)


def _naive_objective(fv: torch.Tensor, fa: torch.Tensor, cfg: AVINConfig) -> tuple[float, float]:
    """The method in plain Python loops (sorted lists, math.exp): no tensor op of the code under test."""
    B, D, h, w = fv.shape
    N = h * w
    maps = [[[float(fv[b, d, y, x]) for d in range(D)] for y in range(h) for x in range(w)] for b in range(B)]
    ind = [[sum(p[d] for p in maps[b]) / N for d in range(D)] for b in range(B)]

    def cos(u, v):
        return sum(a * b for a, b in zip(u, v, strict=True)) / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))

    SP = [[0.0] * B for _ in range(B)]
    SN = [[0.0] * B for _ in range(B)]
    kp, kn = int(N * cfg.pos_fraction), int(N * cfg.neg_fraction)
    for i in range(B):
        for j in range(B):
            s = [cos(p, ind[j]) for p in maps[i]]
            tp = sorted(s, reverse=True)[kp - 1]
            tn = sorted(s)[kn - 1]
            mp = [sig((x - tp) / cfg.mask_temperature) for x in s]
            mn = [1 - sig((x - tn) / cfg.mask_temperature) for x in s]
            SP[i][j] = sum(x * m for x, m in zip(s, mp, strict=True)) / sum(mp)
            SN[i][j] = sum(x * m for x, m in zip(s, mn, strict=True)) / sum(mn)
    t = cfg.temperature

    def ce(logits, target):
        return -logits[target] / t + math.log(sum(math.exp(x / t) for x in logits))

    l_img = sum(ce(SP[i] + SN[i], i) for i in range(B)) / B
    l_ind = sum(ce([SP[i][j] for i in range(B)] + [SN[i][j] for i in range(B)], j) for j in range(B)) / B
    lv = 0.5 * (l_img + l_ind)
    audio = [[float(v) for v in fa[b]] for b in range(B)]
    d = [[sum((a - b) ** 2 for a, b in zip(ind[i], audio[j], strict=True)) for j in range(B)] for i in range(B)]
    wgt = [[1.0 if i == j else cos(ind[i], ind[j]) / (B - 1) for j in range(B)] for i in range(B)]
    rows = [max(0.0, sum(d[i][j] * wgt[i][j] for j in range(B)) + cfg.margin) for i in range(B)]
    cols = [max(0.0, sum(d[i][j] * wgt[i][j] for i in range(B)) + cfg.margin) for j in range(B)]
    la = 0.5 * (sum(rows) / B + sum(cols) / B)
    return lv, la


def test_objective_matches_the_method_computed_by_hand():
    cfg = avin_config("small")
    g = torch.Generator().manual_seed(0)
    fv = torch.randn(3, 4, 2, 5, generator=g, dtype=torch.float64)  # N = 10 positions
    fa = torch.randn(3, 4, generator=g, dtype=torch.float64)
    model = AVINModel(cfg)
    out = model.objective(fv, fa)
    lv, la = _naive_objective(fv, fa, cfg)
    assert float(out["visual"]) == pytest.approx(lv, rel=1e-9)
    assert float(out["alignment"]) == pytest.approx(la, rel=1e-9)


def test_gradient_decoupling_visual_side_only_from_visual_loss_audio_only_from_alignment():
    torch.manual_seed(0)
    model = AVINModel(avin_config("small"))
    frames = torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8)
    wave = 0.1 * torch.randn(4, 16000)
    vis, aud = model.visual_parameters(), model.audio_parameters()
    assert len(vis) + len(aud) == len(list(model.parameters()))

    def grads(loss_name):
        model.zero_grad(set_to_none=True)
        model.losses(frames, wave)[loss_name].backward()
        return ([p.grad for p in vis], [p.grad for p in aud])

    gv, ga = grads("alignment")
    assert all(g is None or not g.any() for g in gv), "the alignment loss reached the visual encoder"
    assert any(g is not None and g.abs().sum() > 0 for g in ga)
    assert model.audio_proj[0].weight.grad.abs().sum() > 0
    gv, ga = grads("visual")
    assert all(g is None or not g.any() for g in ga), "the visual loss reached the audio projection"
    assert model.audio_proj[2].weight.grad is None
    assert any(g is not None and g.abs().sum() > 0 for g in gv)


def test_heatmap_is_the_cosine_of_audio_and_every_position():
    fv = torch.tensor([[[[1.0, 0.0, 2.0]], [[0.0, 1.0, 2.0]]]])  # positions (1,0), (0,1), (2,2)
    fa = torch.tensor([[3.0, 0.0]])
    h = AVINModel.heatmap_features(fv, fa)
    assert h[0, 0].tolist() == pytest.approx([1.0, 0.0, 1 / math.sqrt(2)])
    m = minmax01(torch.tensor([[[1.0, 0.0, 0.5]], [[2.0, 2.0, 2.0]]]))
    assert m[0, 0].tolist() == pytest.approx([1.0, 0.0, 0.5]) and m[1].eq(1).all()


# -- the ResNet-18 trunk from a torchvision-format file ------------------------------------------

def _torchvision_file(path: Path, **mutate) -> dict[str, torch.Tensor]:
    """A ResNet-18 state dict as torchvision writes it (with fc.*), saved with torch.save."""
    torch.manual_seed(1)
    sd = {k: v.clone() for k, v in ResNet18Trunk().state_dict().items()}
    for k in list(sd):
        if k.endswith("running_mean"):
            sd[k] = torch.randn_like(sd[k])
    sd["fc.weight"] = torch.randn(1000, 512)
    sd["fc.bias"] = torch.randn(1000)
    sd.update(mutate)
    torch.save(sd, path)
    return sd


def test_resnet18_trunk_loads_a_torchvision_file_and_drops_fc(tmp_path):
    sd = _torchvision_file(tmp_path / "resnet18.pth")
    # torchvision's own key names, layer4 included
    assert "layer4.1.bn2.running_var" in sd and "layer2.0.downsample.0.weight" in sd
    trunk = ResNet18Trunk()
    info = load_resnet18_weights(trunk, tmp_path / "resnet18.pth")
    assert info["tensors"] == len(sd) - 2
    got = trunk.state_dict()
    for k, v in sd.items():
        if not k.startswith("fc."):
            assert torch.equal(got[k], v), k
    # stride 16 (layer4 at stride 1): 7 x 7 maps from 112 px, 14 x 14 from 224 px
    with torch.no_grad():
        assert trunk(torch.zeros(1, 3, 112, 112)).shape == (1, 512, 7, 7)
        assert trunk(torch.zeros(1, 3, 224, 224)).shape == (1, 512, 14, 14)
    # an older file without the batch-norm counters, wrapped in {"state_dict": ...} with "module."
    old = {f"module.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": old, "epoch": 90}, tmp_path / "old.pth")
    load_resnet18_weights(ResNet18Trunk(), tmp_path / "old.pth")


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_resnet18_loader_refuses_everything_else_with_one_clear_line(tmp_path):
    # a pickle that would run code (here: create a file) is refused by weights_only=True
    marker = tmp_path / "ran"
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"conv1.weight": _RunsCode(marker)}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="weights only.*io.open was not an allowed global") as e:
        load_resnet18_weights(ResNet18Trunk(), tmp_path / "evil.pth")
    assert not marker.exists() and "\n" not in str(e.value)
    # other architectures, wrong shapes, random bytes, nothing there
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "vgg.pth")
    with pytest.raises(CheckpointError, match="not a torchvision ResNet-18"):
        load_resnet18_weights(ResNet18Trunk(), tmp_path / "vgg.pth")
    _torchvision_file(tmp_path / "wide.pth", **{"conv1.weight": torch.zeros(64, 3, 3, 3)})
    with pytest.raises(CheckpointError, match=r"conv1.weight has shape \(64, 3, 3, 3\)"):
        load_resnet18_weights(ResNet18Trunk(), tmp_path / "wide.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x13\x37" * 500)
    with pytest.raises(CheckpointError, match="not a PyTorch weights file"):
        load_resnet18_weights(ResNet18Trunk(), tmp_path / "junk.pth")
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a ResNet-18 weights file"):
        load_resnet18_weights(ResNet18Trunk(), tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_resnet18_weights(ResNet18Trunk(), tmp_path / "absent.pth")


# -- model files ----------------------------------------------------------------------------------

def test_avin_model_file_round_trip_and_kind(tmp_path):
    torch.manual_seed(0)
    model = AVINModel(avin_config("small")).eval()
    save_tensors(tmp_path / "avin.safetensors", component_tensors("avin", model),
                 {"kind": "avstudio-avin", "components": {"avin": {"class": "AVINModel",
                                                                   "config": model.cfg.to_dict()}}})
    bundle = load_model(tmp_path / "avin.safetensors")
    assert bundle.kind == "avin" and bundle.av is None and bundle.localizer is bundle.avin
    frames = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    wave = 0.1 * torch.randn(2, 16000)
    assert torch.equal(bundle.avin.heatmap(frames, wave), model.heatmap(frames, wave))
    # a card naming a visual trunk that does not exist is refused with one line
    import json

    card = json.loads((tmp_path / "avin.json").read_text())
    card["components"]["avin"]["config"]["visual_trunk"] = "vit"
    (tmp_path / "avin.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="visual_trunk"):
        load_model(tmp_path / "avin.safetensors")
