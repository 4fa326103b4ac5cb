"""A network from elsewhere: a factory named by import path (``package.module:factory``),
called with keyword arguments, run at one input resolution.

Naming one imports the module and calls the factory, which runs its code: nothing here
imports before `build` (or `check`) is called, and the callers that do (`ablate validate`,
`run`, `inspect`, `bench`) do so only when told to (`--allow-import`). Every way the module
can fail (not importable, no such factory, the factory raising, returning something that is
not an ``nn.Module``, a forward pass that fails) is one `ImportedModelError` naming the path.

An `ImportedModel` stands where an `Architecture` stands in a run (a variant's network, a
unit built and timed once): it is frozen and hashable, so identical ones are built once.
Factors do not apply to it: ablate knows nothing of its blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.architecture.description import Architecture
from ablate.architecture.rows import LayerRow
from ablate.errors import AblateError, excerpt

if TYPE_CHECKING:
    from torch import nn

IMPORT_PATH_FORM = "package.module:factory"
IMPORT_PATH_EXAMPLE = "torchvision.models:mobilenet_v3_large"
# The resolution an imported module is run at when nothing says otherwise: ImageNet's.
DEFAULT_RESOLUTION = 224
# An error from the imported code is cut to this many characters: it must stay one line.
_ERROR_CHARACTERS = 200


class ImportedModelError(AblateError):
    """An import path that is malformed, or whose module or factory fails: one line."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def is_import_path(text: str) -> bool:
    """Whether a model given on the command line means an import path rather than a
    built-in's name: built-in names have neither a colon nor a dot."""
    return ":" in text or "." in text


def parse_import_path(text: str) -> tuple[str, str]:
    """``package.module:factory`` -> (module, factory); the factory may be dotted
    (``module:Class.create``). A malformed path is an `ImportedModelError`."""
    module, colon, factory = text.partition(":")
    if colon and _dotted_name(module) and _dotted_name(factory):
        return module, factory
    raise ImportedModelError(
        excerpt(text),
        f"not an import path: expected {IMPORT_PATH_FORM} (module and factory joined by one "
        f"colon, each a dotted Python name), e.g. {IMPORT_PATH_EXAMPLE}",
    )


def _dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= _ERROR_CHARACTERS else text[: _ERROR_CHARACTERS - 3] + "..."


