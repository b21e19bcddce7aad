"""The README is a front door, and every number it quotes is measured.

- it stays short (the rest lives in docs/);
- every measured number it quotes (and every one on docs/results.md) appears in a committed results
  file under benchmarks/results/, in the file its table row links where it links one;
- every relative link in README.md and docs/*.md points to a file that exists (and, for links into a
  Markdown file, to a heading that exists);
- every page in docs/ is linked from the README.
"""
from __future__ import annotations

import functools
import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
MAX_README_CHARS = 15_500

# Numbers the README may quote without a results file: constants of the method or of the dataset's
# description, not measurements.
WHITELIST = {
    "128",   # image size (128x128 pixels), a preprocessing setting
    "512",   # latent sizes the study tried: 512 ...
    "1024",  # ... 1024 ...
    "2048",  # ... and 2048 (the seed search space)
    "2870",  # the dataset's size as published (train 2,870), a description of the data
    "394",   # the dataset's published test split (test 394), a description of the data
    "2024",  # the year of the course study the project starts from
}

FENCED = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK_TARGET = re.compile(r"\]\(([^)\s]*)\)")
URL = re.compile(r"https?://\S+")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
VERSION = re.compile(r"\b(?:Python|torch|PyTorch|CUDA|lightning|numpy)\s+\d+(?:\.\d+)+", re.I)
# a number not glued to a word or another number (h100, t1, 128x128's second half are not numbers)
NUMBER = re.compile(r"(?<![\w.,/-])([-+]?\d{1,3}(?:,\d{3})+|[-+]?\d+)(\.\d+)?(%|x\b| M\b)?(?![\w.]*\d)")
RESULT_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _prose(markdown: str) -> str:
    """The text a reader sees as prose and tables: no code, no link targets, URLs, dates or versions."""
    text = FENCED.sub(" ", markdown)
    text = INLINE_CODE.sub(" ", text)
    text = LINK_TARGET.sub("]", text)
    for pattern in (URL, DATE, VERSION):
        text = pattern.sub(" ", text)
    return re.sub(r"(?<=\d)-(?=\d)", " - ", text)  # a range "411-463x" is two numbers


def quoted_numbers(markdown: str) -> list[str]:
    """The numbers that must be measured: decimals, percentages, multiples ("1.64x"), millions
    ("12.8 M") and integers of three digits or more; small integers (epochs, counts of things) are not
    checked. Returned as written, without thousands separators."""
    found = []
    for m in NUMBER.finditer(_prose(markdown)):
        whole, frac, suffix = m.group(1).lstrip("+-").replace(",", ""), m.group(2) or "", m.group(3) or ""
        if not (frac or suffix or len(whole) >= 3):
            continue
        if not frac and not suffix and whole in WHITELIST:
            continue
        found.append(whole + frac + suffix)
    return found


@functools.lru_cache(maxsize=None)
def _numbers_in(paths: tuple[Path, ...]) -> tuple[set[Decimal], list[Decimal]]:
    """Every number in the text files at paths (folders: every file under them): the exact values, and
    the same sorted, for rounded quotations."""
    exact: set[Decimal] = set()
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    for path in files:
        if not path.is_file() or path.suffix.lower() in {".png", ".jpg", ".pt", ".ckpt", ".npy"}:
            continue
        text = path.read_text(errors="replace")
        # thousands separators ("12,754,529") read as one number; JSON lists ("[1,2]") stay apart
        text_joined = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
        for source in (text, text_joined):
            for token in RESULT_NUMBER.findall(source):
                try:
                    exact.add(Decimal(token))
                except InvalidOperation:
                    pass
    return exact, sorted(exact)


def _decimals(d: Decimal) -> int:
    return max(0, -d.as_tuple().exponent)


def _rounds_to(quoted: Decimal, values: list[Decimal], scale: Decimal = Decimal(1)) -> bool:
    """Whether some measured value, times scale, rounds to the quoted number at the quotation's precision."""
    places = _decimals(quoted)
    q = Decimal(1).scaleb(-places)
    for v in values:
        s = v * scale
        if _decimals(s) <= places:  # not more precise than the quotation: exact match only (checked elsewhere)
            continue
        if s.quantize(q, rounding=ROUND_HALF_UP) == quoted or s.quantize(q, rounding=ROUND_HALF_EVEN) == quoted:
            return True
    return False


