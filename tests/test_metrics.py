"""Reconstruction metrics agree with scikit-image; intervals cover the mean."""
import json

import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from brainae.evaluation.metrics import bootstrap_ci, per_image_metrics, summarize


def known_pair():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    clean = (0.5 + 0.4 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    return clean, noisy


def test_metrics_match_scikit_image():
    clean, noisy = known_pair()
    m = per_image_metrics(torch.from_numpy(noisy)[None, None], torch.from_numpy(clean)[None, None])
    assert m["mse"][0] == pytest.approx(mean_squared_error(clean, noisy), rel=1e-5)
    assert m["psnr"][0] == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=1.0), abs=1e-3)
    ref_ssim = structural_similarity(clean, noisy, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert m["ssim"][0] == pytest.approx(ref_ssim, abs=5e-3)


def test_identical_images_and_batches():
    clean, noisy = known_pair()
    batch = torch.from_numpy(np.stack([clean, noisy]))[:, None]
    m = per_image_metrics(batch, batch)
    assert np.allclose(m["mse"], 0) and np.allclose(m["ssim"], 1)
    s = summarize(m["psnr"])
    assert s["mean"] == 100.0  # a perfect copy is capped, never inf in JSON
    json.dumps(s)


def test_bootstrap_interval_covers_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(20, 2, 30), rng.normal(20, 2, 3000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5
    # about 95% coverage: the interval width is close to 2 * 1.96 * sd / sqrt(n)
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 * large.std() / np.sqrt(3000), rel=0.15)


def test_fast_ssim_matches_torchmetrics():
    # the hand-written separable SSIM exists for speed only; it must give torchmetrics' values
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    from brainae.evaluation.metrics import ssim_per_image

    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 1, 48, 40, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    ref = structural_similarity_index_measure(b, a, data_range=1.0, reduction="none").numpy()
    np.testing.assert_allclose(ssim_per_image(b.numpy(), a.numpy()), ref, atol=1e-6)


def test_ssim_of_a_batch_is_each_images_ssim_alone():
    """ssim_per_image blurs a whole batch in one matrix product: each image's value is the one it gets alone."""
    from brainae.evaluation.metrics import map_chunks, ssim_per_image

    rng = np.random.default_rng(3)
    x = rng.random((7, 1, 24, 20), dtype=np.float32)
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    whole = ssim_per_image(x, y)
    one_by_one = np.concatenate([ssim_per_image(x[i:i + 1], y[i:i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(whole, one_by_one)
    assert ssim_per_image(x[:0], y[:0]).shape == (0,)
    assert map_chunks(lambda i, j: (i, j), 7, workers=3) == [(0, 3), (3, 6), (6, 7)]
    assert map_chunks(lambda i, j: (i, j), 0) == []


def test_chunk_workers_run_torch_on_one_thread_each_and_the_count_comes_back():
    """Each of map_chunks' workers has a core: torch spreading a chunk's matrix products over every core as well
    oversubscribed them (benchmarks/score_threads.py). One worker leaves torch's count alone."""
    from brainae.evaluation.metrics import map_chunks, torch_threads

    before = torch.get_num_threads()
    with torch_threads(2):  # as on a 2-core machine, whatever this one has
        assert map_chunks(lambda i, j: torch.get_num_threads(), 4, chunk=1, workers=2) == [1, 1, 1, 1]
        assert torch.get_num_threads() == 2
        assert map_chunks(lambda i, j: torch.get_num_threads(), 4, chunk=1, workers=1) == [2, 2, 2, 2]
        with pytest.raises(ZeroDivisionError):
            map_chunks(lambda i, j: 1 / 0, 4, chunk=1, workers=2)
        assert torch.get_num_threads() == 2  # back after an error too
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("mode", ["mirror", "reflect"])
def test_blur_matrix_is_scipys_filter_even_when_the_window_outgrows_the_image(mode):
    """Border folding repeats for images narrower than the window, as scipy's does."""
    from scipy.ndimage import correlate1d

    from brainae.evaluation.metrics import blur_matrix

    taps = np.exp(-0.5 / 1.5 ** 2 * np.arange(-5, 6) ** 2)
    for n in (1, 2, 3, 4, 7, 40):
        v = np.random.default_rng(n).random(n)
        got = blur_matrix(n, 1.5, 5, mode).numpy() @ v
        np.testing.assert_allclose(got, correlate1d(v, taps / taps.sum(), mode=mode), rtol=0, atol=1e-14)
    assert blur_matrix(6, 1.5, 5, mode).dtype == torch.float64


def test_stack_blur_in_blocks_is_the_whole_matrix_product():
    """stack_blur multiplies each block of outputs by the inputs that reach it only: the same numbers as the
    dense blur_matrix product, at sizes below, on and across its block edges, and when it overwrites its input."""
    from brainae.evaluation.metrics import blur_matrix, stack_blur

    rng = np.random.default_rng(5)
    for h, w in ((1, 3), (5, 16), (16, 17), (33, 40), (128, 128), (70, 9)):
        a = torch.from_numpy(rng.random((2, 3, h, w)))
        for sigma, radius, mode in ((1.5, 5, "mirror"), (1.0, 4, "reflect")):
            dense = blur_matrix(h, sigma, radius, mode) @ a @ blur_matrix(w, sigma, radius, mode).T
            blur = stack_blur(a.shape, sigma, radius, mode)
            torch.testing.assert_close(blur(a), dense, rtol=0, atol=1e-14)
            x = a.clone()
            assert blur(x, out=x) is x
            torch.testing.assert_close(x, dense, rtol=0, atol=1e-14)