@dataclass(frozen=True)
class ImportedModel:
    module: str
    factory: str
    # The keyword arguments as canonical JSON: the identity of the call, hashable (two
    # variants calling the factory with equal arguments are one network, built once).
    args_json: str = "{}"
    resolution: int = DEFAULT_RESOLUTION

    @classmethod
    def of(
        cls,
        path: str,
        args: Mapping[str, Any] | None = None,
        resolution: int = DEFAULT_RESOLUTION,
    ) -> ImportedModel:
        """The model a path, its factory's keyword arguments and a resolution name; checks
        the path's form and that the arguments are plain data, imports nothing."""
        module, factory = parse_import_path(path)
        try:
            args_json = json.dumps(dict(args or {}), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ImportedModelError(
                path, f"args must be plain data (numbers, strings, lists, mappings): {error}"
            ) from None
        return cls(module, factory, args_json, resolution)

    @property
    def path(self) -> str:
        return f"{self.module}:{self.factory}"

    @property
    def args(self) -> dict[str, Any]:
        """The keyword arguments, a fresh copy each time."""
        return dict(json.loads(self.args_json))

    @property
    def label(self) -> str:
        """The call as a reader would write it: ``module:factory(width=16)``."""
        args = self.args
        if not args:
            return self.path
        return f"{self.path}({', '.join(f'{key}={value!r}' for key, value in args.items())})"

    def _error(self, reason: str) -> ImportedModelError:
        return ImportedModelError(self.label, reason)

    def load_factory(self) -> Callable[..., Any]:
        """Imports the module (from the current environment) and finds the factory."""
        try:
            with _working_directory_importable():
                target: Any = importlib.import_module(self.module)
        # Whatever the module's own code raises on import, SystemExit included, is its
        # failure to import: one line, never a traceback.
        except (Exception, SystemExit) as error:
            raise self._error(
                f"cannot import module {self.module!r} ({_one_line(error)})"
            ) from None
        owner = self.module
        for part in self.factory.split("."):
            if not hasattr(target, part):
                raise self._error(f"{owner!r} has no attribute {part!r}")
            target = getattr(target, part)
            owner = f"{owner}.{part}"
        if not callable(target):
            raise self._error(f"{owner!r} is not callable (a {type(target).__name__})")
        return target  # type: ignore[no-any-return]

    def build(self) -> nn.Module:
        """The factory's module in eval mode (weights as the factory initialises them; seed
        the global generator first for repeatable ones)."""
        from torch import nn

        factory = self.load_factory()
        try:
            built = factory(**self.args)
        except (Exception, SystemExit) as error:
            raise self._error(f"the factory raised {_one_line(error)}") from None
        if not isinstance(built, nn.Module):
            raise self._error(
                f"the factory returned a {type(built).__qualname__}, not a torch.nn.Module"
            )
        return built.eval()

    def check(self) -> None:
        """Builds the module and runs one forward pass on a 1x3xRxR input: what counting and
        measuring will do, failing here in one line rather than there in a traceback."""
        import torch

        with torch.random.fork_rng(devices=[]):  # the caller's random state stays its own
            model = self.build()
            size = self.resolution
            try:
                with torch.inference_mode():
                    model(torch.zeros(1, 3, size, size))
            except Exception as error:
                raise self._error(
                    f"a forward pass on a 1x3x{size}x{size} input failed ({_one_line(error)})"
                ) from None

    def provenance(self) -> dict[str, Any]:
        """What makes a result traceable to the code that ran: the path and arguments, the
        installed distribution that provides the module and its version (None for a module
        that is not installed, e.g. one on PYTHONPATH), and the file that defines the factory
        with its SHA-256."""
        factory = self.load_factory()
        top = self.module.partition(".")[0]
        distributions = metadata.packages_distributions().get(top, [])
        distribution = distributions[0] if distributions else None
        version = None
        if distribution is not None:
            try:
                version = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                version = None
        file = _defining_file(factory, self.module)
        digest = None
        if file is not None:
            try:
                digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()
            except OSError:
                digest = None
        return {
            "path": self.path,
            "args": self.args,
            "distribution": distribution,
            "version": version,
            "file": file,
            "sha256": digest,
        }


def _defining_file(factory: Any, module: str) -> str | None:
    """The source file of the module that defines the factory (a re-exported factory's own,
    not the package's ``__init__``), else of the module named."""
    defining = sys.modules.get(getattr(factory, "__module__", None) or module)
    if defining is None:
        defining = sys.modules.get(module)
    file = getattr(defining, "__file__", None)
    return None if file is None else str(Path(file).resolve())


# Either kind of network a run builds: ablate's own description, or an imported factory.
Network = Architecture | ImportedModel


def build_network(network: Network) -> nn.Module:
    """The network as a plain module in eval mode."""
    if isinstance(network, ImportedModel):
        return network.build()
    from ablate.architecture.builder import build_module

    return build_module(network)


def module_rows(
    model: nn.Module, resolution: int, group_of: Callable[[str], str]
) -> list[LayerRow]:
    """One row per layer group of a module ablate did not build (``group_of`` maps a module
    path to its group, as the counting pass groups): its parameters, and the shapes one
    forward pass at ``resolution`` gives it. ablate knows nothing of its blocks, so kernel,
    expansion, SE and activation stay empty, and its operator is the module's class."""
    import torch

    params: dict[str, int] = {}
    # Groups in module order, each first seen at a leaf (a container is no layer of its own)
    # or at a parameter (one the root holds directly belongs to the root's group).
    for name, module in model.named_modules():
        if not any(True for _ in module.children()):
            params.setdefault(group_of(name), 0)
    for name, parameter in model.named_parameters():
        group = group_of(name.rpartition(".")[0])
        params[group] = params.get(group, 0) + parameter.numel()
    modules = dict(model.named_modules())
    paths = {group: _group_path(group, modules, group_of) for group in params}
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def recorder(group: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            if group not in shapes:  # a module called twice keeps its first call
                shapes[group] = (_first_shape(inputs), _first_shape(output))

        return record

    handles = [
        modules[path].register_forward_hook(recorder(group))
        for group, path in paths.items()
        if path is not None
    ]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, resolution, resolution))
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    for group, count in params.items():
        path = paths[group]
        inputs, output = shapes.get(group, ((), ()))
        height, width, channels = _spatial(inputs)
        out_height, _, out_channels = _spatial(output)
        module = modules.get(path) if path is not None else None
        kernel = getattr(module, "kernel_size", None)
        rows.append(
            LayerRow(
                layer=group,
                module=path or "",
                input_height=height,
                input_width=width,
                input_channels=channels,
                operator=type(module).__name__ if module is not None else "-",
                kernel_size=kernel[0] if isinstance(kernel, tuple) else kernel,
                expanded_channels=None,
                out_channels=out_channels,
                squeeze_excite=False,
                activation=None,
                stride=height // out_height if height and out_height else 1,
                params=count,
            )
        )
    return rows


def _group_path(
    group: str, modules: Mapping[str, nn.Module], group_of: Callable[[str], str]
) -> str | None:
    """The module path of a group: the module whose path is the group's name, or the root
    for the root's group; None when no module is the group."""
    if group in modules and group_of(group) == group and group != "":
        return group
    return "" if group_of("") == group else None


def _first_shape(value: Any) -> tuple[int, ...]:
    import torch

    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, tuple | list):
        for item in value:
            shape = _first_shape(item)
            if shape:
                return shape
    if isinstance(value, Mapping):
        for item in value.values():
            shape = _first_shape(item)
            if shape:
                return shape
    return ()


def _spatial(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(height, width, channels) of an NCHW or an (N, features) tensor; 0 where unknown."""
    if len(shape) == 4:
        return shape[2], shape[3], shape[1]
    if len(shape) == 2:
        return 1, 1, shape[1]
    return 0, 0, 0


@contextlib.contextmanager
def _working_directory_importable() -> Iterator[None]:
    """The current directory searched first while importing, as `python -m` and uvicorn's
    "module:app" do: a console script's path lacks it, and a user's models usually live in
    the project the command is run from."""
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        yield
    finally:
        if added and here in sys.path:
            sys.path.remove(here)
