"""The tune report: a self-contained page with the curve, the roofline, the tree, every sample and
the best trace explained — checked as HTML, and rendered by a real browser (headless Chromium)."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import minicompiler as mc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    A, B = mc.placeholder((70, 48), name="A"), mc.placeholder((48, 56), name="B")
    C = mc.einsum("ik,kj->ij", A, B)
    db = tmp_path_factory.mktemp("db") / "db.sqlite"
    return mc.tune(C, budget=8, database=db, seed=0, threads=1, progress=False, name="report-matmul")


def test_the_page_holds_the_curve_roofline_tree_samples_and_explained_trace(tuned, tmp_path: Path) -> None:
    page = tuned.report(tmp_path / "out", peak_gflops=100.0, bandwidth_gbs=20.0)
    text = page.read_text()
    assert page == tmp_path / "out" / "index.html"
    for element in ('<svg id="curve"', '<svg id="roofline"', '<svg id="tree"', '<table id="samples"'):
        assert element in text
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert len(re.findall(r"<tr class=\"(?:best)?\"><td class=\"num\">\d+</td><td>", text)) == len(tuned.history)
    assert text.count('<p class="title">step ') == len(tuned.best_steps)
    assert "bound (the ridge is at 5.0 FLOP/byte)" in text                # 100 GFLOP/s / 20 GB/s
    nodes = tuned.tree.number_of_nodes()
    assert text.count("<circle cx=") >= nodes and nodes >= 3
    assert "the proposer's reasoning" in text


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows (RGBA or RGB bytes) of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, header = 8, [], b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        header = body if kind == b"IHDR" else header
        chunks += [body] if kind == b"IDAT" else []
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    channels = 4 if colour == 6 else 3
    raw, stride, rows, previous = zlib.decompress(b"".join(chunks)), width * channels, [], bytearray(width * channels)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 4:     # Paeth
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
            else:             # none, sub, up, average
                predictor = (0, a, b, (a + b) // 2)[kind]
            line[i] = (line[i] + predictor) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def _has_colour(rows: list[bytes], channels: int, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    count = 0
    for row in rows:
        for i in range(0, len(row) - channels + 1, channels):
            if all(abs(row[i + k] - rgb[k]) <= tolerance for k in range(3)):
                count += 1
    return count


def test_a_real_browser_renders_the_tree_and_the_curve(tuned, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        if os.environ.get("MINICOMPILER_REQUIRE_BROWSER"):
            pytest.fail("no Chromium on this machine, and CI requires it (apt-get install chromium)")
        pytest.skip("no Chromium here (Debian: apt-get install chromium): the page is checked as HTML only")
    page = tuned.report(tmp_path / "out", peak_gflops=100.0, bandwidth_gbs=20.0)
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<svg id="tree"' in dom.stdout and '<svg id="curve"' in dom.stdout
    shot = tmp_path / "page.png"
    run = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    width, height, rows = _png_pixels(shot)
    channels = len(rows[0]) // width
    assert (width, height) == (1280, 1400)
    assert _has_colour(rows, channels, (0x1B, 0x6A, 0xC9)) > 100      # the curve's best-so-far line, drawn
    assert _has_colour(rows, channels, (0xD6, 0x27, 0x28)) > 50       # the tree's best path, drawn


def test_cli_tune_writes_the_report(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "minicompiler", "tune", "ik,kj->ij", "--size", "i=40,j=40,k=40",
                          "--budget", "4", "--threads", "1", "--db", str(tmp_path / "db.sqlite"), "--report",
                          str(tmp_path / "report")], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    page = tmp_path / "report" / "index.html"
    assert f"report written to {page}" in out.stdout
    text = page.read_text()
    assert '<svg id="roofline"' in text and "Roofs measured on this machine" in text
