"""Pretrained models by name: the pretrained table, hub downloads (offline, from a pre-filled hub cache),
conversion on first use with a cache keyed by the source files, and the one-line errors.

The official files are tiny AV2T-SAM / EVF-SAM2 models written in the official key layout (as the
converter tests build them), stored in a temporary hub cache the way ``huggingface_hub`` stores
downloads; ``release_config`` is patched to the tiny sizes, as in the converter tests.
"""

import json

import pytest
from conftest import make_video
import torch
from hub_stand_in import publish, use_hub_cache
from test_av2t_sam import inputs, official_av2t_state, randomised, tiny_config_patch
from test_zero_shot import model_dirs  # noqa: F401 (tiny CLAP and SAM 3 folders)

import avseg
from avseg.cli import main
from avseg.errors import AvsegError
from avseg.hub.pretrained import find_pretrained, pretrained_models
from avseg.hub.resolve import MARKER, resolve_model
from avseg.models.av2t_sam.model import AV2TSAM, AV2TSAMConfig

AV2T_REPO = "Kyungbok/AV2T-SAM"


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """An offline hub cache holding the official files of every converted pretrained name, and a conversion counter."""
    import avseg.models.av2t_sam.convert as conversion

    cache = use_hub_cache(monkeypatch, tmp_path)
    tiny_config_patch(monkeypatch)
    references = {}
    for seed, name in enumerate(("av2t-sam-s4", "av2t-sam-ms3")):
        references[name] = randomised(AV2TSAM(AV2TSAMConfig.tiny()), seed=seed).eval()
        torch.save(official_av2t_state(references[name]), tmp_path / f"{name}.pth")
    # Both checkpoints in one commit, as one release.
    publish(cache, AV2T_REPO, {find_pretrained(n).files[0]: tmp_path / f"{n}.pth" for n in references})
    evf = randomised(AV2TSAM(AV2TSAMConfig.tiny()), seed=7)
    torch.save({k[len("model.") :]: v for k, v in official_av2t_state(evf).items() if k.startswith("model.")}, tmp_path / "evf.bin")
    publish(cache, "YxZhang/evf-sam2-multitask", {"pytorch_model.bin": tmp_path / "evf.bin", "config.json": b"{}"})
    references["evf-sam2"] = evf

    calls = []
    original = conversion.convert
    monkeypatch.setattr(conversion, "convert", lambda *args, **kwargs: calls.append(args[0]) or original(*args, **kwargs))
    return references, calls


def test_models_command_and_pretrained_table_agree(capsys):
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [row.name for row in pretrained_models()]
    assert rows == avseg.available_models()
    assert [row["name"] for row in rows if row["kind"] == "pretrained"] == names
    assert {"av2t-sam-s4", "av2t-sam-ms3", "evf-sam2", "zeroshot-sam3"} <= set(names)
    for row in pretrained_models():
        assert f"| {row.name} |" in table and row.published_source and row.weights


def test_every_converted_name_loads_from_the_hub_cache_and_converts_once(hub):
    references, calls = hub
    for name, reference in references.items():
        model = avseg.load_model(name).eval()
        assert isinstance(model, AV2TSAM)
        if name != "evf-sam2":  # a training start: fresh projector and adapters
            batch = inputs(model)
            with torch.no_grad():
                torch.testing.assert_close(model(**batch), reference(**batch), rtol=0, atol=0)  # same weights, same process
        else:
            torch.testing.assert_close(model.sam.mask_decoder.iou_token.weight, reference.sam.mask_decoder.iou_token.weight, rtol=0, atol=0)
    assert len(calls) == 3
    folders = [resolve_model(name) for name in references]
    for name in references:
        avseg.load_model(name)
    assert len(calls) == 3, "a converted model was converted again"
    assert len(set(folders)) == 3 and all((folder / MARKER).is_file() for folder in folders)
    info = json.loads((folders[0] / "system.json").read_text())
    assert info["encoders"]["audio"] == "msclap"  # what `avseg segment` loads beside it


def test_zero_shot_name_needs_no_conversion(hub):
    _, calls = hub
    assert resolve_model("zeroshot-sam3") == "zeroshot-sam3" and not calls
    assert find_pretrained("zeroshot-sam3").gated


@pytest.mark.parametrize("damage", ["truncate", "marker", "config", "config-same-size"])
def test_a_corrupt_cache_entry_is_converted_again(hub, damage):
    _, calls = hub
    folder = resolve_model("av2t-sam-s4")
    if damage == "truncate":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "marker":
        (folder / MARKER).write_text("{not json")
    elif damage == "config":
        (folder / "config.json").write_text("{}")
    else:  # garbage of the same length: only a hash tells
        config = folder / "config.json"
        config.write_text("#" * config.stat().st_size)
    assert len(calls) == 1
    model = avseg.load_model("av2t-sam-s4")
    assert len(calls) == 2 and isinstance(model, AV2TSAM)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "a temporary folder was left behind"


