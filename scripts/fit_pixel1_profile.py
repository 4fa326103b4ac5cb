"""Regenerate the shipped `pixel1` device profile from the paper's published latencies.

    python scripts/fit_pixel1_profile.py

Reads ablate/devices/pixel1_latencies.csv (V3 paper Tables 3 and 9, cited in the file), fits
the cost model (the form chosen by leave-one-architecture-out cross-validation) and writes
ablate/devices/pixel1.json; prints the fit's quality. Table 5 and Table 6 are not read.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ablate.devices.api import fit_device
from ablate.report.devices import candidates_table, profile_table, support_table

PACKAGE = Path(__file__).resolve().parent.parent / "ablate" / "devices"


def main() -> None:
    profile, path = fit_device(
        "pixel1",
        table=PACKAGE / "pixel1_latencies.csv",
        out=PACKAGE / "pixel1.json",
        description="Google Pixel-1, one large core, TFLite float, batch 1: fitted from the "
        "MobileNetV3 paper's published latencies (arXiv:1905.02244 Tables 3 and 9)",
    )
    console = Console(width=140)
    console.print(profile_table(profile))
    console.print(support_table(profile))
    console.print(candidates_table(profile))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
