"""Mobile backends (ExecuTorch, LiteRT), their export cache, delegation reports, and the
batch-norm re-estimation that gives their int8 calibration realistic activations.

Tests that export need the runtime (extras `executorch`, `litert`) and skip without it. An
export takes 10-60 s even for a small model (the exporters' passes are per node), so each
program is exported once per session into a shared cache directory and the tests read it.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ablate import build_model
from ablate.architecture.layers import Block, ConvBatchNormActivation, SqueezeExcitation
from ablate.errors import BackendUnavailableError, MissingDependencyError, UnknownNameError
from ablate.measurement import activations, backends, export_pool, exporting, programs
from ablate.measurement.activations import realistic_module, reestimate_batch_norm
from ablate.measurement.backends import BACKENDS, OpTime, output_array
from ablate.measurement.cache_entries import seal, unseal
from ablate.measurement.export_cache import (
    DelegationReport,
    ExportKey,
    cached_export,
    has_entry,
    module_fingerprint,
    read_entry,
)
from ablate.measurement.runtimes import executorch, litert
from ablate.runs.entries import runtime_profile_entry
from ablate.runs.runner import QUICK_PROFILE_RUNS
from ablate.variants.resolve import resolve_architecture

SMALL = {"width": 0.35, "resolution": 96}

# ---------------------------------------------------------------------------------------------
# Models


class TinyMobileNet(nn.Module):
    """One V3 block (expand, depthwise, SE with hard-sigmoid gate, project, residual) between a
    stem and a classifier: every op kind of a MobileNet, exported in a few seconds."""

    def __init__(self, *, cumsum: bool = False):
        super().__init__()
        conv = {"batch_norm_epsilon": 1e-3}
        self.stem = ConvBatchNormActivation(3, 16, 3, stride=2, activation="hswish", **conv)
        self.block = Block(
            OrderedDict(
                expand=ConvBatchNormActivation(16, 32, 1, activation="hswish", **conv),
                depthwise=ConvBatchNormActivation(
                    32, 32, 3, groups=32, activation="hswish", **conv
                ),
                se=SqueezeExcitation(32, 8, "hsigmoid"),
                project=ConvBatchNormActivation(32, 16, 1, activation=None, **conv),
            ),
            residual=True,
        )
        self.classifier = nn.Linear(16, 10)
        # A cumulative sum: neither XNNPACK delegate has a kernel for it.
        self.cumsum = cumsum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.stem(x))
        if self.cumsum:
            x = torch.cumsum(x, dim=1)
        return self.classifier(x.mean(dim=(2, 3)))


def tiny(*, cumsum: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyMobileNet(cumsum=cumsum).eval()
    reestimate_batch_norm(model, 32, seed=seed)
    return model


def images(resolution: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))


def small_variant() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", **SMALL).eval()
    reestimate_batch_norm(model, SMALL["resolution"])
    return model


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-cache")


def _runtime(name: str) -> None:
    for module in BACKENDS.get(name).modules:
        pytest.importorskip(module)


# ---------------------------------------------------------------------------------------------
# Realistic activations (no runtime needed)


def test_batch_norm_reestimation_makes_activations_order_one() -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_large").eval()
    x = images(224)
    with torch.no_grad():
        before = model(x)
    # The reference initialisation leaves the logits vanishingly small.
    assert before.abs().max() < 1e-6

    estimate = reestimate_batch_norm(model, 224, seed=0)
    assert estimate.batch_norms == 46  # V3-Large: 46 conv + batch norm layers
    stds: list[float] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: stds.append(float(out.std())))
        for module in model.modules()
        if isinstance(module, nn.BatchNorm2d)
    ]
    with torch.no_grad():
        after = model(x)
    for hook in hooks:
        hook.remove()
    assert len(stds) == 46
    assert all(0.1 < std < 10 for std in stds), stds
    assert 1e-3 < float(after.abs().max()) < 10
    assert not model.training
    assert all(
        module.momentum == 0.1 for module in model.modules() if isinstance(module, nn.BatchNorm2d)
    )


def test_batch_norm_reestimation_is_deterministic_and_seeded() -> None:
    def statistics(seed: int) -> list[torch.Tensor]:
        model = tiny(seed=0)
        reestimate_batch_norm(model, 32, seed=seed)
        return [buffer.clone() for name, buffer in model.named_buffers() if "running" in name]

    first, again, other = statistics(3), statistics(3), statistics(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_batch_norm_reestimation_rejects_single_image_batches() -> None:
    with pytest.raises(ValueError, match="batch_size >= 2"):
        reestimate_batch_norm(tiny(), 32, batch_size=1)


NO_SE = resolve_architecture("mobilenet_v3_small", {**SMALL, "se": "off"})


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def _same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _no_reestimation(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("re-estimated although the cache holds the statistics")

    monkeypatch.setattr(activations, "reestimate_batch_norm", refuse)


def test_realistic_statistics_are_cached_and_read_back_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    architecture = resolve_architecture("mobilenet_v3_small", SMALL)
    fresh = _state(realistic_module(architecture, cache=False))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # cache=False stores nothing

    first = realistic_module(architecture, cache_directory=tmp_path)
    assert _same(_state(first), fresh)
    entries = list((tmp_path / "batch_norm").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".pt"

    _no_reestimation(monkeypatch)
    again = realistic_module(architecture, cache_directory=tmp_path)
    # Bit for bit the values a fresh estimate gives, so exports keyed on them still hit.
    assert _same(_state(again), fresh)
    assert module_fingerprint(again) == module_fingerprint(first)
    assert not again.training


def test_realistic_statistics_are_keyed_by_the_module_and_the_seed(tmp_path: Path) -> None:
    small = resolve_architecture("mobilenet_v3_small", SMALL)
    realistic_module(small, cache_directory=tmp_path)
    realistic_module(small, seed=1, cache_directory=tmp_path)
    realistic_module(
        NO_SE,
        cache_directory=tmp_path,
    )
    assert len(list((tmp_path / "batch_norm").iterdir())) == 3


@pytest.mark.parametrize("damage", ["torn", "foreign", "not_finite"])
def test_a_damaged_statistics_entry_is_re_estimated_and_rewritten(
    tmp_path: Path, damage: str
) -> None:
    architecture = resolve_architecture("mobilenet_v3_small", SMALL)
    fresh = _state(realistic_module(architecture, cache=False))
    realistic_module(architecture, cache_directory=tmp_path)
    (entry,) = (tmp_path / "batch_norm").iterdir()
    whole = entry.read_bytes()
    if damage == "torn":  # a write cut short
        entry.write_bytes(whole[: len(whole) // 2])
    elif damage == "foreign":  # a copied file: V3-Small without SE has the same batch norms
        other = realistic_module(NO_SE, cache=False)
        activations.store_statistics(other, entry, activations.statistics_key(other, 96, 0))
    else:  # a NaN written with its checksum: only the finiteness check can tell
        saved = torch.load(io.BytesIO(unseal(activations._MAGIC, whole)), weights_only=True)
        statistics = saved["statistics"]
        first = next(name for name in statistics if name.endswith("running_var"))
        statistics[first] = torch.full_like(statistics[first], float("nan"))
        buffer = io.BytesIO()
        torch.save(saved, buffer)
        entry.write_bytes(seal(activations._MAGIC, buffer.getvalue()))

    rebuilt = realistic_module(architecture, cache_directory=tmp_path)
    assert _same(_state(rebuilt), fresh)
    assert entry.read_bytes() == whole  # rewritten whole


def test_a_statistics_cache_that_cannot_be_written_costs_only_time(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory would go")
    architecture = resolve_architecture("mobilenet_v3_small", SMALL)
    model = realistic_module(architecture, cache_directory=blocked)
    assert _same(_state(model), _state(realistic_module(architecture, cache=False)))
    assert blocked.read_text() == "a file where the cache directory would go"


# ---------------------------------------------------------------------------------------------
# Batch norms folded before export (no runtime needed)


class OwnForward(nn.Sequential):
    """A Sequential whose forward does not feed the convolution into the batch norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[1](x) + self[0](x)


