"""The counting pass: one forward run under a TorchDispatchMode, attributed to modules.

Every aten op the forward dispatches is recorded with its tensors reduced to shapes, at the
innermost module running it (global module hooks keep a stack of module paths). Ops the
handle table lacks are decomposed when PyTorch has a decomposition (matmul -> mm, ...), so
only ops with no known cost and no decomposition end up unknown. All conventions are applied
after the run, as pure functions of the recorded shapes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map_only

from ablate.counting.dataflow import (
    activation_peak_bytes,
    build_dataflow,
    fused_traffic,
    op_traffic,
    refine_se_pools,
)
from ablate.counting.handles import HANDLES, OpCall, OpCost, TensorMeta
from ablate.counting.kinds import GroupOf, Kind, block_group
from ablate.counting.records import CountResult, OpRecord, summarize

_INPUT_SEED = 0


class _ModuleStack:
    """The chain of modules running right now, kept by process-wide forward hooks."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._names = {id(module): name for name, module in model.named_modules()}
        self._running: list[torch.nn.Module] = []
        self.path = ""
        self.classes: tuple[str, ...] = ()

    def _refresh(self) -> None:
        self.path = self._names[id(self._running[-1])] if self._running else ""
        self.classes = tuple(type(module).__name__ for module in self._running)

    def _enter(self, module: torch.nn.Module, args: Any) -> None:
        if id(module) in self._names:
            self._running.append(module)
            self._refresh()

    def _leave(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self._running and self._running[-1] is module:
            self._running.pop()
            self._refresh()

    @contextmanager
    def installed(self) -> Iterator[None]:
        # Global hooks cost two registrations instead of two per module, and see modules
        # however they are called; they ignore every module outside this model.
        enter = torch.nn.modules.module.register_module_forward_pre_hook(self._enter)
        leave = torch.nn.modules.module.register_module_forward_hook(self._leave, always_call=True)
        try:
            yield
        finally:
            enter.remove()
            leave.remove()


class _CountingMode(TorchDispatchMode):
    def __init__(self, modules: _ModuleStack, weight_storages: set[int]) -> None:
        super().__init__()
        self.modules = modules
        self.weight_storages = weight_storages
        self.operators: list[torch._ops.OpOverload] = []
        self.calls: list[OpCall] = []
        self.paths: list[str] = []
        self.classes: list[tuple[str, ...]] = []
        # Results stay referenced until the pass ends so that no storage address is reused:
        # storage addresses are the identity that dataflow and lifetimes are built on.
        self._alive: list[torch.Tensor] = []
        self._empty_storages = itertools.count(start=-2, step=-1)

    def meta(self, tensor: torch.Tensor) -> TensorMeta:
        storage = tensor.untyped_storage()
        shape = tuple(tensor.shape)
        address = storage.data_ptr()
        return TensorMeta(
            shape=shape,
            distinct_shape=tuple(
                1 if stride == 0 else size
                for size, stride in zip(shape, tensor.stride(), strict=True)
            ),
            element_size=tensor.element_size(),
            # Empty storages share address 0; give each its own identity.
            storage=address if address else next(self._empty_storages),
            storage_offset=tensor.storage_offset(),
            storage_bytes=storage.nbytes(),
            is_weight=address in self.weight_storages,
        )

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func not in HANDLES:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        result = func(*args, **kwargs)
        outputs = [value for value in tree_flatten(result)[0] if isinstance(value, torch.Tensor)]
        self._alive.extend(outputs)
        self.operators.append(func)
        self.calls.append(
            OpCall(
                operator=str(func),
                arguments=tree_map_only(torch.Tensor, self.meta, args),
                keyword_arguments=tree_map_only(torch.Tensor, self.meta, kwargs),
                outputs=tuple(self.meta(tensor) for tensor in outputs),
            )
        )
        self.paths.append(self.modules.path)
        self.classes.append(self.modules.classes)
        return result


def _model_dtype(model: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return torch.get_default_dtype(), torch.device("cpu")


def count_model(
    model: torch.nn.Module,
    input_shape: tuple[int, ...] = (1, 3, 224, 224),
    *,
    group_of: GroupOf | None = None,
) -> CountResult:
    """Count one forward pass of `model` at its dtype and `input_shape`.

    The input is seeded Gaussian noise (deterministic; counts never depend on values). The
    model runs as it is (call `.eval()` first for inference counts) under inference mode.
    `group_of` maps a module path to the layer it is reported under (default: `block_group`).
    """
    group_of = group_of or block_group
    dtype, device = _model_dtype(model)
    generator = torch.Generator().manual_seed(_INPUT_SEED)
    modules = _ModuleStack(model)
    weight_storages = {
        tensor.untyped_storage().data_ptr()
        for tensor in itertools.chain(model.parameters(), model.buffers())
    }
    weight_storages.discard(0)
    mode = _CountingMode(modules, weight_storages)
    with torch.inference_mode():
        source = torch.randn(input_shape, generator=generator).to(device=device, dtype=dtype)
        with modules.installed(), mode:
            output = model(source)
    model_inputs = [mode.meta(source)]
    model_outputs = [
        mode.meta(value) for value in tree_flatten(output)[0] if isinstance(value, torch.Tensor)
    ]

    calls = mode.calls
    costs = []
    for operator, call in zip(mode.operators, calls, strict=True):
        handle = HANDLES.lookup(operator)
        costs.append(handle(call) if handle is not None else OpCost(Kind.UNKNOWN))
    dataflow = build_dataflow(calls, costs, model_inputs)
    costs = refine_se_pools(calls, costs, dataflow, mode.classes)
    traffic = [op_traffic(call, cost) for call, cost in zip(calls, costs, strict=True)]
    fused = fused_traffic(calls, costs, traffic, dataflow)

    records = []
    for index, call in enumerate(calls):
        first_input = next(call.tensor_inputs, None)
        output = call.output
        records.append(
            OpRecord(
                index=index,
                operator=call.operator,
                kind=costs[index].kind,
                module_path=mode.paths[index],
                group=group_of(mode.paths[index]),
                macs=costs[index].macs,
                elementwise_ops=costs[index].elementwise_ops,
                elementwise_madds=costs[index].elementwise_madds,
                bytes_read=traffic[index].bytes_read,
                weight_bytes_read=traffic[index].weight_bytes_read,
                bytes_written=traffic[index].bytes_written,
                fused_bytes=fused[index].fused_bytes,
                fused_into=fused[index].fused_into,
                input_elements=first_input.elements if first_input is not None else 0,
                output_elements=output.elements if output is not None else 0,
                output_shape=output.shape if output is not None else (),
                kernel=costs[index].kernel,
                stride=costs[index].stride,
                in_channels=costs[index].in_channels,
            )
        )
    return summarize(
        records,
        input_shape=tuple(input_shape),
        dtype=str(dtype).removeprefix("torch."),
        pass_totals={
            "activation_peak_bytes": activation_peak_bytes(calls, model_inputs, model_outputs)
        },
    )
