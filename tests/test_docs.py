"""The README and docs/ against the code they describe.

Every `ablate` command written in them (code blocks and inline code) is parsed against the
real typer app: the command must exist, every option must exist on it and get a value when it
takes one, there must be no more arguments than it accepts, and concrete values (a spec file,
an architecture, `--set` factors, a backend, a precision, a device profile, numbers) must be
accepted by the same loaders a run uses. Every ```yaml block must load with the spec loader;
every ```python block must import, call its imports with keywords they have, and define every
name it uses. Benchmark commands must name scripts and options that exist. The results-schema
page names exactly the keys of the results model, the shipped-experiments table matches
`experiments/`, and every relative link resolves. Nothing is run or timed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main

from ablate.architecture.imported import is_import_path, parse_import_path
from ablate.cli import app
from ablate.errors import AblateError
from ablate.spec import load_spec, load_spec_text
from ablate.spec.source import parse_set_options

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *DOC_PAGES]
# typer's own command objects (typer vendors click): only their common attributes are used.
CLI = typer.main.get_command(app)
COMMANDS: dict[str, Any] = CLI.commands  # type: ignore[attr-defined]

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_INLINE = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)*)`(?!`)")
# A stand-in the reader replaces: SPEC, RUN2, TABLE.csv, FACTOR=VALUE.
_PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(\.[a-z]+)?(=[A-Z][A-Z0-9_]*)?")
_SPEC_KEY_LINE = re.compile(r"^\s*(name|base|baseline|variants|grid|attribution):")


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # 1-based, in `path`
    text: str
    language: str = ""
    inline: bool = False  # inline code: may name a command or an option without a full line

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks(path: Path) -> Iterator[Snippet]:
    """Fenced blocks (with their language) and indented code blocks (language "")."""
    lines = path.read_text(encoding="utf-8").split("\n")
    fence: str | None = None
    language = ""
    start = 0
    body: list[str] = []
    indented: list[str] = []
    indented_start = 0
    previous_blank = True
    for number, line in enumerate(lines, 1):
        opening = _FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1).startswith(fence) and not opening.group(2):
                # A block inside a list item is indented with it.
                yield Snippet(path, start, textwrap.dedent("\n".join(body)), language)
                fence = None
            else:
                body.append(line)
            continue
        if opening:
            if indented:
                yield Snippet(path, indented_start, "\n".join(indented))
                indented = []
            fence, language, start, body = opening.group(1), opening.group(2), number + 1, []
            previous_blank = False
            continue
        if line.startswith("    ") and line.strip() and (previous_blank or indented):
            if not indented:
                indented_start = number
            indented.append(line.strip())
        elif line.strip() and indented:
            yield Snippet(path, indented_start, "\n".join(indented))
            indented = []
        previous_blank = not line.strip()
    assert fence is None, f"{path.relative_to(ROOT)}:{start - 1}: unclosed code fence"
    if indented:
        yield Snippet(path, indented_start, "\n".join(indented))


def _prose(path: Path) -> str:
    """The page with fenced blocks blanked (line numbers kept)."""
    kept: list[str] = []
    fence: str | None = None
    for line in path.read_text(encoding="utf-8").split("\n"):
        opening = _FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1).startswith(fence) and not opening.group(2):
                fence = None
            kept.append("")
        elif opening:
            fence = opening.group(1)
            kept.append("")
        else:
            kept.append(line)
    return "\n".join(kept)


def _code_lines(snippet: Snippet) -> Iterator[tuple[int, str]]:
    for offset, line in enumerate(snippet.text.split("\n")):
        yield snippet.line + offset, line.strip().removeprefix("$ ")


def commands(prefix: str) -> list[Snippet]:
    """Every command starting with `prefix` in code blocks and inline code."""
    found: list[Snippet] = []
    for path in DOCUMENTS:
        for block in _blocks(path):
            if block.language not in ("", "console", "sh", "bash", "shell"):
                continue
            for number, line in _code_lines(block):
                for part in line.split("&&"):
                    if part.strip().startswith(prefix):
                        found.append(Snippet(path, number, part.strip()))
        prose = _prose(path)
        for match in _INLINE.finditer(prose):
            line = prose.count("\n", 0, match.start()) + 1
            for part in " ".join(match.group(1).split()).split("&&"):
                if part.strip().startswith(prefix):
                    found.append(Snippet(path, line, part.strip(), inline=True))
    return found


def yaml_blocks() -> list[Snippet]:
    return [b for path in DOCUMENTS for b in _blocks(path) if b.language in ("yaml", "yml")]


def python_blocks() -> list[Snippet]:
    return [b for path in DOCUMENTS for b in _blocks(path) if b.language in ("python", "py")]


# -- checking one `ablate` command --------------------------------------------------------------


def _words(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return [word.strip("[]") for word in lexer]


def _placeholder(value: str) -> bool:
    return "..." in value or value in ("-", "") or bool(_PLACEHOLDER.fullmatch(value))


def _spec_problem(document: dict[str, object], source: str) -> str | None:
    try:
        load_spec_text(json.dumps(document), source)
    except AblateError as error:
        return str(error)
    return None


def _device_profiles() -> tuple[str, ...]:
    from ablate.devices.profile import SHIPPED_NAMES

    return tuple(SHIPPED_NAMES)


@dataclass(frozen=True)
class _Help:
    name: str = "help"
    is_flag: bool = True
    required: bool = False


def _is_argument(param: Any) -> bool:
    return param.param_type_name == "argument"


def _number(param: Any) -> type | None:
    """int or float for a numeric option, whichever click typer carries."""
    kind = param.bare_type() if hasattr(param, "bare_type") else getattr(param.type, "name", "")
    return {"int": int, "integer": int, "float": float}.get(str(kind))


def check_command(command: str, where: str = "<doc>", *, complete: bool = True) -> list[str]:
    """The problems of one `ablate ...` command line; [] when it matches the real CLI.

    `complete`: a command line as typed, which must give every required argument and option;
    inline code may name a command with a few of its options only.
    """
    words = _words(command)
    assert words[0] == "ablate"
    if len(words) == 1:
        return []
    name, rest = words[1], words[2:]
    if name == "--help" and not rest:
        return []
    sub = COMMANDS.get(name)
    if sub is None:
        return [f"no command {name!r}; valid: {', '.join(sorted(COMMANDS))}"]
    options: dict[str, Any] = {"--help": _Help()}
    for param in sub.params:
        for option in (*param.opts, *param.secondary_opts):
            if option.startswith("-"):
                options[option] = param
    arguments = [p for p in sub.params if _is_argument(p)]
    problems: list[str] = []
    positional: list[str] = []
    given: list[tuple[str, Any, str | None]] = []
    index = 0
    while index < len(rest):
        word = rest[index]
        index += 1
        if word in ("...", "|", ""):
            continue
        if not (word.startswith("-") and len(word) > 1):
            positional.append(word)
            continue
        option, equals, inline = word.partition("=")
        param = options.get(option)
        if param is None:
            valid = ", ".join(sorted(o for o in options if o.startswith("--")))
            problems.append(f"`ablate {name}` has no option {option}; valid: {valid}")
            continue
        if getattr(param, "is_flag", False):
            if equals:
                problems.append(f"{option} is a flag and takes no value")
            given.append((option, param, None))
            continue
        if equals:
            given.append((option, param, inline))
        elif index < len(rest):
            given.append((option, param, rest[index]))
            index += 1
        elif complete:
            problems.append(f"{option} needs a value")
    if "--help" in (option for option, _, _ in given):
        return problems
    unlimited = any(p.nargs == -1 for p in arguments)
    if not unlimited and len(positional) > len(arguments):
        problems.append(
            f"`ablate {name}` takes {len(arguments)} argument(s), got {len(positional)}: "
            f"{' '.join(positional)}"
        )
    if complete:
        named = {param.name for _, param, _ in given}
        for param in sub.params:
            if not _is_argument(param) and param.required and param.name not in named:
                problems.append(f"`ablate {name}` needs {param.opts[-1]}")
        required = [p for p in arguments if p.required]
        if len(positional) < len(required):
            needed = " ".join(str(p.name).upper() for p in required)
            problems.append(f"`ablate {name}` needs {needed}")
    values = dict(zip((p.name for p in arguments), positional, strict=False))
    problems += _check_values(name, values, given, where)
    return problems


def _check_values(
    command: str,
    arguments: dict[str | None, str],
    given: list[tuple[str, Any, str | None]],
    where: str,
) -> list[str]:
    problems: list[str] = []
    by_name: dict[str, list[str]] = {}
    flags = {str(param.name) for _, param, value in given if value is None}
    for option, param, value in given:
        if value is None or _placeholder(value):
            continue
        by_name.setdefault(str(param.name), []).append(value)
        number = _number(param)
        if number is not None:
            try:
                parsed = number(value)
            except ValueError:
                problems.append(f"{option} {value}: not a {number.__name__}")
                continue
            low, high = getattr(param, "min", None), getattr(param, "max", None)
            if (low is not None and parsed < low) or (high is not None and parsed > high):
                problems.append(f"{option} {value}: out of range [{low}, {high}]")
    spec = arguments.get("spec")
    if spec is not None and not _placeholder(spec):
        try:
            load_spec(ROOT / spec)
        except AblateError as error:
            problems.append(f"spec {spec}: {error}")
    for key in ("backend", "precision"):
        for value in by_name.get(key, []):
            problem = _spec_problem(
                {"name": "doc", "measure": {key: value}, "variants": {"v": {}}}, where
            )
            if problem:
                problems.append(problem)
    if command in ("run", "predict"):
        for value in by_name.get("device", []):
            if value not in _device_profiles() and not value.endswith(".json"):
                problems.append(f"--device {value}: not a shipped device profile")
    elif "device" in by_name:
        for value in by_name["device"]:
            problem = _spec_problem(
                {"name": "doc", "measure": {"device": value}, "variants": {"v": {}}}, where
            )
            if problem:
                problems.append(problem)
    for value in by_name.get("devices", []):
        from ablate.devices.vocabulary import parse_device_list

        try:
            parse_device_list(value)
        except AblateError as error:
            problems.append(str(error))
    if "form" in by_name:
        from ablate.devices.costs import FORMS, form_choices

        valid = form_choices()
        problems += [f"--form {v}: valid: {valid}" for v in by_name["form"] if v not in FORMS]
    model = arguments.get("model")
    if command in ("inspect", "bench", "predict") and model and not _placeholder(model):
        versus = (by_name.get("vs") or [model])[0]
        models = {"set_options": model, "set2_options": versus}
        for key, base in models.items():
            if is_import_path(base):
                # A module by import path: its form is checked; importing it would run it.
                try:
                    parse_import_path(base)
                except AblateError as error:
                    problems.append(str(error))
                if "allow_import" not in flags:
                    problems.append(f"{base}: an import path needs --allow-import")
                continue
            # FACTOR=NAME: a value the reader supplies, such as a name a recipe adds.
            given_values = [
                v for v in by_name.get(key, []) if not _placeholder(v.partition("=")[2])
            ]
            try:
                factors = parse_set_options(given_values)
            except AblateError as error:
                problems.append(str(error))
                continue
            variant = {"base": base, **factors}
            problem = _spec_problem({"name": "doc", "variants": {"v": variant}}, where)
            if problem:
                problems.append(problem)
    return problems


# -- the docs themselves ------------------------------------------------------------------------


def test_the_docs_are_found_and_hold_commands_specs_and_code() -> None:
    names = {path.name for path in DOC_PAGES}
    assert {
        "architectures.md",
        "specs.md",
        "results-schema.md",
        "counting.md",
        "measuring.md",
        "attribution.md",
        "device-profiles.md",
        "on-device.md",
        "performance-log.md",
        "extending.md",
    } <= names
    # The extractors find what is there: a broken one would pass every check below vacuously.
    assert len(commands("ablate ")) > 60
    assert len(yaml_blocks()) >= 3
    assert len(python_blocks()) >= 1
    assert len(commands("python benchmarks/")) >= 10


@pytest.mark.parametrize("snippet", commands("ablate "), ids=lambda s: f"{s.where} {s.text[:40]}")
def test_every_ablate_command_in_the_docs_matches_the_cli(snippet: Snippet) -> None:
    problems = check_command(snippet.text, snippet.where, complete=not snippet.inline)
    assert problems == [], snippet.where


@pytest.mark.parametrize("snippet", yaml_blocks(), ids=lambda s: s.where)
def test_every_yaml_block_in_the_docs_is_a_valid_spec(snippet: Snippet) -> None:
    load_spec_text(snippet.text, snippet.where)


def test_every_spec_in_the_docs_is_fenced_as_yaml() -> None:
    # An unfenced spec would escape the check above.
    for path in DOCUMENTS:
        for block in _blocks(path):
            if block.language in ("yaml", "yml"):
                continue
            keys = [line for line in block.text.split("\n") if _SPEC_KEY_LINE.match(line)]
            assert len(keys) < 2, f"{block.where}: a spec outside a ```yaml block"


def _imported(tree: ast.Module) -> dict[str, object]:
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module = importlib.import_module(alias.name)
                names[alias.asname or alias.name.split(".")[0]] = module
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(str(node.module))
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                names[alias.asname or alias.name] = getattr(module, alias.name)
    return names


def _callee(node: ast.expr, names: dict[str, object]) -> object | None:
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _callee(node.value, names)
        return None if owner is None else getattr(owner, node.attr, None)
    return None


@pytest.mark.parametrize("snippet", python_blocks(), ids=lambda s: s.where)
def test_every_python_block_imports_and_calls_what_exists(snippet: Snippet) -> None:
    tree = ast.parse(snippet.text, snippet.where)
    names = _imported(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node.func, names)
        if callee is None or not callable(callee):
            continue
        parameters = inspect.signature(callee).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        for keyword in node.keywords:
            assert keyword.arg in parameters, (
                f"{snippet.where}: {ast.unparse(node.func)} has no parameter {keyword.arg!r}"
            )


def _ruff() -> str | None:
    beside = Path(sys.executable).parent / "ruff"
    return str(beside) if beside.exists() else shutil.which("ruff")


@pytest.mark.parametrize("snippet", python_blocks(), ids=lambda s: s.where)
def test_every_python_block_defines_what_it_uses(snippet: Snippet) -> None:
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    checked = subprocess.run(
        [ruff, "check", "--isolated", "--select", "F", "--stdin-filename", "snippet.py", "-"],
        input=snippet.text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, f"{snippet.where}:\n{checked.stdout}"


def _script_options(script: Path) -> set[str]:
    """The options a benchmark script's argparse accepts, its shared helpers' included."""
    sources = [script.read_text(encoding="utf-8")]
    for imported in re.findall(r"^(?:from|import) (\w+)", sources[0], flags=re.MULTILINE):
        helper = script.parent / f"{imported}.py"
        if helper.exists():
            sources.append(helper.read_text(encoding="utf-8"))
    return {
        option
        for source in sources
        for option in re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source)
    } | {"--help"}


@pytest.mark.parametrize(
    "snippet",
    commands("python benchmarks/") + commands("python scripts/"),
    ids=lambda s: f"{s.where} {s.text[:50]}",
)
def test_every_script_command_names_a_script_and_its_options(snippet: Snippet) -> None:
    words = _words(snippet.text)
    script = ROOT / words[1]
    assert script.is_file(), f"{snippet.where}: no {words[1]}"
    accepted = _script_options(script)
    for word in words[2:]:
        if word.startswith("--"):
            assert word.partition("=")[0] in accepted, f"{snippet.where}: {words[1]} has no {word}"


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").split("\n")
    assert len(lines) <= 300
    text = "\n".join(lines)
    for page in DOC_PAGES:
        assert f"(docs/{page.name})" in text, f"README links no docs/{page.name}"
    assert "## Set up and run" in text


def test_the_readme_gives_the_test_command_ci_runs_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").split("\n")
    marker = next(i for i, line in enumerate(ci) if "The README's test command, verbatim" in line)
    command = ci[marker + 1].strip()
    assert command.startswith("python3 -m venv .venv")
    assert f"\n    {command}\n" in README.read_text(encoding="utf-8")


_REPOSITORY_PATH = re.compile(r"`((?:ablate|benchmarks|experiments|scripts|tests|docs)/[\w./-]*)`")


def test_every_repository_path_the_docs_name_exists() -> None:
    for path in DOCUMENTS:
        for match in _REPOSITORY_PATH.finditer(_prose(path)):
            named = match.group(1).split("::")[0]
            if re.search(r"\b[A-Z]{2,}\b", named):  # a placeholder: runtimes/NAME.py
                continue
            assert (ROOT / named).exists(), f"{path.relative_to(ROOT)}: no {named}"


def _slug(heading: str) -> str:
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    prose = _prose(path)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", prose, flags=re.MULTILINE)}


def test_every_relative_link_and_anchor_resolves() -> None:
    for path in DOCUMENTS:
        prose = _prose(path)
        for match in re.finditer(r"\]\(([^)\s]+)\)", prose):
            target = match.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file) if file else path
            where = f"{path.relative_to(ROOT)}: ({target})"
            assert resolved.exists(), f"{where}: no such file"
            if anchor:
                assert anchor in _anchors(resolved), f"{where}: no such heading"


# -- the tables that mirror the code ------------------------------------------------------------


def _table_keys(page: Path, heading: str) -> set[str]:
    """The backticked names in the first column of the first table under `heading`."""
    lines = page.read_text(encoding="utf-8").split("\n")
    start = lines.index(heading)
    keys: set[str] = set()
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            in_table = True
            first = line.split("|")[1]
            keys |= set(re.findall(r"`([^`]+)`", first))
        elif in_table or line.startswith("#"):
            break
    assert keys, f"{page.name}: no table under {heading!r}"
    return keys


def _fields(model: type) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}  # type: ignore[attr-defined]


def test_the_results_schema_page_names_every_key_of_the_results_model() -> None:
    from ablate.analysis.record import Attribution, Effect
    from ablate.metrics import STORED
    from ablate.runs.schema import Measurement, Results, Variant

    page = ROOT / "docs" / "results-schema.md"
    tables = {
        "## Top level": Results,
        "## `measurement`": Measurement,
        "## Per variant": Variant,
        "## Attribution": Attribution,
        "An effect is:": Effect,
    }
    # A stored metric is a field of its own, documented by its row in the metric table.
    metrics = {metric.key for metric in STORED}
    for heading, model in tables.items():
        documented, fields = _table_keys(page, heading), _fields(model)
        assert documented <= fields, f"{heading}: no such key {sorted(documented - fields)}"
        missing = fields - documented - metrics
        assert not missing, f"{heading}: undocumented {sorted(missing)}"


def test_the_shipped_experiments_table_matches_experiments() -> None:
    page = (ROOT / "docs" / "specs.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([\w.]+\.yaml)` \|.*\| (\d+) \|$", page, flags=re.MULTILINE))
    shipped = {path.name for path in (ROOT / "experiments").glob("*.yaml")}
    assert set(rows) == shipped
    for name, count in rows.items():
        assert len(load_spec(ROOT / "experiments" / name).variants) == int(count), name


def test_the_code_layout_lists_every_package_in_import_order() -> None:
    from test_structure import LAYERS

    page = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    table = page.split("| package | holds |", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    packages = {path.parent.name for path in (ROOT / "ablate").glob("*/__init__.py")}
    assert set(listed) == packages
    assert tuple(listed) == LAYERS


def test_every_name_the_recipes_give_is_in_the_code() -> None:
    """extending.md's recipes name functions, tables, fields and tests that move when the
    code does: each must still be found in ablate/ or tests/, but for the names the recipes
    themselves add."""
    page = ROOT / "docs" / "extending.md"
    sources = [
        *(ROOT / "ablate").rglob("*.py"),
        *(ROOT / "ablate" / "services" / "bundle_files").iterdir(),
        *(ROOT / "tests").glob("*.py"),
    ]
    words = set(re.findall(r"\w+", " ".join(p.read_text(encoding="utf-8") for p in sources)))
    names = set(re.findall(r"`([A-Za-z_][\w.]*)`", _prose(page)))
    assert len(names) > 40
    for name in names - {"weight_bytes", "gelu"}:
        if re.search(r"\.(py|toml|md|sh|yaml)$", name):
            found = [ROOT / name, *(ROOT / "ablate").rglob(name), *(ROOT / "tests").glob(name)]
            assert any(path.exists() for path in found), f"extending.md names {name}: no file"
        else:
            missing = [part for part in name.split(".") if part not in words]
            assert not missing, f"extending.md names `{name}`: no {missing} in the code"


# -- the checker itself fails on what it must catch ---------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("ablate frobnicate SPEC", "no command 'frobnicate'"),
        ("ablate run SPEC --budget 10", "has no option --budget"),
        ("ablate bench mobilenet_v2 --vs", "--vs needs a value"),
        ("ablate validate a.yaml b.yaml", "takes 1 argument(s), got 2"),
        ("ablate export SPEC -o BUNDLE", "needs --backend"),
        ("ablate run experiments/no_such.yaml", "spec experiments/no_such.yaml"),
        ("ablate bench mobilenet_v9", "mobilenet_v9"),
        ("ablate inspect mobilenet_v2 --set kernell=5", "unknown factor"),
        ("ablate inspect mobilenet_v2 --set kernel=4", "variants.v.kernel"),
        ("ablate bench mobilenet_v2 --vs mobilenet_v3_large --set2 se=maybe", "variants.v.se"),
        ("ablate bench MODEL --backend tflite", "unknown backend"),
        ("ablate bench MODEL --precision int4", "precision"),
        ("ablate bench MODEL --threads two", "--threads two"),
        ("ablate predict MODEL --device pixel9", "not a shipped device profile"),
        ("ablate run SPEC --devices eager,pixel9", "--devices: unknown device (got 'pixel9')"),
        ("ablate fit-device NAME --from RUN --form cubic", "--form cubic"),
        ("ablate models --json=yes", "is a flag"),
        ("ablate inspect torchvision.models.mobilenet_v3_large --allow-import", "import path"),
        ("ablate inspect pkg.mod:net", "needs --allow-import"),
    ],
)
def test_the_command_check_catches(command: str, expected: str) -> None:
    problems = check_command(command)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    "command",
    [
        "ablate run experiments/hswish.yaml --backend executorch --precision int8",
        "ablate inspect mobilenet_v3_large"
        " --set 'activation={early: relu, late: hswish, from_channels: 80}'",
        "ablate fit-device NAME --from RUN [--from RUN ...] | --from-table TABLE.csv [--form F]",
        "ablate bench MODEL [--set ...] [--vs MODEL2 --set2 ...] [--backend B]  # a comment",
    ],
)
def test_the_command_check_accepts(command: str) -> None:
    assert check_command(command) == []


def test_inline_code_may_name_a_command_and_some_of_its_options() -> None:
    assert check_command("ablate export", complete=False) == []
    assert check_command("ablate run --device", complete=False) == []
    assert check_command("ablate run --device") == [
        "--device needs a value",
        "`ablate run` needs SPEC",
    ]
    assert check_command("ablate run --budget 4", complete=False) != []
    assert "`ablate export` needs SPEC" in check_command("ablate export")


def test_the_extractors_find_indented_fenced_and_inline_commands(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text with `ablate models --json` inline.\n\n"
        "    ablate factors\n\n"
        "1. A step:\n\n"
        "       ablate devices --json\n\n"
        "```console\n$ ablate inspect mobilenet_v2 && ablate roofline\n```\n\n"
        "```yaml\nname: x\nvariants: {a: {}}\n```\n",
        encoding="utf-8",
    )
    blocks = list(_blocks(page))
    assert [(b.line, b.language) for b in blocks] == [
        (3, ""),
        (7, ""),
        (10, "console"),
        (14, "yaml"),
    ]
    lines = [line for b in blocks if b.language != "yaml" for _, line in _code_lines(b)]
    assert lines == [
        "ablate factors",
        "ablate devices --json",
        "ablate inspect mobilenet_v2 && ablate roofline",
    ]
    assert "`ablate models --json`" in _prose(page)
    assert "name: x" not in _prose(page)


# -- docs/your-architecture.md: the worked example is the built-in -------------------------------


def test_the_worked_example_is_v3_large_written_out_in_full() -> None:
    """The page's table is `architecture_yaml("mobilenet_v3_large")` key for key, and built
    from the page it counts exactly as the built-in."""
    from ablate.architecture.builder import build_module
    from ablate.architecture.table_data import architecture_yaml, table_data
    from ablate.counting import count_model
    from ablate.metrics import COUNTED

    page = ROOT / "docs" / "your-architecture.md"
    (block,) = [b for b in _blocks(page) if b.language == "yaml" and "architectures:" in b.text]
    spec = load_spec_text(block.text, block.where)
    (name,) = spec.architectures
    assert table_data(spec.architectures[name]) == architecture_yaml("mobilenet_v3_large")
    mine, published = spec.variant("mine"), spec.variant("published")
    counted = []
    for variant in (mine, published):
        module = build_module(variant.architecture)  # type: ignore[arg-type]
        counts = count_model(module, (1, 3, 224, 224))
        params = sum(parameter.numel() for parameter in module.parameters())
        counted.append((params, {m.key: counts.totals[m.key] for m in COUNTED}))
    assert counted[0] == counted[1]
    assert counted[0][0] == 5_483_032 and counted[0][1]["macs"] == 216_589_760