def test_export_copy_folds_each_conv_batch_norm_pair_and_leaves_the_caller_alone() -> None:
    model = realistic_module(resolve_architecture("mobilenet_v3_small", SMALL))
    norms = sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())
    before = module_fingerprint(model)
    x = images(SMALL["resolution"])

    folded, example = exporting.export_copy(model, x)

    assert norms == 34  # V3-Small: 34 conv + batch norm layers, all in plain Sequentials
    assert not any(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    assert module_fingerprint(model) == before  # the caller's module is untouched
    with torch.no_grad():
        reference, output = model(x), folded(example)
    assert torch.allclose(output, reference, rtol=1e-4, atol=1e-5 * reference.abs().max())


def test_only_batch_norms_fed_straight_by_a_convolution_are_folded() -> None:
    def pair() -> list[nn.Module]:
        torch.manual_seed(0)
        conv, norm = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        reestimated = nn.Sequential(conv, norm)
        reestimate_batch_norm(reestimated, 8)
        return [conv, norm]

    own_forward = OwnForward(*pair())
    norm_first = nn.Sequential(nn.BatchNorm2d(3), pair()[0])  # a norm, then a conv
    training = nn.Sequential(*pair()).train()
    plain = nn.Sequential(*pair())
    model = nn.Sequential(own_forward, norm_first, training, plain).eval()
    training.train()

    assert exporting.fold_batch_norms(model) == 1
    assert isinstance(plain[1], nn.Identity) and plain[0].bias is not None
    assert isinstance(own_forward[1], nn.BatchNorm2d)
    assert isinstance(norm_first[0], nn.BatchNorm2d)
    assert isinstance(training[1], nn.BatchNorm2d)


# ---------------------------------------------------------------------------------------------
# Provenance shared, not copied, while exporting (no runtime needed)


def _provenance() -> list[Any]:
    """A node's provenance chain as torch.fx records it: a record of a record."""
    from torch.fx.traceback import NodeSource

    graph = torch.fx.Graph()
    first = graph.placeholder("x")
    second = graph.call_function(torch.relu, (first,))
    first.meta["from_node"] = [NodeSource(None, "trace")]
    second.meta["from_node"] = [NodeSource(first, "a pass")]
    return second.meta["from_node"]


def test_provenance_is_shared_inside_and_copied_again_outside() -> None:
    import copy

    chain = _provenance()
    assert copy.deepcopy(chain)[0] is not chain[0]
    with exporting.shared_provenance():
        copied = copy.deepcopy(chain)
        assert copied is not chain  # the list is still new: a pass may extend it
        assert copied[0] is chain[0] and copied[0].from_node[0] is chain[0].from_node[0]
    assert copy.deepcopy(chain)[0] is not chain[0]
    assert copy.deepcopy(chain) == chain  # equal by content either way


def test_provenance_sharing_nests_and_survives_an_exception() -> None:
    import copy

    from torch.fx.traceback import NodeSource

    chain = _provenance()
    with pytest.raises(RuntimeError, match="export failed"), exporting.shared_provenance():
        with exporting.shared_provenance():
            pass
        assert copy.deepcopy(chain)[0] is chain[0]  # the inner exit left it to the outer
        raise RuntimeError("export failed")
    assert "__deepcopy__" not in vars(NodeSource)
    assert copy.deepcopy(chain)[0] is not chain[0]


# ---------------------------------------------------------------------------------------------
# Availability: one line naming the extra, before any work


@pytest.mark.parametrize(
    ("backend", "module", "extra"),
    [
        ("executorch", "executorch", "executorch"),
        ("litert", "litert_torch", "litert"),
        ("litert", "ai_edge_litert", "litert"),
    ],
)
def test_missing_runtime_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, backend: str, module: str, extra: str
) -> None:
    # Only `module` is absent, whatever this environment has.
    monkeypatch.setattr(backends, "module_available", lambda name: name != module)
    with pytest.raises(MissingDependencyError) as raised:
        backends.check_backend_available(backend)
    message = str(raised.value)
    assert "\n" not in message
    assert f"pip install 'ablate[{extra}]'" in message
    assert repr(module) in message
    # The factory fails the same way, before exporting anything.
    with pytest.raises(MissingDependencyError):
        BACKENDS.get(backend).factory(tiny(), images(32), threads=1, device="cpu")