def is_measured(number: str, exact: set[Decimal], values: list[Decimal]) -> bool:
    suffix = next((s for s in ("%", "x", " M") if number.endswith(s)), "")
    quoted = Decimal(number[: len(number) - len(suffix)])
    if quoted in exact or _rounds_to(quoted, values):
        return True
    if suffix == "%":  # a share written as a fraction in the results file
        return _rounds_to(quoted, values, Decimal(100))
    if suffix == " M":  # "12.8 M parameters" from "12,754,529"
        return _rounds_to(quoted, values, Decimal("1e-6"))
    return False


def unmeasured(markdown: str, base: Path = ROOT) -> list[str]:
    """The quoted numbers of markdown that no results file holds. A table row that links results files
    is checked against those files alone (a value must come from the file its row names); every other
    number against everything under benchmarks/results/."""
    everything = _numbers_in((RESULTS,))
    missing = []
    for line in FENCED.sub(" ", markdown).splitlines():
        numbers = quoted_numbers(line)
        if not numbers:
            continue
        linked = [(base / t.partition("#")[0]).resolve() for t in LINK_TARGET.findall(line)]
        linked = [p for p in linked if p.exists() and RESULTS.resolve() in (p, *p.parents)]
        exact, values = _numbers_in(tuple(linked)) if line.lstrip().startswith("|") and linked else everything
        missing += [n for n in numbers if not is_measured(n, exact, values)]
    return missing


def test_readme_is_a_front_door():
    text = README.read_text()
    assert len(text) <= MAX_README_CHARS, f"README.md has {len(text)} characters; move detail into docs/"
    assert text.startswith("# brainae")
    first_block = FENCED.search(text).group(0)  # the two commands come first, as CI runs them
    assert "bash scripts/setup.sh && .venv/bin/brainae study --out study" in first_block
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest" in first_block
    assert "download.pytorch.org/whl/cpu" in text  # the CPU-only setup is stated


def test_every_number_in_the_readme_is_in_a_results_file():
    text = README.read_text()
    assert len(quoted_numbers(text)) > 20  # the check sees the README's results, not an empty page
    missing = unmeasured(text)
    assert not missing, (f"numbers in README.md found in no file under benchmarks/results/ "
                         f"(or not in the file their table row links): {missing}")


def test_every_number_on_the_results_page_is_in_a_results_file():
    page = DOCS / "results.md"
    missing = unmeasured(page.read_text(), base=page.parent)
    assert not missing, f"numbers in docs/results.md found in no file under benchmarks/results/: {missing}"


def test_the_number_check_catches_a_made_up_number():
    fake = ("| VAE | test PSNR | 15.01 dB [14.81, 15.27], 3.17x faster, 47.3%, 12,345 images "
            "| [f](benchmarks/results/main_job_cpu.md) |")
    numbers = quoted_numbers(fake)
    assert numbers == ["15.01", "14.81", "15.27", "3.17x", "47.3%", "12345"]
    assert unmeasured(fake) == numbers
    # a real number quoted beside the wrong results file is caught too (23.71 dB is the H100 study's)
    assert unmeasured("| AE | 23.71 dB | [f](benchmarks/results/main_job_cpu.md) |") == ["23.71"]
    assert unmeasured("| AE | 23.71 dB | [f](benchmarks/results/study_seed_h100/summary.json) |") == []
    # rounded quotations are found (the H100 study's 23.71 dB is stored with more digits; 0.6494 -> 65%),
    # ranges are two numbers
    assert unmeasured("23.71 dB, 1.64x, 65% near zero, 411-463x") == []
    assert quoted_numbers("411-463x") == ["411", "463x"]
    # what is not a measurement is not checked
    assert quoted_numbers("`--epochs 120` torch 2.13.0 on 2026-11-27, [x](results/h100.md), 40 epochs, 128x128") == []


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCED.sub("", path.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


def _links(path: Path) -> list[str]:
    return LINK_TARGET.findall(FENCED.sub("", path.read_text()))


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files(page):
    broken = []
    for target in _links(page):
        if not target or re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files or headings: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in _links(README) if not re.match(r"^[a-z]+:", t)}
    orphans = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"
