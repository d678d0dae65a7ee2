"""The metrics, checked against hand-computed values."""

import numpy as np
import pytest

from avstudio.analysis import metrics as M


def test_ciou_formula():
    g = np.zeros((10, 10), bool)
    g[2:6, 2:6] = True  # 16 px
    p = np.zeros_like(g)
    p[2:6, 2:8] = True  # 24 px: 16 on the object, 8 off it
    assert M.ciou(p, g) == pytest.approx(16 / (16 + 8))
    assert M.nsa(p, g) == pytest.approx((84 - 8) / 84)
    assert M.ciou(g, g) == 1.0 and M.nsa(g, g) == 1.0


def test_binarisations_and_flat_maps():
    g = np.zeros((20, 20), bool)
    g[5:10, 5:10] = True
    heat = g.astype(np.float32) * 0.8 + 0.1
    s = M.score_heatmap(heat, g)
    assert s["0.5"]["ciou"] == 1.0 and s["0.5"]["nsa"] == 1.0
    # median binarisation keeps half the frame positive whatever the map says
    assert s["median"]["ciou"] < 0.3
    # a whole-image guess: everything positive
    w = M.score_heatmap(np.ones((4, 4), np.float32), g)
    assert w["0.5"]["nsa"] == 0.0 and w["0.5"]["ciou"] == pytest.approx(25 / 400)


def test_median_binarisation_ignores_float_noise_on_a_plateau():
    """A map whose median falls on a plateau (here 40 % of the pixels at one value) scores the
    same with and without last-bit noise (what another thread count or batch size gives)."""
    g = np.zeros((16, 16), bool)
    g[:8, :8] = True
    rng = np.random.default_rng(0)
    heat = rng.uniform(0.0, 1.0, (16, 16)).astype(np.float32)
    plateau = rng.random((16, 16)) < 0.4
    heat[plateau] = 0.5
    heat[0, 0], heat[-1, -1] = 0.0, 1.0  # fixed ends: the normalisation does not move
    ref = np.median(heat)
    assert ref == np.float32(0.5)  # the median is on the plateau
    clean = M.score_heatmap(heat, g)["median"]
    for seed in range(5):
        noise = np.random.default_rng(seed).uniform(-3e-7, 3e-7, heat.shape).astype(np.float32)
        noisy = heat + noise * plateau
        assert M.score_heatmap(noisy, g)["median"] == clean
    # the plateau is in: every plateau pixel is positive
    p = M.binarise(M.normalise(heat), "median")
    assert p[plateau].all()


def test_heatmap_is_upsampled_to_the_mask():
    g = np.zeros((112, 112), bool)
    g[:56, :56] = True
    heat = np.zeros((28, 28), np.float32)
    heat[:14, :14] = 1.0
    assert M.score_heatmap(heat, g)["0.5"]["ciou"] > 0.9


def test_success_rate_and_auc():
    at5, auc = M.success_auc([1.0, 1.0])
    assert at5 == 1.0 and auc == pytest.approx(1.0)
    at5, auc = M.success_auc([0.0, 0.0])
    # the success rate at threshold 0 is 1 whatever the cIoU (the field's convention)
    assert at5 == 0.0 and auc == pytest.approx(0.025)
    at5, auc = M.success_auc([0.5, 0.25])
    assert at5 == 0.5
    # rate is 1 up to 0.25, 0.5 up to 0.5, then 0: area = 0.25 + 0.25*0.5 + trapezoid edges
    assert 0.35 < auc < 0.42


def test_bss_eval_orders_estimates():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((2, 16000)).astype(np.float32)
    mix = s.sum(0, keepdims=True).repeat(2, 0)
    good = s + 0.01 * rng.standard_normal(s.shape)
    r_good = M.bss_eval(s, good)
    r_mix = M.bss_eval(s, mix)
    assert (r_good["sdr"] > 30).all()
    assert (r_mix["sdr"] < 5).all() and (r_mix["sdr"] > -5).all()


def test_counting_summary():
    r = M.counting_summary([1, 1, 2, 3], [1, 2, 2, 3])
    assert r["accuracy"] == 0.75 and r["majority_baseline"] == 0.5
    assert r["per_level"]["C1"] == 0.5 and r["confusion"]["C1"]["2"] == 1
