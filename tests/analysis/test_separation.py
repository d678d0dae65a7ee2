"""The visually-guided separator: network, spectra, files, training, stems, pixel sounds, evaluation.

Tiny sizes throughout: the numbers the separator reaches are measured by `avstudio eval` and
written in docs/separation.md, never asserted here.
"""

import threading

import numpy as np
import pytest
import torch

from avstudio.errors import Cancelled
from avstudio.nets.checkpoint import component_tensors, load_model, save_tensors
from avstudio.nets.config import AVConfig
from avstudio.nets.model import AVModel
from avstudio.nets.separator import Separator, SeparatorConfig, warp_matrices

SMALL_AV = AVConfig(vis_channels=(8, 16, 16), aud_channels=(8, 16, 16), embed_dim=16)
TINY = dict(n_bins=64, channels=(4, 8, 8), feat_channels=8, head_hidden=8, cond_dim=16)


def tiny_sep(**kw) -> Separator:
    torch.manual_seed(0)
    return Separator(SeparatorConfig(**{**TINY, **kw})).eval()


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)


def write_model_folder(folder, sep: Separator, av_cfg: AVConfig = SMALL_AV):
    torch.manual_seed(1)
    av = AVModel(av_cfg)
    save_tensors(folder / "localizer.safetensors", component_tensors("av", av),
                 {"components": {"av": {"class": "AVModel", "config": av_cfg.to_dict()}}})
    save_tensors(folder / "separator.safetensors", component_tensors("sep", sep),
                 {"components": {"sep": {"class": "Separator", "config": sep.cfg.to_dict()}}})
    return folder


def sdr_db(ref, est):
    ref = np.asarray(ref, np.float64)
    err = ref - np.asarray(est, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / max(np.sum(err ** 2), 1e-20))


# -- the network --------------------------------------------------------------------------------

def test_unet_and_head_shapes_for_any_number_of_conditionings():
    sep = tiny_sep()
    mag = torch.rand(2, 64, 37)  # odd length: padded inside and cut back
    feats = sep.features(mag)
    assert feats.shape == (2, 8, 64, 37)
    assert sep(mag, unit(2, 3, 16)).shape == (2, 3, 64, 37)
    assert sep.mask_logits(feats, unit(2, 3, 37, 16)).shape == (2, 3, 64, 37)  # per-frame conditioning
    lin = tiny_sep(head_hidden=0)  # the Sound-of-Pixels linear head
    assert lin(mag, unit(2, 1, 16)).shape == (2, 1, 64, 37)


def test_masks_are_in_range_and_normalised_stems_partition_the_mixture():
    sep = tiny_sep()
    wave = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2))
    X = sep.stft(wave)
    masks = torch.sigmoid(sep.mask_logits(sep.features(sep.warp(X.abs())), unit(1, 3, 16)))
    assert masks.min() >= 0 and masks.max() <= 1
    M = sep.unwarp(masks)
    assert M.shape[-2] == sep.cfg.n_linear and M.min() >= 0 and M.max() <= 1 + 1e-6
    out = sep.separate(wave, unit(1, 3, 16))
    assert out.shape == (1, 3, 8000)
    # the normalised masks sum to <= 1 per bin, so no stem is louder than the mixture in total
    assert float(out.pow(2).sum(-1).sum()) <= float(wave.pow(2).sum()) * 1.05


def test_stft_round_trip_with_an_all_ones_mask_reconstructs_the_mixture():
    sep = tiny_sep()
    W, U = warp_matrices(sep.cfg)
    assert torch.allclose(U.sum(1), torch.ones(U.shape[0]), atol=1e-6)  # unwarping ones gives ones
    assert torch.allclose(W.sum(1), torch.ones(W.shape[0]), atol=1e-6)
    g = torch.Generator().manual_seed(3)
    t = torch.arange(16000) / 16000
    wave = (0.3 * torch.sin(2 * np.pi * 440 * t) + 0.05 * torch.randn(16000, generator=g))[None]
    X = sep.stft(wave)
    ones = torch.ones(1, 1, sep.cfg.n_bins, X.shape[-1])
    y = sep.apply_masks(X, ones, wave.shape[-1])[0, 0]
    assert sdr_db(wave[0].numpy(), y.numpy()) > 40


def test_separator_file_round_trip_through_load_model(tmp_path):
    sep = tiny_sep()
    write_model_folder(tmp_path, sep)
    bundle = load_model(tmp_path)
    assert bundle.av is not None and bundle.separator is not None
    assert bundle.separator.cfg == sep.cfg
    wave = 0.1 * torch.randn(1, 4000, generator=torch.Generator().manual_seed(4))
    c = unit(1, 2, 16)
    assert torch.allclose(bundle.separator.separate(wave, c), sep.separate(wave, c), atol=1e-6)


# -- training -----------------------------------------------------------------------------------

