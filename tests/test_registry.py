"""The model table: one list of names that every entry point reads, no import circle, checked system.json."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_video
from test_zero_shot import model_dirs  # noqa: F401  (the tiny CLAP and SAM 3 folders, a fixture)

import avseg
from avseg.cli import main
from avseg.config import DataConfig, EncodersConfig, Recipe, load_recipe
from avseg.errors import AvsegError, ConfigError
from avseg.models.architectures import MODELS, model_entry
from avseg.models.registry import (
    build_system,
    load_model,
    load_system,
    read_system_info,
    save_system_info,
)

SRC = Path(avseg.__file__).parent
NAMES = ("teso", "av2t-sam", "av2t-sam3", "vct", "auralsam2", "zeroshot-sam3")
OFFLINE = {"teso": EncodersConfig(audio="logmel", text="minilm-offline"), "av2t-sam": EncodersConfig(audio="logmel", image="thumbnail")}
OFFLINE["av2t-sam3"] = OFFLINE["av2t-sam"]
OFFLINE["vct"] = EncodersConfig()  # VGGish is inside the model; no encoder is built
OFFLINE["auralsam2"] = EncodersConfig(audio="vggish")  # its VGGish is inside the model (tiny: random weights)


def recipe_for(name: str, synthetic, model_dirs) -> Recipe:  # noqa: F811
    """A recipe that builds ``name`` offline: tiny presets and parameter-free or tiny saved encoders."""
    data = DataConfig(layout="ms3", root=str(synthetic / "ms3"), cues="oracle")
    if name == "zeroshot-sam3":
        settings = {"clap_model": str(model_dirs / "clap"), "sam3_model": str(model_dirs / "sam3")}
        return Recipe(model=name, model_config=settings, data=data)
    return Recipe(model=name, preset="tiny", encoders=OFFLINE[name], data=data)


def test_available_models_lists_every_table_entry_as_data():
    listed = avseg.available_models()
    architectures = {m["name"]: m for m in listed if m["kind"] == "architecture"}
    pretrained = {m["name"]: m for m in listed if m["kind"] == "pretrained"}
    assert len(listed) == len(architectures) + len(pretrained)
    # every table entry is listed: as itself, or as the pretrained row of the same name (zeroshot-sam3)
    assert set(NAMES) == set(MODELS) == set(architectures) | {n for n in pretrained if n in MODELS}
    for model in [*architectures.values(), *(m["architecture_info"] for m in pretrained.values())]:
        assert set(model) >= {"name", "method", "description", "trainable", "by_name", "presets", "converter"}
        assert model["method"] and model["description"] and model["trainable"] != model["by_name"]
        assert model["name"] in MODELS
    assert [m["name"] for m in architectures.values() if m["by_name"]] == []
    assert json.loads(json.dumps(listed)) == listed


@pytest.mark.parametrize("name", NAMES)
def test_build_system_and_load_model_for_each_entry(name, synthetic, model_dirs, tmp_path):  # noqa: F811
    entry = MODELS[name]
    torch.manual_seed(0)
    system = build_system(recipe_for(name, synthetic, model_dirs))
    assert type(system) is entry.system_class()
    if entry.by_name:
        settings = recipe_for(name, synthetic, model_dirs).model_config
        loaded, info = load_system(name, cues={}, settings=settings)
        assert type(loaded) is entry.system_class() and info["model"] == name
        return
    assert type(system.model) is entry.model_class() and type(system.model.config) is entry.config_class()
    system.model.save_pretrained(tmp_path / "m")
    save_system_info(tmp_path / "m", recipe_for(name, synthetic, model_dirs))
    assert type(load_model(tmp_path / "m")) is entry.model_class()
    assert type(avseg.load_model(tmp_path / "m")) is entry.model_class()
    loaded, info = load_system(tmp_path / "m", cues={})
    assert type(loaded) is entry.system_class() and info["model"] == name


def test_unknown_model_names_give_one_line_with_the_table(tmp_path):
    names = ", ".join(NAMES)
    with pytest.raises(ConfigError) as caught:
        build_system(Recipe(model="sam9"))
    assert str(caught.value) == f"model: unknown model 'sam9' (available: {names})"
    (tmp_path / "r.yaml").write_text("model: sam9\n")
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'r.yaml'}: model: unknown model 'sam9' \\(available: {names}\\)$"):
        load_recipe(tmp_path / "r.yaml")
    (tmp_path / "config.json").write_text(json.dumps({"model": "sam9"}))
    with pytest.raises(AvsegError, match=f"config.json: model: unknown model 'sam9' \\(available: {names}\\)$"):
        load_model(tmp_path)
    with pytest.raises(ConfigError, match="preset: unknown preset 'huge' for teso \\(use paper, tiny\\)"):
        model_entry("teso").preset_config("huge")


def test_segment_with_an_unknown_name_says_which_names_work(tmp_path, capsys):
    video = make_video(tmp_path / "v.mp4", seconds=1)  # a real video: the video is checked before the model is looked up
    assert main(["segment", str(video), "--model", "sam9", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avseg: error: sam9: ") and err.count("\n") == 1
    assert all(row["name"] in err for row in avseg.available_models() if row["kind"] == "pretrained")
    assert not (tmp_path / "o").exists()


def test_avseg_models_prints_the_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for entry in MODELS.values():
        assert f"{entry.name}: {entry.method}" in out and entry.description in out or f"| {entry.name} |" in out
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == avseg.available_models()


def imports_of(path: Path, submodules: bool = False) -> set[str]:
    """Every avseg module a source file imports, at the top, inside functions or for type checking;
    with ``submodules``, ``from avseg.hub import resolve`` is the module ``avseg.hub.resolve``, not the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named = {f"{node.module}.{alias.name}" for alias in node.names} if submodules else set()
            found |= {name for name in named if module_file(name)} or {node.module}
    return {name for name in found if name.startswith("avseg")}


