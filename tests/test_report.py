"""The study report is well-formed: a "Read me first" box on top, 8-bit figures each with a caption,
collapsible sections with the misleading ones folded, and the size the figures' pixels allow."""
import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from brainae.visualization.plots import figure_png, plt, to_8bit
from report_html import report_sections


@pytest.fixture(scope="module")
def html(study_dir):
    return (study_dir / "report.html").read_text()


def section(html: str, sid: str) -> str:
    return html.split(f'<section id="{sid}">')[1].split("</section>")[0]


def pngs(text: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_read_me_first_opens_the_report_with_what_ran_results_and_flags(html, study_dir):
    main = html.split("<main>")[1]
    assert main.index('<section id="readme">') < main.index('<section id="data">')
    box = section(html, "readme")
    readme = report_sections(html)["readme"]
    assert readme.title == "Read me first"
    what_ran = {row[0]: row[1] for row in readme.tables[0]}
    assert {"preset", "data", "epochs", "sweep", "wall time"} <= set(what_ran) and what_ran["preset"].startswith("quick")
    results = {r["model"]: r for r in readme.table_with("test PSNR (dB)")}
    pca = results.pop(next(m for m in results if m.startswith("PCA, ")))  # the linear baseline's row
    assert pca["best epoch / epochs"] == "no training" and float(pca["test PSNR (dB)"].split()[0]) > 0
    assert set(results) == {"AE", "VAE"} and all(r["best epoch / epochs"] == "1 / 1" for r in results.values())
    assert all(float(r["test SSIM"].split()[0]) > 0 for r in results.values())
    # one epoch: the best epoch is the last, and a 3-trial sweep cannot rank parameters
    assert "Not converged." in box and "Sweep too small to rank parameters." in box
    assert 'href="#training"' in box
    summary = json.loads((study_dir / "summary.json").read_text())
    assert {"not_converged", "sweep_too_small"} <= {f["id"] for f in summary["flags"]}
    assert summary["seconds"]["total"] > 0 and set(summary["seconds"]["models"]) == {"ae", "vae"}


def test_sections_are_collapsible_and_the_misleading_ones_folded(html):
    assert html.count("<details") >= 9
    assert re.search(r'<section id="inside">\s*<details>', html)  # folded by default
    assert re.search(r'<section id="sweeps">\s*<details>', html)  # folded: too few trials
    assert re.search(r'<section id="data">\s*<details open>', html)
    assert 'class="warn"' in section(html, "training")  # not converged: said where the curves are


def test_every_figure_is_an_8bit_png_with_a_caption(html):
    images = pngs(html)
    assert len(images) >= 20 and len(images) == html.count("<img ")
    assert html.count("<figcaption>") == html.count("<img ")
    for raw in images:
        im = Image.open(io.BytesIO(raw))
        assert im.mode in ("L", "P"), im.mode  # 8 bits a pixel, never RGB(A)
        assert len(raw) <= im.size[0] * im.size[1] + 2048  # PNG of 8-bit pixels: at most about a byte each
    # grids of grayscale images only are stored as grayscale
    assert Image.open(io.BytesIO(pngs(section(html, "data"))[0])).mode == "L"
    for sid in ("reconstructions", "anomaly"):  # error maps in colour, with colour bars: a palette
        assert Image.open(io.BytesIO(pngs(section(html, sid))[-1])).mode == "P"
    assert len(html) < 60_000 * len(images)  # the page is its figures: the main job's, at 64 px, is 2.12 MB (main_job_cpu.json)


def test_error_maps_say_their_scale_and_the_tables_their_baselines(html):
    assert "99.5th percentile" in section(html, "reconstructions")
    assert "AUROC untrained" in section(html, "anomaly")
    assert "pre-sigmoid" in section(html, "inside")
    sweeps = section(html, "sweeps")
    # our validation loss and the original study's training loss never share a row
    rows = re.findall(r"<tr>.*?</tr>", sweeps, re.S)
    assert not [r for r in rows if "0.003926" in r and "validation" in r]
    assert any("0.003926" in r and "training" in r for r in rows)


def test_to_8bit_keeps_grays_exact_and_white_white():
    x = np.linspace(0, 255, 256).astype(np.uint8)
    gray = Image.fromarray(np.stack([np.tile(x, (8, 1))] * 3, axis=-1))
    assert to_8bit(gray).mode == "L" and np.array_equal(np.asarray(to_8bit(gray)), np.tile(x, (8, 1)))
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    colour[:8] = 255  # a white margin
    out = to_8bit(Image.fromarray(colour))
    back = np.asarray(out.convert("RGB")).astype(int)
    assert out.mode == "P" and (back[:8] == 255).all()


def test_figure_png_of_a_colour_plot_is_a_palette_png():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2, 3], [3, 1, 2], "o-", color="tab:orange")
    assert Image.open(io.BytesIO(figure_png(fig))).mode == "P"


@pytest.mark.parametrize("module", ["brainae.visualization.plots", "brainae.data.examples"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    import torch

    assert doctest.testmod(importlib.import_module(module), extraglobs={"np": np, "torch": torch}).failed == 0