def _train_cfg(**kw):
    from avstudio.train.separation import SepTrainConfig

    base = dict(stages=[1, 2], epochs=2, steps=3, batch=2, pool=3, frames_per_clip=2, pixels_per_source=2,
                segment_frames=24, lr=3e-3, val_mixtures=1, synth_seed=11, seed=0,
                synth={"size": (64, 64), "duration": 1.5, "n_distractors": (0, 0)})
    base.update(kw)
    return SepTrainConfig(**base)


def _trainer(av_dir, run_dir, tcfg, **kw):
    from avstudio.train.separation import SeparatorTrainer

    return SeparatorTrainer(av_dir, run_dir, tcfg, sep_cfg=SeparatorConfig(**TINY), **kw)


@pytest.fixture(scope="module")
def av_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("av")
    torch.manual_seed(1)
    av = AVModel(SMALL_AV)
    save_tensors(d / "localizer.safetensors", component_tensors("av", av),
                 {"components": {"av": {"class": "AVModel", "config": SMALL_AV.to_dict()}}})
    return d


def test_training_reduces_the_loss_and_writes_a_loadable_model(tmp_path, av_folder):
    from avstudio.train.separation import make_batch, separation_loss

    torch.set_num_threads(1)
    tr = _trainer(av_folder, tmp_path / "run", _train_cfg(stages=[1], epochs=3, steps=4))
    pool = tr._pool(1, 0, 0)
    batch = make_batch(pool, np.random.default_rng(123), 4, 23 * 256, 0.0, 0.0)
    with torch.no_grad():
        before = float(separation_loss(tr.model.eval(), *batch)[0])
    res = tr.run()
    with torch.no_grad():
        after = float(separation_loss(tr.model.eval(), *batch)[0])
    assert after < before
    assert [h["epoch"] for h in res.history] == [0, 1, 2]
    card = (tmp_path / "run" / "separator.json").read_text()
    assert '"sep"' in card and "sha256" in card
    b = load_model(tmp_path / "run" / "model")  # the complete MODEL folder
    assert b.av is not None and b.separator is not None


def test_later_stages_can_mix_duets_with_solos(tmp_path, av_folder):
    torch.set_num_threads(1)
    res = _trainer(av_folder, tmp_path / "run", _train_cfg(epochs=1, steps=2, later_stages="mixed")).run()
    assert [h["stage"] for h in res.history] == ["C1", "C2"]
    assert all(np.isfinite(h["loss"]) for h in res.history)


def test_training_resumes_after_an_interruption_and_ends_where_a_straight_run_ends(tmp_path, av_folder):
    torch.set_num_threads(1)
    tcfg = _train_cfg()
    straight = _trainer(av_folder, tmp_path / "a", tcfg).run()
    assert len(straight.history) == 4  # 2 stages x 2 epochs

    cancel = threading.Event()
    seen = []

    def progress(ev):
        if ev.task == "train:C2":
            seen.append(ev)
            cancel.set()  # interrupt during the first epoch of stage C2

    with pytest.raises(Cancelled):
        _trainer(av_folder, tmp_path / "b", _train_cfg(), progress=progress, cancel=cancel).run()
    assert seen and (tmp_path / "b" / "checkpoint.safetensors").exists()
    resumed = _trainer(av_folder, tmp_path / "b", _train_cfg()).run()
    assert resumed.resumed
    assert [(h["stage"], h["epoch"]) for h in resumed.history] == [("C1", 0), ("C1", 1), ("C2", 0), ("C2", 1)]
    a = load_model(tmp_path / "a" / "separator.safetensors").separator.state_dict()
    b = load_model(tmp_path / "b" / "separator.safetensors").separator.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    again = _trainer(av_folder, tmp_path / "b", _train_cfg()).run()
    assert again.already_done


# -- using it -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_and_bundle(tmp_path_factory):
    from helpers import make_video

    d = tmp_path_factory.mktemp("clip")
    video = make_video(d / "clip.mp4", 50, size=(64, 64), fps=25, audio_kind="counter")
    (d / "model").mkdir()
    write_model_folder(d / "model", tiny_sep(chunk_seconds=0.8, context_seconds=0.3))
    return video, load_model(d / "model")


def test_pixel_sound_returns_audio_of_the_right_length(clip_and_bundle):
    from avstudio.analysis.separate import PixelSounder, pixel_sound
    from avstudio.media import read_audio

    video, bundle = clip_and_bundle
    n = len(read_audio(video, 16000))
    whole = pixel_sound(bundle, video, 1.0, 0.5, 0.5)
    assert whole.dtype == np.float32 and whole.shape == (n,) and np.isfinite(whole).all()
    assert pixel_sound(bundle, video, 1.9, 0.1, 0.9, seconds=0.5).shape == (8000,)
    with PixelSounder(bundle, video) as ps:  # a click costs the same as a fresh call, cached
        a = ps.sound(1.0, 0.5, 0.5)
        assert np.allclose(a, whole, atol=1e-6)
        assert ps.sound(0.2, 0.25, 0.25, seconds=3.0).shape == (48000,)  # longer than the clip: padded


