from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

# The tests' caches (exports, batch-norm statistics, calibration) live in the checkout, not in
# the user's ~/.cache/ablate: entries another version of ablate wrote there would be rebuilt
# with a note, and a test reading a command's last line would read the note.
os.environ.setdefault("ABLATE_CACHE_DIR", str(Path(__file__).parent.parent / ".test-cache"))

# Tests never time anything: one thread keeps them quick when the other core is busy, and
# flushing denormals avoids the slow paths that random weights hit (values do not matter here).
torch.set_num_threads(1)
torch.set_flush_denormal(True)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def one_error_line(result: Any) -> str:
    """The one line a CLI refusal prints (bad input: exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]