def test_a_module_blocked_in_sys_modules_counts_as_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backends.module_available("json")
    monkeypatch.setitem(sys.modules, "json", None)
    assert not backends.module_available("json")
    assert not backends.module_available("surely_no_such_module_here")


def test_availability_of_other_backends_and_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    backends.check_backend_available("eager")
    with pytest.raises(UnknownNameError, match="valid: eager, torchscript"):
        backends.check_backend_available("tflite")
    with pytest.raises(BackendUnavailableError, match="measures fp32 only"):
        backends.check_backend_available("eager", "int8")
    with pytest.raises(BackendUnavailableError, match="valid: fp32, int8"):
        backends.check_backend_available("executorch", "fp16")
    # None in sys.modules makes the import fail, as for a package that is not installed.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"ablate\[onnx\]"):
        backends.check_backend_available("onnxruntime")


def test_mobile_backends_are_registered_with_their_descriptors() -> None:
    mobile = {name for name in BACKENDS.names() if BACKENDS.get(name).mobile}
    assert mobile == {"executorch", "litert"}
    pte, tflite = BACKENDS.get("executorch"), BACKENDS.get("litert")
    assert pte.precisions == tflite.precisions == ("fp32", "int8")
    assert (pte.extra, tflite.extra) == ("executorch", "litert")
    assert pte.distributions == ("executorch", "torchao")
    assert tflite.distributions == ("litert-torch", "ai-edge-litert", "torchao")
    assert pte.program is not None and tflite.program is not None
    assert (pte.program.suffix, tflite.program.suffix) == (".pte", ".tflite")
    assert pte.program.export is executorch.export_executorch
    assert tflite.program.export is litert.export_litert
    assert pte.program.binary.startswith("executor_runner")
    assert tflite.program.binary.startswith("benchmark_model")
    assert "--model_path={model} --num_executions={runs}" in pte.program.arguments
    assert "--graph={model}" in tflite.program.arguments and "{runs}" in tflite.program.arguments
    assert pte.delegate == tflite.delegate == "XNNPACK"
    assert pte.profiler is not None and pte.profiler.op_times is executorch.executorch_op_times
    assert all(BACKENDS.get(name).fuses for name in mobile)
    # The in-process backends run no exported program of their own.
    assert not any(BACKENDS.get(name).mobile for name in ("eager", "onnxruntime"))
    assert backends.backends_offering("int8") == ["executorch", "litert"]


