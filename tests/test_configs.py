"""The experiment presets and the package default: every preset under experiments/configs (and
its archive/) loads, is one level over the package default (it builds on
``ser_jax.config.get_config`` and nothing else: no preset reads another), and resolves as a run
would; the default config and the model modules keep their functions short and their imports
at the top."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from ser_jax.config import get_config
from ser_jax.spec import resolve

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"
PRESETS = sorted(CONFIGS.glob("*.py")) + sorted((CONFIGS / "archive").glob("*.py"))
# the recipes of shipped models (ser_jax/pretrained/*/run_info.json) and the reproductions
# stay at the top level, where their commands name them
TOP_LEVEL = {
    "best.py",
    "bilstm_attention.py",
    "cepstral_vtlp.py",
    "default.py",
    "functionals_mfcc_shuffled.py",
    "functionals_pitch.py",
    "matlab.py",
    "meng2019.py",
    "release.py",
    "zhao2019.py",
}


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"_preset_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def relative(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


def test_the_presets_are_where_their_commands_name_them():
    assert TOP_LEVEL <= {p.name for p in CONFIGS.glob("*.py")}
    shipped = sorted((REPO / "ser_jax" / "pretrained").glob("*/run_info.json"))
    for info in shipped:
        for word in info.read_text().split():
            if word.startswith("experiments/configs/"):
                assert (REPO / word).is_file(), f"{info}: {word}"


@pytest.mark.parametrize("path", PRESETS, ids=relative)
def test_preset_is_one_level_over_the_package_default(path):
    """A preset imports ``ser_jax.config.get_config`` (and the standard library) only, and
    its ``get_config`` starts from it: no chain of presets to follow to know a recipe."""
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module)
            if node.module == "ser_jax.config":
                assert [a.name for a in node.names] == ["get_config"], relative(path)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert imported <= {"ser_jax.config", "os"}, relative(path)
    assert "config_beside" not in path.read_text()
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert [f.name for f in functions] == ["get_config"], relative(path)


@pytest.mark.parametrize("path", PRESETS, ids=relative)
def test_preset_loads_and_resolves(path, monkeypatch):
    """Each preset passes the checks a run applies before it trains (known fields, valid
    choices), with or without the corpus variable, and sets only fields the default has."""
    monkeypatch.setenv("SER_EMODB_DIR", "/nowhere")  # presets read it; resolve needs no data
    config = load(path)
    spec = resolve(config)
    assert spec.name == config.name
    if path.name != "default.py":
        assert config.name == path.stem
    monkeypatch.delenv("SER_EMODB_DIR")
    resolve(load(path))


def test_the_selection_runs_flags_are_fields_of_their_presets():
    """experiments/selection/loso_members.sh overrides these fields on these presets."""
    for name in ("cepstral_vtlp.py", "functionals_mfcc_shuffled.py", "functionals_pitch.py"):
        config = load(CONFIGS / name)
        config.model.mlp_hidden = (256,)
        config.model.dropout = 0.3
        resolve(config)
    for name in ("best.py", "bilstm_attention.py"):
        resolve(load(CONFIGS / name))


def functions(path: Path):
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


SHORT = [REPO / "ser_jax" / "config.py", *sorted((REPO / "ser_jax" / "models").glob("*.py"))]


@pytest.mark.parametrize("path", SHORT, ids=lambda p: str(p.relative_to(REPO)))
def test_config_and_models_keep_functions_short_and_imports_at_the_top(path):
    for fn in functions(path):
        length = fn.end_lineno - fn.lineno + 1
        assert length <= 80, f"{path.name}:{fn.lineno} {fn.name} has {length} lines"
        inner = [n for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)]
        assert not inner, f"{path.name}:{fn.lineno} {fn.name} imports inside a function"


def test_default_config_is_assembled_by_sections():
    config = get_config()
    assert set(config.keys()) == {
        "name",
        "seed",
        "data",
        "frontend",
        "augment",
        "model",
        "eval",
        "train",
    }
    assert config.model.name == "cnn_lstm" and config.model.embedding is None
    # a fresh section each call: one config's change never reaches another's
    config.model.embedding = 5
    config.data.demo.speakers = 9
    again = get_config()
    assert again.model.embedding is None and again.data.demo.speakers == 4
