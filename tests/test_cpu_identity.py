"""The precise CPU a result names (identity, kernel-deciding flags, caches), and that reports
and `ablate compare` show it while results recorded before it still load."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from report_golden import fixture_document, fixture_results, modified_results

from ablate.measurement.results import Environment
from ablate.measurement.setup import cpu_caches, cpu_flags, cpu_identity
from ablate.report.compare import KEY_ORDER, environment_differences
from ablate.report.markdown import render_markdown
from ablate.runs.schema import Results

# Two processors as /proc/cpuinfo lists them on a Zen 3 VM (flags trimmed), the second with
# a different flags line: only the first processor's counts.
X86_CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
cpu MHz\t\t: 2595.124
cache size\t: 1024 KB
flags\t\t: fpu vme de pse tsc msr sse sse2 ht syscall nx pdpe1gb lm constant_tsc \
pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand \
hypervisor lahf_lm avx2 bmi1 bmi2 erms avx512f avx512dq rdseed adx avx512bw avx512vl \
avx512_bf16 avx512_vnni vaes vpclmulqdq rdpid fsrm
bogomips\t: 5190.24

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse sse2 avx amx_tile
"""

# A Neoverse-N2-style ARM server's /proc/cpuinfo (one core), features trimmed.
ARM_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid \
asimdrdm jscvt fcma lrcpc dcpop sha3 asimddp sha512 sve asimdfhm i8mm bf16 dgh
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd0b
CPU revision\t: 1
"""


def test_x86_identity_and_flags_come_from_the_first_processor() -> None:
    assert cpu_identity(X86_CPUINFO) == "AuthenticAMD family 25 model 17 stepping 1"
    assert cpu_flags(X86_CPUINFO) == (
        "avx",
        "avx2",
        "avx512_bf16",
        "avx512_vnni",
        "avx512bw",
        "avx512dq",
        "avx512f",
        "avx512vl",
        "f16c",
        "fma",
        "sse4_1",
        "sse4_2",
    )


def test_arm_identity_and_features() -> None:
    assert cpu_identity(ARM_CPUINFO) == "implementer 0x41 part 0xd0b variant 0x0 revision 1"
    assert cpu_flags(ARM_CPUINFO) == (
        "asimd",
        "asimddp",
        "asimdhp",
        "bf16",
        "fphp",
        "i8mm",
        "sve",
    )


def test_no_cpuinfo_gives_nothing() -> None:
    assert cpu_identity("") == ""
    assert cpu_flags("") == ()


def _cache(root: Path, index: int, **files: str) -> None:
    directory = root / f"index{index}"
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).write_text(text + "\n")


def test_caches_in_level_then_data_instruction_order(tmp_path: Path) -> None:
    # Listed out of order on purpose; index4 has no size file and is left out.
    _cache(tmp_path, 0, level="2", type="Unified", size="1024K")
    _cache(tmp_path, 1, level="1", type="Instruction", size="32K")
    _cache(tmp_path, 2, level="3", type="Unified", size="32768K")
    _cache(tmp_path, 3, level="1", type="Data", size="32K")
    _cache(tmp_path, 4, level="4", type="Unified")
    assert cpu_caches(tmp_path) == "L1d 32K, L1i 32K, L2 1024K, L3 32768K"


def test_caches_skip_an_unreadable_index(tmp_path: Path) -> None:
    _cache(tmp_path, 0, level="1", type="Data", size="48K")
    _cache(tmp_path, 1, level="2", type="Unified")
    # A directory where the file should be fails to read even as root (a chmod would not).
    (tmp_path / "index1" / "size").mkdir()
    assert cpu_caches(tmp_path) == "L1d 48K"


def test_missing_cache_directory_gives_nothing(tmp_path: Path) -> None:
    assert cpu_caches(tmp_path / "absent") == ""


def test_environment_defaults_keep_older_records_constructible() -> None:
    environment = Environment(
        "CPU", 2, "Linux", "3.11", "2.13", 1, 1, True, True, False, "CPU", 0.5
    )
    record = dataclasses.asdict(environment)
    assert (record["cpu_identity"], record["cpu_flags"], record["cpu_caches"]) == ("", (), "")


def test_results_without_the_cpu_keys_load_and_render() -> None:
    document = fixture_document("hswish_eager")
    assert "cpu_flags" not in document["environment"]  # recorded before these keys existed
    text = render_markdown(fixture_results("hswish_eager"), plots={})
    assert "| CPU | AMD EPYC 7B13 |" in text
    assert "CPU flags" not in text and "CPU identity" not in text


def _with_cpu(flags: list[str]) -> Any:
    def change(document: dict[str, Any]) -> None:
        document["environment"].update(
            cpu_identity="AuthenticAMD family 25 model 17 stepping 1",
            cpu_flags=flags,
            cpu_caches="L1d 32K, L1i 32K, L2 1024K, L3 32768K",
            load_average=1.5,
        )

    return change


def test_report_shows_the_cpu_identity_flags_and_caches() -> None:
    results = modified_results("hswish_eager", _with_cpu(["avx2", "avx512_vnni", "avx512f"]))
    text = render_markdown(results, plots={})
    assert "| CPU identity | AuthenticAMD family 25 model 17 stepping 1 |" in text
    assert "| CPU flags | avx2 avx512_vnni avx512f |" in text
    assert "| caches | L1d 32K, L1i 32K, L2 1024K, L3 32768K |" in text
    assert "| load average (1 min, at the end) | 1.5 |" in text


def test_compare_names_a_cpu_flags_difference_first() -> None:
    avx2 = modified_results("hswish_eager", _with_cpu(["avx", "avx2", "fma"]))
    vnni = modified_results("hswish_eager", _with_cpu(["avx", "avx2", "avx512_vnni", "fma"]))
    differences = environment_differences(avx2, vnni)
    assert [d.key for d in differences] == ["cpu_flags"]
    assert differences[0].second == ["avx", "avx2", "avx512_vnni", "fma"]
    assert KEY_ORDER[:4] == ("cpu_model", "cpu_identity", "cpu_flags", "cpu_caches")
    text = render_markdown(avx2, plots={}, versus=vnni)
    assert "| cpu_flags | avx avx2 fma | avx avx2 avx512_vnni fma |" in text


def test_compare_sees_no_difference_between_a_tuple_and_the_equal_list() -> None:
    loaded = modified_results("hswish_eager", _with_cpu(["avx", "avx2"]))
    in_memory = Results.model_validate(
        {**loaded.model_dump(), "environment": {**loaded.environment, "cpu_flags": ("avx", "avx2")}}
    )
    assert in_memory.environment["cpu_flags"] == ("avx", "avx2")
    assert environment_differences(loaded, in_memory) == ()