def test_the_registry_lists_backends_in_one_order_whichever_was_imported_first() -> None:
    import subprocess

    code = (
        "from ablate.measurement.runtimes import litert, executorch\n"
        "from ablate.measurement.backends import BACKENDS\n"
        "print(' '.join(BACKENDS.names()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == BACKENDS.names()
    assert done.stdout.split()[:6] == [
        "eager", "torchscript", "onnxruntime", "compile", "executorch", "litert"
    ]


def test_a_mobile_backend_needs_a_program_and_known_precisions() -> None:
    factory = BACKENDS.get("eager").factory
    with pytest.raises(ValueError, match="has no program"):
        backends.Backend("bare", factory, True, mobile=True)
    with pytest.raises(ValueError, match="precisions must be among"):
        backends.Backend("half", factory, True, precisions=("fp16",))


def test_checking_a_mobile_backend_prints_no_import_notices() -> None:
    """torchao logs a line per CUDA library it cannot load when first imported; the check
    before a run must not print into the progress display, so it imports none of them."""
    import subprocess

    _runtime("executorch")
    code = (
        "import sys; from ablate.measurement.backends import BACKENDS; "
        "BACKENDS.get('executorch').check_available('int8'); "
        "print('checked', 'torchao' in sys.modules, 'executorch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "checked False False\n"
    assert "Failed to load" not in done.stderr and "KernelPreference" not in done.stderr


# ---------------------------------------------------------------------------------------------
# A new runtime: one module in measurement/runtimes, found by the registry (no runtime needed)

STUB_RUNTIME = """\
\"\"\"A runtime as a new module of measurement/runtimes adds it: eager PyTorch, stub exporter.\"\"\"

from __future__ import annotations

from ablate.measurement.backends import Backend, ProgramFile, register
from ablate.measurement.export_cache import DelegationReport
from ablate.measurement.programs import MobileRunnable, exported


def export_stub(model, example_input, precision="fp32"):
    return b"stub program " + precision.encode(), DelegationReport("STUB", {"aten.linear": 1})


def stub_backend(
    model, example_input, *, threads, device, precision="fp32", cache_directory=None, cache=True
):
    import torch

    example, artifact = exported(
        STUB, model, example_input, device, precision, cache_directory, cache
    )

    def run():
        with torch.no_grad():
            return model(example)

    return MobileRunnable(run, artifact, STUB, precision)


STUB = register(
    Backend(
        "stub",
        stub_backend,
        fuses=True,
        precisions=("fp32", "int8"),
        modules=("json",),
        distributions=("pytest",),
        extra="stub",
        program=ProgramFile(".stub", export_stub, "stub_bench, from nowhere", "-m {model}"),
        mobile=True,
        delegate="STUB",
    )
)
"""

STUB_CHECKS = """\
import json, sys
from pathlib import Path

import ablate.measurement.runtimes as runtimes

runtimes.__path__.append(sys.argv[1])  # as if stub.py were a file of the package

import torch
from typer.testing import CliRunner

from ablate.cli import app
from ablate.measurement.backends import (
    BACKENDS, backends_offering, check_backend_available, prepare_runnable, recorded_distributions
)
from ablate.measurement.setup import MeasurementSetup
from ablate.services.bundle_export import export_bundle

WIDE = {"COLUMNS": "400"}  # one line per option
check_backend_available("stub", "int8")
model, images = torch.nn.Linear(3, 2).eval(), torch.ones(1, 3)
runnable = prepare_runnable(model, images, MeasurementSetup(backend="stub", precision="int8"))
record = runnable.record()
spec = Path(sys.argv[1]) / "spec.yaml"
spec.write_text("name: s\\nbase: mobilenet_v3_small\\nvariants: {a: {width: 0.35}}\\n")
manifest = export_bundle(spec, Path(sys.argv[1]) / "bundle", backend="stub", precision="int8")
print(json.dumps({
    "files": [unit["file"] for unit in json.loads(manifest.read_text())["units"]],
    "settings": (manifest.parent / "bundle.env").read_text().splitlines()[-2:],
    "names": BACKENDS.names(),
    "int8": backends_offering("int8"),
    "packages": recorded_distributions(),
    "output": runnable().tolist(),
    "expected": model(images).tolist(),
    "record": {key: record[key] for key in ("runtime", "precision", "program_bytes", "profiler")},
    "versions": sorted(record["versions"]),
    "delegate": record["delegation"]["delegate"],
    "bench_help": CliRunner().invoke(app, ["bench", "--help"], env=WIDE).output,
    "export_help": CliRunner().invoke(app, ["export", "--help"], env=WIDE).output,
}))
"""


@pytest.mark.slow
def test_a_runtime_is_one_module_the_registry_finds(tmp_path: Path) -> None:
    """Adding a file to measurement/runtimes is all it takes: registered after the others,
    checked, run, recorded, offered by the commands' help."""
    import json
    import os
    import subprocess

    (tmp_path / "stub.py").write_text(STUB_RUNTIME)
    environment = {**os.environ, "ABLATE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", STUB_CHECKS, str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # After every backend the package holds, whatever other runtimes it gains.
    assert seen["names"] == [*BACKENDS.names(), "stub"]
    assert seen["int8"] == [*backends.backends_offering("int8"), "stub"]
    assert seen["packages"][-1] == "pytest"
    assert seen["output"] == seen["expected"]
    assert seen["record"] == {
        "runtime": "stub",
        "precision": "int8",
        "program_bytes": len(b"stub program int8"),
        "profiler": None,
    }
    assert seen["versions"] == ["pytest", "torch"]
    assert seen["delegate"] == "STUB"
    assert f"{' | '.join(seen['names'])}." in seen["bench_help"]
    assert f"(static PT2E; {', '.join(seen['int8'])} only)" in seen["bench_help"]
    assert "compile | executorch | litert" in seen["bench_help"]
    assert "| stub (.stub)." in seen["export_help"]
    assert "onnxruntime (.onnx) | executorch (.pte) | litert (.tflite) |" in seen["export_help"]
    # The Linear's program and the bundle's network's, both through the export cache.
    assert len(list((tmp_path / "cache" / "exports").glob("stub-int8-*.export"))) == 2
    # `ablate export` writes its program files, and the driver's binary and flags, from it.
    assert seen["files"] == ["models/v000.stub"]
    assert (tmp_path / "bundle" / "models" / "v000.stub").read_bytes() == b"stub program int8"
    assert seen["settings"] == [
        "BUNDLE_BINARY_HINT=stub_bench, from nowhere",
        "BUNDLE_BENCHMARK_ARGS=-m {model}",
    ]


# ---------------------------------------------------------------------------------------------
# The cache (no runtime needed: the exporter is a stand-in that counts its calls)


def _key(**changes: object) -> ExportKey:
    fields: dict[str, object] = {
        "runtime": "executorch",
        "versions": (("executorch", "1.5.1"), ("torch", "2.13.0")),
        "precision": "fp32",
        "input_shape": (1, 3, 32, 32),
        "model_hash": module_fingerprint(tiny()),
        "ablate_version": "0.1.0",
        "recipe": 1,
    }
    fields.update(changes)
    return ExportKey(**fields)  # type: ignore[arg-type]


class CountingExporter:
    def __init__(self, program: bytes = b"program-bytes") -> None:
        self.calls = 0
        self.program = program

    def __call__(self) -> tuple[bytes, DelegationReport]:
        self.calls += 1
        return self.program, DelegationReport("XNNPACK", {"aten.convolution": 3}, {"x": 1})


def test_cache_hit_returns_the_stored_program_and_its_export_time(tmp_path: Path) -> None:
    exporter = CountingExporter()
    first = cached_export(_key(), exporter, directory=tmp_path)
    second = cached_export(_key(), exporter, directory=tmp_path)
    assert exporter.calls == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.program == b"program-bytes"
    assert second.delegation == first.delegation
    assert second.delegation.flagged
    assert second.export_seconds == first.export_seconds  # the export's, not the read's
    assert first.path == second.path
    assert first.path is not None and first.path.parent == tmp_path / "exports"


@pytest.mark.parametrize(
    "change",
    [
        {"versions": (("executorch", "1.6.0"), ("torch", "2.13.0"))},
        {"ablate_version": "0.2.0"},
        {"precision": "int8"},
        {"input_shape": (1, 3, 64, 64)},
        {"recipe": 2},
        {"model_hash": module_fingerprint(tiny(seed=1))},
    ],
)
def test_cache_misses_when_anything_in_the_key_changes(
    tmp_path: Path, change: dict[str, object]
) -> None:
    exporter = CountingExporter()
    cached_export(_key(), exporter, directory=tmp_path)
    again = cached_export(_key(**change), exporter, directory=tmp_path)
    assert exporter.calls == 2
    assert not again.cached


def test_an_entry_read_under_another_key_is_a_miss(tmp_path: Path) -> None:
    exporter = CountingExporter()
    stored = cached_export(_key(), exporter, directory=tmp_path)
    assert stored.path is not None
    # Same file, a key that differs: e.g. a hand-copied entry, or a digest collision.
    assert read_entry(stored.path, _key(ablate_version="9")) is None
    assert read_entry(stored.path, _key()) is not None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_corrupt_entry_is_rebuilt(tmp_path: Path, damage: str) -> None:
    exporter = CountingExporter(program=bytes(range(256)) * 4)
    stored = cached_export(_key(), exporter, directory=tmp_path)
    assert stored.path is not None
    data = bytearray(stored.path.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    elif damage == "flip":
        data[-1] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(b"not an export at all")
    else:
        data = bytearray()
    stored.path.write_bytes(bytes(data))
    rebuilt = cached_export(_key(), exporter, directory=tmp_path)
    assert exporter.calls == 2
    assert not rebuilt.cached
    assert rebuilt.program == exporter.program
    assert cached_export(_key(), exporter, directory=tmp_path).cached  # and stored again


@pytest.mark.parametrize(
    ("damage", "present"),
    [("none", True), ("flip", True), ("truncate", False), ("header", False), ("empty", False)],
)
def test_an_entry_is_judged_present_from_its_header_alone(
    tmp_path: Path, damage: str, present: bool
) -> None:
    exporter = CountingExporter(program=bytes(range(256)) * 4)
    stored = cached_export(_key(), exporter, directory=tmp_path)
    assert stored.path is not None
    data = bytearray(stored.path.read_bytes())
    if damage == "flip":  # the program's last byte: only its checksum can tell
        data[-1] ^= 0xFF
    elif damage == "truncate":
        data = data[:-1]
    elif damage == "header":  # the header's JSON cut mid-way
        data = data[:20]
    elif damage == "empty":
        data = bytearray()
    stored.path.write_bytes(bytes(data))
    assert has_entry(stored.path, _key()) is present
    assert not has_entry(stored.path, _key(ablate_version="9"))
    assert not has_entry(tmp_path / "absent.export", _key())
    # What is loaded is checked in full: a flipped program byte is a miss there, and rebuilt.
    assert (read_entry(stored.path, _key()) is not None) is (damage == "none")


def test_disabled_cache_always_exports_and_writes_nothing(tmp_path: Path) -> None:
    exporter = CountingExporter()
    for _ in range(2):
        artifact = cached_export(_key(), exporter, directory=tmp_path, enabled=False)
        assert artifact.path is None
    assert exporter.calls == 2
    assert not (tmp_path / "exports").exists()


def test_cache_directory_follows_the_calibration_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path))
    artifact = cached_export(_key(), CountingExporter())
    assert artifact.path is not None and artifact.path.parent == tmp_path / "exports"
    leftovers = [path.name for path in (tmp_path / "exports").iterdir()]
    # The entry and its lock file; no temporary file is left behind.
    assert sorted(leftovers) == sorted([artifact.path.name, artifact.path.name + ".lock"])


def test_fingerprint_covers_weights_buffers_and_structure() -> None:
    base = module_fingerprint(tiny(seed=0))
    assert module_fingerprint(tiny(seed=0)) == base
    assert module_fingerprint(tiny(seed=1)) != base  # other random weights
    other_statistics = tiny(seed=0)
    reestimate_batch_norm(other_statistics, 32, seed=5)
    assert module_fingerprint(other_statistics) != base  # buffers count
    no_residual = tiny(seed=0)
    no_residual.block.residual = False  # same tensors, other computation
    assert module_fingerprint(no_residual) != base
    assert module_fingerprint(tiny(seed=0, cumsum=True)) != base


def _adds(passes: int) -> Any:
    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        for _ in range(passes):
            output = output + 0.0
        return output

    return hook


def test_fingerprint_covers_forward_hooks() -> None:
    """A benchmark's hook changes the exported graph: it must not hit the plain model's entry."""
    base = module_fingerprint(tiny(seed=0))
    hooked = tiny(seed=0)
    hooked.stem.register_forward_hook(_adds(3))
    assert module_fingerprint(hooked) != base
    again = tiny(seed=0)
    again.stem.register_forward_hook(_adds(3))
    assert module_fingerprint(again) == module_fingerprint(hooked)
    more = tiny(seed=0)
    more.stem.register_forward_hook(_adds(4))  # same code, other closure value
    assert module_fingerprint(more) != module_fingerprint(hooked)


def test_delegation_report_summary_and_round_trip() -> None:
    clean = DelegationReport("XNNPACK", {"aten.convolution": 3, "aten.add.Tensor": 1})
    assert not clean.flagged
    assert clean.summary() == "all 4 ops in XNNPACK"
    mixed = DelegationReport(
        "XNNPACK", {"aten.convolution": 3}, {"aten.cumsum": 1}, {"aten.hardswish": 2}
    )
    assert mixed.flagged
    assert mixed.summary() == (
        "3 ops in XNNPACK; outside XNNPACK: aten.cumsum x1; "
        "fp32 in an int8 program: aten.hardswish x2"
    )
    assert DelegationReport.from_dict(mixed.to_dict()) == mixed
    assert mixed.to_dict()["flagged"] is True


def _graph_module(ops: list[str], lowered: dict[str, tuple[str, list[str]]]) -> Any:
    """A lowered edge graph as `executorch_delegation` reads it: the ops left in the graph,
    and per lowered module its backend id and the ops it took."""
    from types import SimpleNamespace

    def nodes(names: list[str]) -> Any:
        called = [
            SimpleNamespace(op="call_function", name=name, target=SimpleNamespace(__name__=name))
            for name in names
        ]
        return SimpleNamespace(nodes=[SimpleNamespace(op="placeholder", name="x"), *called])

    graph = nodes(ops)
    module = SimpleNamespace(graph=graph)
    for attribute, (backend_id, inner) in lowered.items():
        graph.nodes.append(SimpleNamespace(op="get_attr", name=attribute, target=attribute))
        lowered_module = SimpleNamespace(
            backend_id=backend_id, original_module=SimpleNamespace(graph=nodes(inner))
        )
        setattr(module, attribute, lowered_module)
    return module


def test_executorch_names_the_delegate_its_program_was_lowered_to() -> None:
    xnnpack = _graph_module(
        ["executorch_call_delegate", "getitem", "aten.cumsum.default"],
        {"lowered_module_0": ("XnnpackBackend", ["aten.convolution.default", "aten.add.Tensor"])},
    )
    report = executorch.executorch_delegation(xnnpack)
    assert report.delegate == "XNNPACK"
    assert report.delegated == {"aten.convolution": 1, "aten.add.Tensor": 1}
    assert report.outside == {"aten.cumsum": 1}
    two = _graph_module(
        [],
        {
            "lowered_module_0": ("XnnpackBackend", ["aten.convolution.default"]),
            "lowered_module_1": ("VulkanBackend", ["aten.mean.dim"]),
        },
    )
    assert executorch.executorch_delegation(two).delegate == "VULKAN + XNNPACK"
    # Nothing lowered: the program cannot say, the runtime's descriptor does.
    nothing = executorch.executorch_delegation(_graph_module(["aten.cumsum.default"], {}))
    assert nothing.delegate == BACKENDS.get("executorch").delegate == "XNNPACK"
    assert nothing.delegated == {} and nothing.flagged


def test_a_runtime_profile_gives_each_kernel_its_share_slowest_first() -> None:
    gemm = OpTime("Fully Connected (NC, F32) GEMM", 3.0, 10, True)
    add = OpTime("Add (ND)", 0.5, 4, True)
    copy = OpTime("_to_dim_order_copy.out", 0.5, 2, False)
    profile = runtime_profile_entry([add, copy, gemm], profiler="ETDump", runs=5)
    assert profile is not None
    assert [(op.name, op.share, op.instances) for op in profile.ops] == [
        ("Fully Connected (NC, F32) GEMM", 0.75, 10),
        ("Add (ND)", 0.125, 4),  # ties: by name
        ("_to_dim_order_copy.out", 0.125, 2),
    ]
    assert profile.outside_share == 0.125
    assert [op.label for op in profile.ops][2] == "_to_dim_order_copy.out (outside the delegate)"
    # A trace without op times (a runtime built without its profiler's events) is no profile.
    assert runtime_profile_entry([], profiler="ETDump", runs=5) is None
    idle = OpTime("Add (ND)", 0.0, 1, True)
    assert runtime_profile_entry([idle], profiler="ETDump", runs=5) is None


def test_a_runtime_without_a_profiler_profiles_nothing_and_exports_nothing(
    tmp_path: Path,
) -> None:
    assert BACKENDS.get("litert").profiler is None
    profiler = BACKENDS.get("executorch").profiler
    assert profiler is not None and profiler.name == "ETDump"
    times = programs.runtime_op_times(
        BACKENDS.get("litert"), tiny(), images(32), runs=1, cache_directory=tmp_path
    )
    assert times is None
    assert not list(tmp_path.iterdir())


def test_litert_delegation_walks_each_partition_back_to_its_inputs() -> None:
    float32, int8 = np.float32, np.int8
    # tensor 0 -> CONV(1) -> ADD(2) -> CUMSUM(3) -> FC(4); one delegate covers CONV and ADD,
    # another FC; CUMSUM stays outside.
    ops = [
        {
            "index": 0,
            "op_name": "CONV_2D",
            "inputs": [0, 10],
            "outputs": [1],
            "result_types": [float32],
        },
        {"index": 1, "op_name": "ADD", "inputs": [1, 0], "outputs": [2], "result_types": [float32]},
        {
            "index": 2,
            "op_name": "CUMSUM",
            "inputs": [2, 11],
            "outputs": [3],
            "result_types": [float32],
        },
        {
            "index": 3,
            "op_name": "FULLY_CONNECTED",
            "inputs": [3, 12],
            "outputs": [4],
            "result_types": [float32],
        },
        {"index": 4, "op_name": "DELEGATE", "inputs": [0, 10], "outputs": [2]},
        {"index": 5, "op_name": "DELEGATE", "inputs": [3, 12], "outputs": [4]},
    ]
    report = litert.litert_delegation(ops)
    assert report.delegated == {"CONV_2D": 1, "ADD": 1, "FULLY_CONNECTED": 1}
    assert report.outside == {"CUMSUM": 1}
    assert report.fp32 == {}  # an fp32 program: nothing to flag as fp32
    quantized = [
        {"index": 0, "op_name": "QUANTIZE", "inputs": [0], "outputs": [1], "result_types": [int8]},
        {
            "index": 1,
            "op_name": "CONV_2D",
            "inputs": [1, 9],
            "outputs": [2],
            "result_types": [int8],
        },
        {
            "index": 2,
            "op_name": "DEQUANTIZE",
            "inputs": [2],
            "outputs": [3],
            "result_types": [float32],
        },
        {"index": 3, "op_name": "MUL", "inputs": [3, 3], "outputs": [4], "result_types": [float32]},
        {"index": 4, "op_name": "DELEGATE", "inputs": [0, 9], "outputs": [3]},
    ]
    report = litert.litert_delegation(quantized)
    assert report.delegated == {"QUANTIZE": 1, "CONV_2D": 1, "DEQUANTIZE": 1}
    assert report.outside == {"MUL": 1}
    assert report.fp32 == {"MUL": 1}


# ---------------------------------------------------------------------------------------------
# Export + run + numerics, per runtime and precision (skipped without the runtime)

BACKEND_PRECISIONS = [
    ("executorch", "fp32"),
    ("executorch", "int8"),
    ("litert", "fp32"),
    ("litert", "int8"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "precision"), BACKEND_PRECISIONS)
def test_small_variant_exports_runs_and_matches_eager(
    backend: str, precision: str, shared_cache: Path
) -> None:
    _runtime(backend)
    model = small_variant()
    x = images(SMALL["resolution"])
    runnable = BACKENDS.get(backend).factory(
        model, x, threads=1, device="cpu", precision=precision, cache_directory=shared_cache
    )
    with torch.no_grad():
        expected = model(x).numpy()
    got = output_array(runnable())
    assert got.shape == expected.shape == (1, 1000)
    scale = float(np.abs(expected).max())
    assert scale > 1e-3  # realistic activations: the comparison means something
    difference = float(np.abs(got - expected).max())
    if precision == "fp32":
        assert difference < 1e-4 * max(scale, 1.0)
    else:
        assert difference < 0.3 * scale  # int8: a few quantization steps of the logits
    # Top-1 must agree wherever the eager margin between the two best logits exceeds twice the
    # error; random-weight logits can be nearly tied, and then int8 may swap them: the eager
    # winner must still be among the runtime's top 5.
    best, second = np.sort(expected[0])[-2:][::-1]
    if best - second > 2 * difference:
        assert int(got.argmax()) == int(expected.argmax())
    else:
        assert int(expected.argmax()) in np.argsort(got[0])[-5:]
    assert runnable.precision == precision
    assert runnable.export_seconds > 0
    assert runnable.versions["torch"] == torch.__version__
    record = runnable.record()
    assert record["precision"] == precision and record["runtime"] == backend
    assert record["profiler"] == {"executorch": "ETDump", "litert": None}[backend]
    assert record["delegation"]["flagged"] == runnable.delegation.flagged

    report = runnable.delegation
    if backend == "executorch":
        # V3-Small has 9 SE blocks; each leaves two layout copies outside the delegate.
        assert report.outside == {"dim_order_ops._to_dim_order_copy": 18}
        assert report.delegated["aten.convolution"] == 52
    else:
        assert report.delegated["CONV_2D"] + report.delegated["DEPTHWISE_CONV_2D"] == 52
    if precision == "fp32":
        assert report.fp32 == {}
        if backend == "litert":
            assert not report.flagged  # LiteRT delegates a whole fp32 MobileNet
    else:
        assert report.flagged and report.fp32  # the SE gates and h-swish stay fp32

    # The same module again: read from the cache, same program, same outputs.
    again = BACKENDS.get(backend).factory(
        model, x, threads=1, device="cpu", precision=precision, cache_directory=shared_cache
    )
    assert again.artifact.cached
    assert again.artifact.program == runnable.artifact.program
    np.testing.assert_array_equal(output_array(again()), got)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["executorch", "litert"])
def test_non_delegable_op_is_reported_outside_the_delegate(
    backend: str, shared_cache: Path
) -> None:
    _runtime(backend)
    model = tiny(cumsum=True)
    x = images(32)
    runnable = BACKENDS.get(backend).factory(
        model, x, threads=1, device="cpu", cache_directory=shared_cache
    )
    report = runnable.delegation
    assert report.flagged and report.delegate == "XNNPACK"
    outside = {name.lower() for name in report.outside}
    assert any("cumsum" in name for name in outside), report.outside
    assert not any("conv" in name for name in outside)  # the convs are still delegated
    with torch.no_grad():
        np.testing.assert_allclose(output_array(runnable()), model(x).numpy(), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["executorch", "litert"])
def test_export_version_change_invalidates_the_real_cache(
    backend: str, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runtime(backend)
    model, x = tiny(), images(32)
    first = BACKENDS.get(backend).factory(
        model, x, threads=1, device="cpu", cache_directory=shared_cache
    )
    hit = BACKENDS.get(backend).factory(
        model, x, threads=1, device="cpu", cache_directory=shared_cache
    )
    assert hit.artifact.cached and hit.artifact.path == first.artifact.path
    monkeypatch.setattr(programs.ablate, "__version__", "999.0")
    rebuilt = BACKENDS.get(backend).factory(
        model, x, threads=1, device="cpu", cache_directory=shared_cache
    )
    assert not rebuilt.artifact.cached
    assert rebuilt.artifact.path != first.artifact.path


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "precision"), BACKEND_PRECISIONS)
def test_shared_provenance_exports_the_same_program_byte_for_byte(
    backend: str, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sharing is only a speed-up: with torch's own deep copies the program is the same."""
    _runtime(backend)
    program = BACKENDS.get(backend).program
    assert program is not None
    exporter = program.export
    model, x = exporting.export_copy(tiny(), images(32))
    shared, shared_report = exporter(model, x, precision)
    runtime_module = sys.modules[exporter.__module__]
    monkeypatch.setattr(runtime_module, "shared_provenance", contextlib.nullcontext)
    copied, copied_report = exporter(model, x, precision)
    assert shared == copied
    assert shared_report == copied_report


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_lowering_without_the_edge_ir_check_makes_the_same_program(
    precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XNNPACK's own compile config skips re-verifying the IR: a speed-up, not a change."""
    _runtime("executorch")
    from executorch.backends import xnnpack
    from executorch.exir import EdgeCompileConfig

    model, x = exporting.export_copy(tiny(), images(32))
    unchecked, unchecked_report = executorch.export_executorch(model, x, precision)
    configs: list[EdgeCompileConfig] = []

    def checked() -> EdgeCompileConfig:
        configs.append(EdgeCompileConfig(_check_ir_validity=True))
        return configs[-1]

    monkeypatch.setattr(xnnpack, "get_xnnpack_edge_compile_config", checked)
    program, report = executorch.export_executorch(model, x, precision)
    assert len(configs) == 1  # the export took its config from there, checked this time
    assert program == unchecked
    assert report == unchecked_report


@pytest.mark.slow
def test_executorch_per_op_times_name_xnnpack_operators(shared_cache: Path) -> None:
    _runtime("executorch")
    model, x = tiny(cumsum=True), images(32)
    runnable = BACKENDS.get("executorch").factory(
        model, x, threads=1, device="cpu", cache_directory=shared_cache
    )
    times = {
        (op.name, op.delegated): op
        for op in executorch.executorch_op_times(runnable.artifact.program, x, runs=5)
    }
    assert all(op.milliseconds >= 0 for op in times.values())
    assert times[("cumsum.out", False)].instances == 1  # the portable kernel, outside
    # 6 convs and the classifier: XNNPACK runs the 1x1 ones (and the linear) as GEMMs.
    weighted = [
        op.instances
        for (name, delegated), op in times.items()
        if delegated and name.startswith(("Convolution", "Fully Connected"))
    ]
    assert sum(weighted) == 7
    assert not any(name.startswith("Method::") for name, _ in times)


@pytest.mark.slow  # 9 s: times a program at two thread counts
def test_executorch_uses_the_setup_thread_count(shared_cache: Path) -> None:
    _runtime("executorch")
    from executorch.extension.pybindings import portable_lib

    BACKENDS.get("executorch").factory(
        tiny(), images(32), threads=1, device="cpu", cache_directory=shared_cache
    )
    assert portable_lib._threadpool_get_thread_count() == 1


def test_mobile_backends_refuse_cuda(shared_cache: Path) -> None:
    for backend in ("executorch", "litert"):
        if not all(backends.module_available(m) for m in BACKENDS.get(backend).modules):
            continue
        with pytest.raises(BackendUnavailableError, match="cpu only"):
            BACKENDS.get(backend).factory(tiny(), images(32), threads=1, device="cuda")


# ---------------------------------------------------------------------------------------------
# Exporting ahead in worker processes


class KilledInAWorker(TinyMobileNet):
    """Exports normally in the main process; a pool worker that traces it is SIGKILLed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import multiprocessing
        import os
        import signal

        if multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


def _executorch_pool(workers: int, directory: Path) -> export_pool.ExportPool:
    return export_pool.ExportPool(
        BACKENDS.get("executorch"), "fp32", workers, cache_directory=directory
    )


@pytest.mark.slow
def test_export_pool_fills_the_cache_in_workers(tmp_path: Path) -> None:
    _runtime("executorch")
    models, x = [tiny(seed=0), tiny(seed=1)], images(32)
    with _executorch_pool(2, tmp_path) as pool:
        for model in models:
            pool.submit(model, x)
        seen: list[tuple[int, int]] = []
        pool.wait(lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)] and pool.failed == 0
    assert len(pool.exported) == 2 and all(seconds > 0 for seconds in pool.exported.values())
    for model in models:
        runnable = BACKENDS.get("executorch").factory(
            model, x, threads=1, device="cpu", cache_directory=tmp_path
        )
        assert runnable.artifact.cached and pool.made_now(runnable.artifact)
        with torch.no_grad():
            np.testing.assert_allclose(output_array(runnable()), model(x).numpy(), atol=1e-4)

    with _executorch_pool(2, tmp_path) as again:
        again.submit(models[0], x)  # already cached: nothing to export
        again.wait()
    assert again.exported == {} and again.failed == 0


@pytest.mark.slow
def test_a_killed_export_worker_leaves_the_export_to_the_runnable(tmp_path: Path) -> None:
    _runtime("executorch")
    torch.manual_seed(0)
    model, x = KilledInAWorker().eval(), images(32)
    reestimate_batch_norm(model, 32, seed=0)
    with _executorch_pool(1, tmp_path) as pool:
        pool.submit(model, x)
        pool.wait()
    assert pool.failed == 1 and pool.exported == {}
    assert not list((tmp_path / "exports").glob("*.export"))
    runnable = BACKENDS.get("executorch").factory(
        model, x, threads=1, device="cpu", cache_directory=tmp_path
    )
    assert not runnable.artifact.cached and not pool.made_now(runnable.artifact)
    with torch.no_grad():
        np.testing.assert_allclose(output_array(runnable()), model(x).numpy(), atol=1e-4)


@pytest.mark.slow  # several seconds: CI runs it, daily work need not
def test_a_cache_hit_copies_and_folds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is the caller's module's: a hit reads the program without an export copy."""
    _runtime("executorch")
    model, x = tiny(seed=0), images(32)
    first = programs.export_program(BACKENDS.get("executorch"), model, x, cache_directory=tmp_path)

    def no_copy(*_: object) -> None:
        raise AssertionError("a cache hit made an export copy")

    monkeypatch.setattr(programs, "export_copy", no_copy)
    monkeypatch.setattr(export_pool, "export_copy", no_copy)
    again = programs.export_program(BACKENDS.get("executorch"), model, x, cache_directory=tmp_path)
    assert (first.cached, again.cached) == (False, True)
    assert again.program == first.program
    with _executorch_pool(2, tmp_path) as pool:
        pool.submit(model, x)
        pool.wait()
    assert pool.exported == {}


def test_export_workers_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLATE_EXPORT_WORKERS", "3")
    assert export_pool.export_workers() == 3
    for ignored in ("0", "many", ""):
        monkeypatch.setenv("ABLATE_EXPORT_WORKERS", ignored)
        assert export_pool.export_workers() >= 1


TWO_SMALL_VARIANTS = """\
name: two-small
base: mobilenet_v3_small
input: {resolution: 96}
measure: {settle_s: 0, budget_s: 2, warmup_s: 0.1, min_rounds: 6, max_rounds: 12}
baseline: se
variants:
  se: {width: 0.35}
  no_se: {width: 0.35, se: false}
"""


@pytest.mark.slow
def test_a_run_exports_ahead_and_a_rerun_reads_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runtime("executorch")
    from typer.testing import CliRunner

    from ablate.cli import app
    from ablate.runs.schema import load_results

    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ABLATE_EXPORT_WORKERS", "2")
    spec = tmp_path / "two.yaml"
    spec.write_text(TWO_SMALL_VARIANTS)

    def run(out: str) -> tuple[Any, str]:
        arguments = ["run", str(spec), "--quick", "--backend", "executorch", "--out", out]
        result = CliRunner().invoke(app, arguments)
        assert result.exit_code == 0, result.output
        # The console wraps long lines: compare the words.
        return load_results(Path(result.output.strip().splitlines()[-1])), " ".join(
            result.output.split()
        )

    first, output = run(str(tmp_path / "first"))
    assert "0 from the export cache, 2 export processes" in output
    assert [v.runtime.export_cached for v in first.variants] == [False, False]
    assert [v.runtime.profiler for v in first.variants] == ["ETDump", "ETDump"]
    assert all(v.runtime.export_seconds > 0 for v in first.variants)
    assert len(list((tmp_path / "cache" / "exports").glob("*.export"))) == 2
    second, output = run(str(tmp_path / "second"))
    assert "(0.0 s exporting, 2 from the export cache)" in output
    assert [v.runtime.export_cached for v in second.variants] == [True, True]
    assert [v.runtime.export_seconds for v in second.variants] == [
        v.runtime.export_seconds for v in first.variants
    ]
    # The profiling stage timed each program's kernels with ExecuTorch's own profiler, on the
    # program from the cache: still two exports in all.
    assert len(list((tmp_path / "cache" / "exports").glob("*.export"))) == 2
    for results in (first, second):
        se, no_se = (variant.runtime.profile for variant in results.variants)
        for profile in (se, no_se):
            assert profile.profiler == "ETDump"
            assert profile.runs == QUICK_PROFILE_RUNS
            assert sum(op.share for op in profile.ops) == pytest.approx(1.0)
            times = [op.milliseconds for op in profile.ops]
            assert times == sorted(times, reverse=True) and times[-1] >= 0
            assert any(op.delegated and op.name.startswith("Convolution") for op in profile.ops)
        # SE's two layout copies per block run outside XNNPACK and cost time there; without SE
        # everything runs inside.
        outside = {op.name for op in se.ops if not op.delegated}
        assert outside == {"_to_dim_order_copy.out"} and se.outside_share > 0
        assert no_se.outside_share == 0
