"""A stand-in phone for the live-phone tests: an `adb` that runs the phone's shell on this
host, and a benchmark binary whose "time" is a function of the program file, so that a test
knows every latency exactly.

The binary reports a pass of a program of B bytes as B / `BYTES_PER_MS` milliseconds, in
executor_runner's words for `--model_path`/`--num_executions` and onnxruntime_perf_test's for
`-r N ... MODEL`. The adb logs each call with the serial it was for (ANDROID_SERIAL).
"""

from __future__ import annotations

import stat
from pathlib import Path

BYTES_PER_MS = 100_000

FAKE_ADB = """\
#!/bin/sh
# adb without a phone: pushes copy, shell commands run here; every call is logged.
printf '%s %s\\n' "${ANDROID_SERIAL:-none}" "$*" >>"$FAKE_ADB_LOG"
case $1 in
    get-state) echo device ;;
    push) mkdir -p "$(dirname "$3")" && cp "$2" "$3" ;;
    shell) shift; exec sh -c "$*" ;;
    *) echo "fake adb: unsupported: $*" >&2; exit 1 ;;
esac
"""

FAKE_GETPROP = """\
#!/bin/sh
case $1 in
    ro.product.model) echo "Pixel \\"Fake\\" ${ANDROID_SERIAL:-none}" ;;
    ro.product.manufacturer) echo Google ;;
    ro.build.version.release) echo 15 ;;
    ro.soc.model) echo Tensor-G4 ;;
    ro.product.cpu.abi) echo arm64-v8a ;;
esac
"""

FAKE_BENCHMARK = f"""\
#!/bin/sh
# A stand-in benchmark binary: a pass of a program of B bytes "takes" B / {BYTES_PER_MS} ms.
model="" runs=1 style=ort
while [ $# -gt 0 ]; do
    case $1 in
        --model_path=*) model=${{1#--model_path=}}; style=et ;;
        --num_executions=*) runs=${{1#--num_executions=}} ;;
        -r) runs=$2; shift ;;
        -*) ;;
        *) model=$1 ;;
    esac
    shift
done
size=$(wc -c <"$model" | tr -d ' ')
ms=$(awk -v s="$size" 'BEGIN {{ printf "%.6f", s / {BYTES_PER_MS} }}')
if [ "$style" = et ]; then
    total=$(awk -v m="$ms" -v n="$runs" 'BEGIN {{ printf "%.6f", m * n }}')
    echo "Model executed successfully $runs time(s) in $total ms."
else
    echo "Average inference time cost: $ms ms"
fi
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def install_fake_phone(root: Path) -> dict[str, str]:
    """Writes adb, getprop and the benchmark binary under `root`; returns the environment
    additions (PATH first entry, BENCHMARK_BINARY, DEVICE_DIR, FAKE_ADB_LOG) that make
    `ablate run --phone SERIAL` use them."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    _script(bin_dir / "adb", FAKE_ADB)
    _script(bin_dir / "getprop", FAKE_GETPROP)
    binary = _script(root / "benchmark", FAKE_BENCHMARK)
    return {
        "PATH_PREFIX": str(bin_dir),
        "BENCHMARK_BINARY": str(binary),
        "DEVICE_DIR": str(root / "phone-storage"),
        "FAKE_ADB_LOG": str(root / "adb.log"),
    }


def adb_commands(log: Path) -> list[str]:
    """The adb calls the log holds, without the serial each was for."""
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
