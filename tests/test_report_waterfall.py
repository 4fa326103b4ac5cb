"""The waterfall chart: a real PNG written by matplotlib, checked by its header, not pixels."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from ablate.analysis.attribution import attribute
from ablate.errors import AblateError
from ablate.report.plots import write_attribution_waterfall, write_waterfall

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> dict[bytes, list[bytes]]:
    """Chunk type -> payloads, verifying each chunk's CRC on the way."""
    assert data[:8] == PNG_SIGNATURE
    chunks: dict[bytes, list[bytes]] = {}
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) == crc
        chunks.setdefault(kind, []).append(payload)
        offset += 12 + length
    return chunks


def assert_matplotlib_png(path: Path) -> tuple[int, int]:
    chunks = png_chunks(path.read_bytes())
    assert b"IEND" in chunks and b"IDAT" in chunks
    width, height = struct.unpack(">II", chunks[b"IHDR"][0][:8])
    texts = dict(payload.split(b"\0", 1) for payload in chunks.get(b"tEXt", []))
    assert texts[b"Software"].startswith(b"Matplotlib")
    return width, height


def test_waterfall_writes_a_two_panel_png(tmp_path: Path) -> None:
    path = write_waterfall(
        tmp_path / "waterfall.png",
        factors=["kernel", "se", "h_swish", "last_stage"],
        latency_contributions_ms=[0.8, 1.1, 0.4, -3.0],
        latency_intervals_ms=[(0.7, 0.9), (1.0, 1.3), (0.3, 0.5), (-3.2, -2.8)],
        latency_start_ms=12.0,
        latency_end_ms=11.3,
        mac_contributions=[20e6, 2e6, 0, -40e6],
        macs_start=300e6,
        macs_end=282e6,
        from_label="mobilenet_v2",
        to_label="mobilenet_v3_large",
    )
    assert path == tmp_path / "waterfall.png"
    width, height = assert_matplotlib_png(path)
    # 10 x 5.5 inches at 110 dpi; both panels side by side make it wider than tall.
    assert (width, height) == (1100, 605)


def test_waterfall_from_an_attribution(tmp_path: Path) -> None:
    count = 3
    taken = (np.arange(1 << count)[:, None] >> np.arange(count)) & 1
    rng = np.random.default_rng(0)
    rounds = (12 + taken @ np.array([0.8, -1.5, 0.3]) + rng.normal(0, 0.05, (20, 8))) / 1000
    macs = 300_000_000 + taken @ np.array([20_000_000, -60_000_000, 0])
    result = attribute(["kernel", "width", "se"], {"macs": macs}, rounds, from_name="v2")
    width, height = assert_matplotlib_png(write_attribution_waterfall(result, tmp_path / "w.png"))
    assert width > height > 0


def test_waterfall_input_errors(tmp_path: Path) -> None:
    arguments = dict(
        factors=["kernel", "se"],
        latency_contributions_ms=[0.5, -0.2],
        latency_intervals_ms=[(0.4, 0.6), (-0.3, -0.1)],
        latency_start_ms=10.0,
        latency_end_ms=10.3,
        mac_contributions=[1e6, -2e6],
        macs_start=300e6,
        macs_end=299e6,
    )
    with pytest.raises(AblateError, match="MAC contributions has 1 values for 2 factors"):
        write_waterfall(tmp_path / "a.png", **{**arguments, "mac_contributions": [1e6]})
    with pytest.raises(AblateError, match="low <= high"):
        write_waterfall(
            tmp_path / "b.png", **{**arguments, "latency_intervals_ms": [(0.6, 0.4), (0, 0)]}
        )
    with pytest.raises(AblateError, match="finite"):
        write_waterfall(tmp_path / "c.png", **{**arguments, "latency_start_ms": float("nan")})
    no_latency = attribute(["a"], {"macs": [1, 2]})
    with pytest.raises(AblateError, match="needs latency"):
        write_attribution_waterfall(no_latency, tmp_path / "d.png")
    assert not list(tmp_path.iterdir())
