"""What the MobileNetV3 paper itself reports for a factor, to set beside our measurement.

The paper's figures are MAdds (BN folded) and milliseconds on one large core of a Pixel-1
phone, TFLite; they are quoted, never compared numerically with ours (other machine, other
backend, other counting convention).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperFigure:
    madds: str
    latency: str
    source: str

    def text(self) -> str:
        return f"{self.madds}; {self.latency} ({self.source})"


PAPER_FIGURES: dict[str, PaperFigure] = {
    # V3 paper Section 5.1, "Redesigning Expensive Layers".
    "last_stage": PaperFigure(
        madds="-30M MAdds",
        latency="-7 ms, 11% of the running time (64 ms)",
        source="V3 §5.1, Pixel-1",
    ),
    "stem_channels": PaperFigure(
        madds="-10M MAdds", latency="-2 ms (16 filters instead of 32)", source="V3 §5.1, Pixel-1"
    ),
    # V3 paper Table 5: V3-Large as published 51.4 ms, ReLU everywhere 50.5 ms.
    "activation": PaperFigure(
        madds="h-swish adds no MAdds",
        latency="published h-swish placement +0.9 ms vs ReLU everywhere (51.4 vs 50.5 ms)",
        source="V3 Table 5, Pixel-1",
    ),
}

# V3 paper Table 3: the whole change, for attributions between the two published models.
PAPER_TOTAL = PaperFigure(
    madds="300M -> 219M MAdds", latency="64 -> 51 ms", source="V3 Table 3, Pixel-1"
)
PUBLISHED_PAIR = ("mobilenet_v2", "mobilenet_v3_large")


def paper_figure(factor: str) -> PaperFigure | None:
    return PAPER_FIGURES.get(factor)