def module_file(name: str) -> Path | None:
    base = SRC.parent / Path(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def imported_closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo += imports_of(path)
    return seen


def test_no_import_circle_between_the_registry_the_table_and_the_systems():
    """The registry and the table reach the systems and models only through the table's import paths (on
    use); the systems and models must never import the registry back (they read the table)."""
    registry, named = "avseg.models.registry", set()
    for entry in MODELS.values():
        for path in filter(None, (entry.system, entry.config, entry.model)):
            module = path.partition(":")[0]
            named.add(module)
            assert registry not in imported_closure(module), f"{module} imports {registry}"
    assert not named & imported_closure(registry), "the registry imports a system or model directly"
    for module in imported_closure(registry) - {registry}:
        assert registry not in imports_of(module_file(module)), f"{module} imports the registry back"
    light = {"avseg", "avseg.models", "avseg.models.architectures", "avseg.errors", "avseg.loading", "avseg.hub.pretrained"}
    light |= {"avseg.files", "avseg.hub.download", "avseg.hub.locations"}  # a load asks the hub first (torch and transformers only under functions)
    assert imported_closure("avseg.models.architectures") <= light


def test_no_import_circle_among_avseg_modules():
    """Every module can be read (and imported) after the modules it imports; a package's ``__init__``
    re-exporting its submodules is not an edge (Python runs it first, whatever imports the submodule)."""
    modules = {".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__") for path in SRC.rglob("*.py")}
    graph = {module: imports_of(module_file(module), submodules=True) - {module} for module in modules}
    done, path = set(), []

    def visit(module: str) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(modules):
        visit(module)


def test_import_avseg_and_the_table_stay_light():
    code = "import sys, avseg; avseg.available_models(); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "info, message",
    [
        ([1], "expected a JSON object"),
        ({"encoders": {}, "sample_rate": 16000}, "model: missing key"),
        ({"model": "sam9", "encoders": {}, "sample_rate": 16000}, "model: 'sam9' is not a trained model (known: teso, av2t-sam, av2t-sam3, vct, auralsam2)"),
        ({"model": "zeroshot-sam3", "encoders": {}, "sample_rate": 16000}, "model: 'zeroshot-sam3' is not a trained model"),
        ({"model": "teso", "encoders": "logmel", "sample_rate": 16000}, "encoders: expected a mapping, got str"),
        ({"model": "teso", "encoders": {"audi": "logmel"}, "sample_rate": 16000}, "encoders.audi: unknown key"),
        ({"model": "teso", "encoders": {"audio": 3}, "sample_rate": 16000}, "encoders.audio: expected str, got 3"),
        ({"model": "teso", "encoders": {}, "sample_rate": 0}, "sample_rate: expected a positive integer, got 0"),
        ({"model": "teso", "encoders": {}, "sample_rate": "16000"}, "sample_rate: expected a positive integer, got '16000'"),
        ({"model": "teso", "encoders": {}, "sample_rate": True}, "sample_rate: expected a positive integer, got True"),
    ],
)
def test_read_system_info_checks_keys_and_types(tmp_path, info, message):
    (tmp_path / "system.json").write_text(json.dumps(info))
    with pytest.raises(AvsegError) as caught:
        read_system_info(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'system.json'}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_read_system_info_accepts_what_save_system_info_writes(tmp_path):
    recipe = Recipe(model="av2t-sam", encoders=EncodersConfig(audio="logmel", image="thumbnail"), data=DataConfig(sample_rate=22050))
    save_system_info(tmp_path, recipe)
    info = read_system_info(tmp_path)
    assert (info["model"], info["encoders"]["image"], info["sample_rate"]) == ("av2t-sam", "thumbnail", 22050)