def test_a_converted_entry_is_readable_by_others(hub):
    """A shared cache: the folder and every file get the umask's mode (mkdtemp and safetensors make them private)."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        folder = resolve_model("av2t-sam-s4")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()} == {path.name: 0o644 for path in folder.iterdir()}


def test_new_weights_under_the_same_name_are_converted_into_a_new_entry(hub, tmp_path, monkeypatch):
    _, calls = hub
    first = resolve_model("av2t-sam-s4")
    torch.save(official_av2t_state(randomised(AV2TSAM(AV2TSAMConfig.tiny()), seed=11)), tmp_path / "new.pth")
    publish(tmp_path / "hf" / "hub", AV2T_REPO, {find_pretrained("av2t-sam-s4").files[0]: tmp_path / "new.pth"})
    second = resolve_model("av2t-sam-s4")
    assert second != first and len(calls) == 2


def test_unknown_name_is_one_line_with_the_list(tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", seconds=1)  # a real video: the video is checked before the model is looked up
    assert main(["segment", str(video), "--model", "av2t-sam-s5", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "av2t-sam-s5" in error
    assert all(row.name in error for row in pretrained_models())
    assert not (tmp_path / "out").exists()


def test_offline_with_an_empty_cache_names_the_repo_the_file_and_how_to_fetch(tmp_path, monkeypatch):
    use_hub_cache(monkeypatch, tmp_path)
    with pytest.raises(AvsegError) as error:
        avseg.load_model("av2t-sam-s4")
    message = str(error.value)
    assert "\n" not in message and AV2T_REPO in message and find_pretrained("av2t-sam-s4").files[0] in message
    assert "hf download" in message and "HF_HUB_OFFLINE" in message
    assert main(["segment", str(tmp_path / "clip.mp4"), "--model", "org/missing@v2", "--out", str(tmp_path / "o")]) == 2


def test_a_hub_repo_that_is_not_an_avseg_model(tmp_path, monkeypatch):
    cache = use_hub_cache(monkeypatch, tmp_path)
    publish(cache, "someone/bert-tiny", {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"x" * 16})
    with pytest.raises(AvsegError, match="someone/bert-tiny: not an avseg model"):
        avseg.load_model("someone/bert-tiny")


def test_a_gated_repo_without_a_token_says_how_to_get_access(tmp_path, monkeypatch):
    """A local HTTP server answers as the hub does for a gated repo (401 with X-Error-Code: GatedRepo);
    huggingface_hub's own request and error code run against it."""
    import http.server
    import threading

    import huggingface_hub.constants as constants

    class Gated(http.server.BaseHTTPRequestHandler):
        def _refuse(self):
            self.send_response(401)
            self.send_header("X-Error-Code", "GatedRepo")
            self.send_header("X-Error-Message", "Access to model Kyungbok/AV2T-SAM is restricted.")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET = _refuse

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gated)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        use_hub_cache(monkeypatch, tmp_path, offline=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5, raising=False)
        with pytest.raises(AvsegError) as error:
            avseg.load_model("av2t-sam-s4")
    finally:
        server.shutdown()
    message = str(error.value)
    assert "\n" not in message and "gated" in message and "hf auth login" in message and AV2T_REPO in message


def test_vggish_weights_download_once_and_check_the_published_hash(tmp_path, monkeypatch):
    import hashlib

    from avseg.hub.download import url_file

    use_hub_cache(monkeypatch, tmp_path, offline=False)
    source = tmp_path / "vggish-release.pth"
    source.write_bytes(b"vggish weights")
    prefix = hashlib.sha256(source.read_bytes()).hexdigest()[:8]
    path = url_file(source.as_uri(), tmp_path / "cache", prefix)
    assert path.read_bytes() == b"vggish weights"
    source.unlink()
    assert url_file(source.as_uri(), tmp_path / "cache", prefix) == path  # cached: the URL is not read again
    (tmp_path / "other.pth").write_bytes(b"something else")
    with pytest.raises(AvsegError, match="SHA-256"):
        url_file((tmp_path / "other.pth").as_uri(), tmp_path / "cache2", prefix)
    assert not list((tmp_path / "cache2").iterdir())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AvsegError, match="downloads are off"):
        url_file("https://example.invalid/vggish-10086976.pth", tmp_path / "cache3", "10086976")



def test_zero_shot_name_loads_its_models_from_the_hub_cache(tmp_path, monkeypatch, model_dirs):
    """``zeroshot-sam3`` is not converted: its system loads laion/larger_clap_general and facebook/sam3
    through transformers, here from a hub cache pre-filled with tiny models of the same classes."""
    import huggingface_hub.constants as constants
    from hub_stand_in import publish_folder

    from avseg.models.registry import load_system

    cache = use_hub_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # transformers takes the cache folder from here
    publish_folder(cache, "laion/larger_clap_general", model_dirs / "clap")
    publish_folder(cache, "facebook/sam3", model_dirs / "sam3")
    system, info = load_system("zeroshot-sam3", cues=None)
    assert info["model"] == "zeroshot-sam3" and "facebook/sam3" in info["source"]
    assert system.segmenter("cpu") is not None