def test_write_stems_writes_k_wavs_and_a_residual_that_sum_to_the_mixture(clip_and_bundle, tmp_path):
    from avstudio.analysis.localize import analyze_clip
    from avstudio.analysis.separate import write_stems
    from avstudio.media import read_audio, read_wav

    video, bundle = clip_and_bundle
    analysis = analyze_clip(bundle, video, k=2)
    info = write_stems(bundle, video, analysis, tmp_path)["stems"]
    assert info["k"] == 2 and info["sample_rate"] == 16000
    mix = read_audio(video, 16000)
    total = np.zeros_like(mix)
    for name in ["0.wav", "1.wav", "residual.wav"]:
        x, sr = read_wav(tmp_path / "stems" / name)
        assert sr == 16000 and x.shape == mix.shape
        total += x
    assert np.abs(total - mix).max() < 2e-4  # 16-bit files, exact in integers
    stem0, _ = read_wav(tmp_path / "stems" / "0.wav")
    assert np.abs(stem0).max() > 0


def test_cluster_vectors_take_the_gui_cache_records_too(clip_and_bundle):
    from avstudio.analysis.cache import HeatmapData
    from avstudio.analysis.localize import analyze_clip
    from avstudio.analysis.separate import cluster_vectors, separate_analysis

    video, bundle = clip_and_bundle
    an = analyze_clip(bundle, video, k=2)
    # analyze_clip keeps every frame's attended vectors: the separator's conditioning as is
    assert an.attended_vectors.shape == (len(an.times), 2, 16)
    t_all, v_all = cluster_vectors(bundle, video, an)
    assert np.array_equal(v_all, an.attended_vectors) and np.array_equal(t_all, an.times)
    # the GUI cache's records have no attended vectors: recomputed from frames every 0.2 s,
    # the same vectors at those frames
    hd = HeatmapData(k=2, frames=an.frame_indices, times=an.times, heatmaps=an.heatmaps,
                     visual_vectors=an.visual_vectors, audio_centers=an.audio_centers)
    t, v = cluster_vectors(bundle, video, hd)
    assert 2 <= len(t) < len(an.times) and v.shape[1:] == (2, 16)
    assert np.allclose(np.linalg.norm(v, axis=-1), 1.0, atol=1e-4)
    at = np.searchsorted(an.times, t)
    assert np.allclose(v, an.attended_vectors[at], atol=1e-4)
    from_cache, from_analysis = separate_analysis(bundle, video, hd), separate_analysis(bundle, video, an)
    assert from_cache.shape == from_analysis.shape and from_cache.shape[0] == 2
    assert np.isfinite(from_cache).all() and np.abs(from_cache).max() > 0


def test_chunked_separation_matches_one_pass():
    from avstudio.analysis.separate import separate_clip
    from avstudio.nets.checkpoint import ModelBundle

    sep = tiny_sep(chunk_seconds=0.5, context_seconds=0.25)
    rng = np.random.default_rng(5)
    audio = (0.1 * rng.standard_normal(16000 * 2 + 77)).astype(np.float32)
    vv = rng.standard_normal((50, 2, 16)).astype(np.float32)
    times = np.arange(50) / 25
    chunked = separate_clip(ModelBundle(separator=sep), audio, vv, times)
    sep.cfg.chunk_seconds = 10.0
    whole = separate_clip(ModelBundle(separator=sep), audio, vv, times)
    assert chunked.shape == whole.shape == (2, len(audio))
    assert sdr_db(whole, chunked) > 20


def test_evaluate_separation_reports_model_mixture_and_oracle(tmp_path):
    from avstudio.analysis.separate import evaluate_separation
    from avstudio.data.synth import SynthConfig, generate

    generate(tmp_path / "bench", 3, sources=[1, 2, 1], seed=3,
             config=SynthConfig(size=(64, 64), duration=1.0, n_distractors=(0, 0)))
    (tmp_path / "model").mkdir()
    write_model_folder(tmp_path / "model", tiny_sep())
    bundle = load_model(tmp_path / "model")
    res = evaluate_separation(bundle, tmp_path / "bench")
    for group in ("duets", "solo_pairs"):
        assert res[group]["n_mixtures"] + res[group]["skipped_silent"] == 1
    allr = res["all"]
    if allr["n_mixtures"]:
        assert allr["irm"]["sdr"] > allr["mixture"]["sdr"]  # the oracle beats doing nothing
        assert {"sdr", "sir", "sar"} <= set(allr["model"])


def test_bench_and_cli_registration():
    from avstudio.analysis.separate import bench_separation
    from avstudio.cli import build_parser
    from avstudio.nets.checkpoint import ModelBundle

    r = bench_separation(ModelBundle(separator=tiny_sep()), seconds=1.0, repeats=1)
    assert r["available"] and r["stems_s"] > 0 and r["pixel_click_s"] > 0
    assert bench_separation(ModelBundle())["available"] is False
    args = build_parser().parse_args(["train-separator", "--av-model", "m", "--out", "o", "--synth-seed", "1"])
    assert args.stages == [1, 2] and callable(args._run)
