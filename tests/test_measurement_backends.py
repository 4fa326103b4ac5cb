"""Backends give eager's outputs; missing pieces fail with one line. No timing here."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from ablate.errors import (
    AblateError,
    BackendUnavailableError,
    MissingDependencyError,
    UnknownNameError,
)
from ablate.measurement.backends import (
    BACKENDS,
    output_array,
    prepare_runnable,
    recorded_distributions,
)
from ablate.measurement.host_backends import export_onnx
from ablate.measurement.setup import MeasurementSetup, configure_torch, example_input

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def tiny_model() -> nn.Module:
    """Conv + BN + h-swish (what TorchScript folds and fuses), a residual, pool, linear."""
    torch.manual_seed(0)

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.act = nn.Hardswish()
            self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.head = nn.Linear(8, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.act(self.bn(self.conv(x)))
            x = x + self.depthwise(x)
            return self.head(x.mean((2, 3)))

    model = Tiny().eval()
    with torch.no_grad():  # non-trivial statistics, so that folding BN is really tested
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model


def eager_reference(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(images).numpy()


def test_backends_are_registered():
    """The in-process backends first, then the runtimes that measurement/runtimes holds."""
    names = BACKENDS.names()
    assert names[:6] == ["eager", "torchscript", "onnxruntime", "compile", "executorch", "litert"]
    assert all(BACKENDS.get(name).mobile for name in names[4:])
    assert not any(BACKENDS.get(name).mobile for name in names[:4])
    assert recorded_distributions()[:6] == (
        "onnx", "onnxruntime", "executorch", "torchao", "litert-torch", "ai-edge-litert"
    )


def test_the_onnx_program_is_what_the_onnxruntime_backend_runs():
    pytest.importorskip("onnx")
    program = BACKENDS.get("onnxruntime").program
    assert program is not None and program.suffix == ".onnx"
    model, images = tiny_model(), torch.randn(1, 3, 16, 16)
    data, delegation = program.export(model, images, "fp32")
    assert delegation is None and data == export_onnx(model, images)
    assert program.arguments == "-m times -r {runs} -x 1 -y 1 -e cpu {model}"


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("backend", ["eager", "torchscript", "onnxruntime"])
def test_backend_matches_eager(backend: str, channels_last: bool):
    if backend == "onnxruntime":
        # The optional extra `ablate[onnx]`; CI installs it, a bare test install skips.
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    setup = MeasurementSetup(backend=backend, channels_last=channels_last)
    configure_torch(setup)
    images = example_input(setup, 16)
    reference = eager_reference(tiny_model(), images)
    run = prepare_runnable(tiny_model(), images, setup)
    np.testing.assert_allclose(output_array(run()), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compile_backend_matches_eager():
    setup = MeasurementSetup(backend="compile")
    configure_torch(setup)
    images = example_input(setup, 16)
    try:
        run = prepare_runnable(tiny_model(), images, setup)
    except BackendUnavailableError as error:  # e.g. no C compiler on this machine
        pytest.skip(str(error))
    np.testing.assert_allclose(
        output_array(run()), eager_reference(tiny_model(), images), rtol=1e-4, atol=1e-5
    )


def test_compile_failure_is_one_clear_line(monkeypatch: pytest.MonkeyPatch):
    def failing_compile(model: nn.Module, **options: object):
        def compiled(images: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    setup = MeasurementSetup(backend="compile")
    with pytest.raises(BackendUnavailableError) as caught:
        prepare_runnable(tiny_model(), example_input(setup, 16), setup)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("backend 'compile' could not compile here: InvalidCxxCompiler")


@pytest.mark.parametrize("module", ["onnxruntime", "onnx"])
def test_missing_onnx_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch, module: str):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    setup = MeasurementSetup(backend="onnxruntime")
    with pytest.raises(MissingDependencyError) as caught:
        prepare_runnable(tiny_model(), example_input(setup, 16), setup)
    assert isinstance(caught.value, AblateError)
    assert f"'{module}'" in str(caught.value)
    assert "pip install 'ablate[onnx]'" in str(caught.value)


def test_unknown_backend_lists_the_valid_ones():
    setup = MeasurementSetup(backend="tensorrt")
    with pytest.raises(UnknownNameError, match="unknown backend 'tensorrt'; valid: eager, "):
        prepare_runnable(tiny_model(), example_input(MeasurementSetup(), 16), setup)


def test_configure_torch_fixes_threads():
    before = torch.get_num_threads()
    try:
        configure_torch(MeasurementSetup(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_example_input_follows_the_setup():
    images = example_input(MeasurementSetup(batch=2, channels_last=True), 32)
    assert images.shape == (2, 3, 32, 32)
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(images, example_input(MeasurementSetup(batch=2, channels_last=True), 32))


def test_invalid_setup_is_a_one_line_error():
    with pytest.raises(AblateError, match="unknown device 'tpu'"):
        MeasurementSetup(device="tpu")
    with pytest.raises(AblateError, match="threads must be at least 1"):
        MeasurementSetup(threads=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_a_one_line_error():
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        configure_torch(MeasurementSetup(device="cuda"))


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("backend", ["eager", "torchscript"])
def test_cuda_backend_matches_eager_on_cpu(backend: str):
    setup = MeasurementSetup(backend=backend, device="cuda")
    configure_torch(setup)
    images = example_input(setup, 16)
    reference = eager_reference(tiny_model(), images.cpu())
    run = prepare_runnable(tiny_model(), images, setup)
    np.testing.assert_allclose(output_array(run()), reference, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@requires_cuda
def test_cuda_engine_times_with_events_and_records_the_gpu():
    from ablate.measurement.clock import cuda_event_block_timer
    from ablate.measurement.engine import StoppingPolicy, measure_latency

    setup = MeasurementSetup(device="cuda")
    configure_torch(setup)
    images = example_input(setup, 64)
    runnables = {name: prepare_runnable(tiny_model(), images, setup) for name in ("base", "same")}
    assert cuda_event_block_timer()(runnables["base"])(3) > 0
    result = measure_latency(
        runnables,
        baseline="base",
        setup=setup,
        stopping=StoppingPolicy(budget_seconds=0.5, minimum_rounds=6),
    )
    assert result.device == "cuda"
    assert result.environment.device_name == torch.cuda.get_device_name()
    assert result.rounds >= 6
    assert all(variant.median_ms > 0 for variant in result.variants)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_configure_torch_steadies_the_allocator_and_records_it():
    from ablate.measurement.setup import collect_environment

    setup = MeasurementSetup()
    configure_torch(setup)
    assert collect_environment(setup).steady_allocator is True


RELEASE_SCRIPT = """
import gc, os
import torch
from ablate.measurement.setup import MeasurementSetup, configure_torch, release_memory

def rss_mb():
    with open(f"/proc/{os.getpid()}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

configure_torch(MeasurementSetup())  # the steady allocator, as every measurement has it
before = rss_mb()
model = torch.nn.Sequential(torch.nn.Linear(5000, 10000)).eval()  # 200 MB of weights
example = torch.randn(1, 5000)
with torch.no_grad():
    traced = torch.jit.freeze(torch.jit.trace(model, example).eval())
    traced(example)
del model, traced
gc.collect()
held = rss_mb()
release_memory()
print(before, held, rss_mb())
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc's trim")
def test_release_memory_gives_back_what_a_traced_module_held() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RELEASE_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before, held, released = (float(value) for value in done.stdout.split())
    # Deleted and collected, TorchScript's registry and glibc's arenas still hold the weights;
    # released, the process is back near where it started.
    assert held - before > 150
    assert released - before < 0.3 * (held - before)
