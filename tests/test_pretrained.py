"""Pretrained models by name: the pretrained table, hub downloads (offline, from a pre-filled hub cache),
conversion on first use with a cache keyed by the source files, and the one-line errors.

The official files are tiny AV2T-SAM / EVF-SAM2 models written in the official key layout (as the
converter tests build them), stored in a temporary hub cache the way ``huggingface_hub`` stores
downloads; ``release_config`` is patched to the tiny sizes, as in the converter tests.
"""

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import make_video
from hub_stand_in import ServedHub, publish, use_hub_cache
from test_av2t_sam import inputs, official_av2t_state, randomised, tiny_config_patch
from test_zero_shot import model_dirs  # noqa: F401 (tiny CLAP and SAM 3 folders)

import avseg
from avseg.cli import main
from avseg.errors import AvsegError
from avseg.hub.pretrained import find_pretrained, pretrained_models
from avseg.hub.resolve import ENTRY_FILES, MARKER, resolve_model
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
        assert row.file_names in ("verified", "inferred", "not named") and row.file_names_source
        assert f"| {row.file_names} ({row.file_names_source}) |" in table
        assert next(r for r in rows if r["name"] == row.name)["file_names"] == row.file_names
    assert {row.name: row.file_names for row in pretrained_models()}["av2t-sam-s4"] == "inferred"


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
    assert all({path.name for path in folder.iterdir()} <= ENTRY_FILES for folder in folders), "replacing an entry would refuse it"
    info = json.loads((folders[0] / "system.json").read_text())
    assert info["encoders"]["audio"] == "msclap"  # what `avseg segment` loads beside it


def test_zero_shot_name_needs_no_conversion(hub):
    _, calls = hub
    assert resolve_model("zeroshot-sam3") == "zeroshot-sam3" and not calls
    assert find_pretrained("zeroshot-sam3").gated


def damage_in_place(path, damage: str) -> None:
    data = bytearray(path.read_bytes())
    if damage == "bytes-same-size":  # a few bytes in the tensor data, past the header
        middle = len(data) // 2
        data[middle : middle + 4] = bytes(255 - b for b in data[middle : middle + 4])
    else:  # "second-half-zeroed"
        data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "marker", "config", "config-same-size", "bytes-same-size", "second-half-zeroed"])
def test_a_corrupt_cache_entry_is_converted_again(hub, damage):
    references, calls = hub
    folder = resolve_model("av2t-sam-s4")
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "marker":
        (folder / MARKER).write_text("{not json")
    elif damage == "config":
        (folder / "config.json").write_text("{}")
    elif damage == "config-same-size":  # garbage of the same length: only a checksum tells
        config = folder / "config.json"
        config.write_text("#" * config.stat().st_size)
    else:  # the weights damaged at the same size: the header still parses, the model still loads
        damage_in_place(weights, damage)
    assert len(calls) == 1
    model = avseg.load_model("av2t-sam-s4").eval()
    assert len(calls) == 2 and isinstance(model, AV2TSAM)
    batch = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch), references["av2t-sam-s4"](**batch), rtol=0, atol=0)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "a temporary folder was left behind"


@pytest.mark.parametrize("foreign", ["no-marker", "a-file-avseg-does-not-write", "a-link"])
def test_a_folder_avseg_did_not_write_is_refused_not_deleted(hub, tmp_path, foreign, capsys):
    """At an entry's place, something that is not a finished entry and that avseg did not write: one line,
    and every file is still there."""
    _, calls = hub
    folder = resolve_model("av2t-sam-s4")
    if foreign == "no-marker":
        (folder / MARKER).unlink()
    elif foreign == "a-file-avseg-does-not-write":
        (folder / "notes.txt").write_text("mine")
        (folder / "config.json").write_text("{}")  # and the entry no longer complete
    else:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "notes.txt").write_text("mine")
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        folder.symlink_to(elsewhere)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    assert main(["segment", str(video), "--model", "av2t-sam-s4", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(folder) in error and ("avseg did not write it" in error or "not a folder avseg wrote" in error), error
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.name != "clip.mp4") == before
    assert len(calls) == 1


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


SEGMENT_EACH_NAME = """
import sys, time
import avseg.hub.download as download
from avseg.cli import main
from avseg.hub.pretrained import find_pretrained
video, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
for name in names:
    download._probes.clear()  # each name as its own command would find it
    print(f"--- {name}", file=sys.stderr, flush=True)
    start = time.monotonic()
    row = find_pretrained(name)
    expression = ["--expression", "the dog"] if row is not None and row.needs_expression else []
    code = main(["segment", video, "--model", name, "--out", out, *expression])
    print(f"--- {code} {time.monotonic() - start:.2f}", file=sys.stderr, flush=True)
"""


def without_network(tmp_path, endpoint: str) -> dict:
    """The environment of a user whose machine has no network and who has not set HF_HUB_OFFLINE."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "AVSEG_CACHE", "HF_HUB_CACHE")}
    return {**env, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_without_a_network_every_name_is_one_line_within_seconds(tmp_path):
    """huggingface_hub retried a refused hub for ~25 s, a line per try; zeroshot-sam3 ended in transformers'
    text and a repo id listed seven file patterns. Each is now one line naming HF_HUB_OFFLINE and hf download."""
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    names = [row.name for row in pretrained_models()] + ["org/some-model@v1"]
    result = subprocess.run(
        [sys.executable, "-c", SEGMENT_EACH_NAME, str(video), str(tmp_path / "out"), *names],
        env=without_network(tmp_path, f"http://127.0.0.1:{closed_port()}"), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    reports = result.stderr.split("--- ")[1:]
    assert [report.splitlines()[0] for report in reports[::2]] == names
    for name, report, ending in zip(names, reports[::2], reports[1::2]):
        lines = report.splitlines()[1:]
        code, seconds = ending.split()
        assert code == "2" and len(lines) == 1 and lines[0].startswith("avseg: error: "), (name, lines)
        assert "HF_HUB_OFFLINE" in lines[0] and "`hf download " in lines[0] and "could not be reached" in lines[0], lines[0]
        assert float(seconds) < 15, (name, seconds)
    assert "laion/larger_clap_general" in reports[2 * names.index("zeroshot-sam3")]
    assert "pattern" not in result.stderr and "model.safetensors or" not in result.stderr


def test_a_hub_that_never_answers_is_one_line_within_seconds(tmp_path):
    """A listening socket that accepts and never answers (a firewall that drops, a dead proxy): the
    probe gives up after its own timeout, and huggingface_hub makes no request of its own."""
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "avseg.cli", "segment", str(video), "--model", "av2t-sam-s4", "--out", str(tmp_path / "out")],
            env=without_network(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}"), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        seconds = time.monotonic() - start
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "Kyungbok/AV2T-SAM" in result.stderr and "HF_HUB_OFFLINE" in result.stderr and "hf download" in result.stderr
    assert seconds < 15


def test_cached_weights_load_without_a_network_and_offline_asks_nothing(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    import avseg.hub.download as download

    avseg.load_model("av2t-sam-s4")  # converted while offline
    monkeypatch.setattr(download, "_answers", lambda endpoint: pytest.fail("HF_HUB_OFFLINE=1, yet the hub was asked"))
    assert isinstance(avseg.load_model("av2t-sam-s4"), AV2TSAM)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(download, "_answers", lambda endpoint: False)
    assert isinstance(avseg.load_model("av2t-sam-ms3"), AV2TSAM)  # from the cache, as huggingface_hub does when offline
    assert constants.HF_HUB_OFFLINE is False, "huggingface_hub was left offline"


def test_an_avseg_cache_that_is_a_file_is_one_line(hub, tmp_path, monkeypatch, capsys):
    (tmp_path / "cache-file").write_text("not a folder")
    monkeypatch.setenv("AVSEG_CACHE", str(tmp_path / "cache-file"))
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    assert main(["segment", str(video), "--model", "av2t-sam-s4", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "AVSEG_CACHE" in error and str(tmp_path / "cache-file") in error
    assert (tmp_path / "cache-file").read_text() == "not a folder"


def set_folder_modes(folder, mode: int) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(mode)


def read_only(monkeypatch, folder):
    """``folder`` read-only, as a shared or mounted cache is: its modes, and for root (whom modes do not
    stop) the kernel's answer to anyone else, EACCES, from the calls that make folders and files."""
    set_folder_modes(folder, 0o555)
    if os.geteuid() != 0:
        return

    def inside(path) -> bool:
        return os.path.abspath(path).startswith(str(folder) + os.sep)

    def refuse(call):
        def refused(path, *args, **kwargs):
            if inside(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return call(path, *args, **kwargs)

        return refused

    open_file = os.open
    monkeypatch.setattr(os, "mkdir", refuse(os.mkdir))
    monkeypatch.setattr(os, "open", lambda path, flags, *a, **k: refuse(open_file)(path, flags, *a, **k) if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) else open_file(path, flags, *a, **k))
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: False if mode & os.W_OK and inside(path) else True)


def test_a_read_only_hf_home_is_one_line(hub, tmp_path, monkeypatch, capsys):
    """The hub files are cached (a shared, read-only HF_HOME); the conversion cache beside them cannot be written."""
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    home = tmp_path / "hf"
    try:
        with monkeypatch.context() as patch:
            read_only(patch, home)
            code = main(["segment", str(video), "--model", "av2t-sam-s4", "--out", str(tmp_path / "out")])
    finally:
        set_folder_modes(home, 0o755)
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "AVSEG_CACHE" in error and str(home) in error, error


@pytest.fixture()
def served(tmp_path, monkeypatch):
    """``serve(repos)``: the stand-in hub over HTTP with these repos, and avseg pointed at it with
    downloads on (HF_HUB_OFFLINE unset, an empty HF_HOME, no token)."""
    import huggingface_hub.constants as constants

    servers = []

    def serve(repos: dict[str, dict[str, bytes]]) -> ServedHub:
        servers.append(ServedHub(repos))
        use_hub_cache(monkeypatch, tmp_path, offline=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", servers[-1].url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        return servers[-1]

    yield serve
    for server in servers:
        server.close()


def official_bytes(model: AV2TSAM, tmp_path) -> bytes:
    torch.save(official_av2t_state(model), tmp_path / "official.pth")
    return (tmp_path / "official.pth").read_bytes()


def test_the_checkpoint_is_picked_from_the_repos_listing_not_guessed(served, tmp_path, monkeypatch):
    """The release's checkpoint under another name of the training script's pattern, in a folder: found
    through the listing, downloaded, converted, and the same model."""
    tiny_config_patch(monkeypatch)
    reference = randomised(AV2TSAM(AV2TSAMConfig.tiny()), seed=3).eval()
    name = "checkpoints/avs_mul_adapter_evf_sam2_s4_0.5_0.0_best.pth"
    hub = served({AV2T_REPO: {"README.md": b"# AV2T-SAM", name: official_bytes(reference, tmp_path)}})
    model = avseg.load_model("av2t-sam-s4").eval()
    batch = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch), reference(**batch), rtol=0, atol=0)
    assert ("GET", f"/api/models/{AV2T_REPO}/tree/main") in hub.requests
    assert not [path for method, path in hub.requests if "README" in path], "a file the row does not match was downloaded"


def test_a_repo_of_backbones_says_what_it_holds_in_one_line(served, tmp_path, capsys):
    served({AV2T_REPO: {"README.md": b"# backbones", "CLAP_weights_2023.pth": b"clap", "evf_sam2/pytorch_model.bin": b"evf"}})
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    assert main(["segment", str(video), "--model", "av2t-sam-ms3", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds no trained AV2T-SAM checkpoint for av2t-sam-ms3" in error
    assert "3 files: CLAP_weights_2023.pth, README.md, evf_sam2/pytorch_model.bin" in error


def test_two_candidate_checkpoints_are_named_not_chosen(served, capsys, tmp_path):
    served({AV2T_REPO: {"a_mul_adapter_evf_sam2_s4_0.5_0.5_best.pth": b"1", "b_mul_adapter_evf_sam2_s4_0.0_0.5_best.pth": b"2"}})
    with pytest.raises(AvsegError) as error:
        avseg.load_model("av2t-sam-s4")
    assert "2 files could be av2t-sam-s4's checkpoint" in str(error.value) and "avseg convert av2t-sam" in str(error.value)


def test_offline_the_hub_cache_is_the_listing_and_says_what_it_holds(tmp_path, monkeypatch):
    cache = use_hub_cache(monkeypatch, tmp_path)
    publish(cache, AV2T_REPO, {"evf_sam2.bin": b"a backbone"})
    with pytest.raises(AvsegError) as error:
        avseg.load_model("av2t-sam-s4")
    message = str(error.value)
    assert "\n" not in message and "not in the hub cache" in message and "it holds 1 file: evf_sam2.bin of this repo" in message
    assert "HF_HUB_OFFLINE" in message and "hf download Kyungbok/AV2T-SAM" in message


def clap_state() -> dict[str, torch.Tensor]:
    """The top-level layout of MS-CLAP's CLAP_weights_2023.pth: audio and caption encoders, no AV2T-SAM parts."""
    return {"audio_encoder.base.htsat.patch_embed.proj.weight": torch.zeros(4, 1, 2, 2), "caption_encoder.base.embeddings.word_embeddings.weight": torch.zeros(8, 4)}


def evf_state() -> dict[str, torch.Tensor]:
    """EVF-SAM2's hub weights: the official AV2T-SAM state's ``model.`` part, without the prefix."""
    official = official_av2t_state(AV2TSAM(AV2TSAMConfig.tiny()))
    return {key[len("model.") :]: value for key, value in official.items() if key.startswith("model.")}


@pytest.mark.parametrize("backbone, named", [(clap_state, "MS-CLAP"), (evf_state, "EVF-SAM2")])
def test_the_converter_refuses_a_backbone_in_one_line(tmp_path, capsys, backbone, named):
    torch.save(backbone(), tmp_path / "_mul_adapter_evf_sam2_s4_0.0_0.0_best.pth")
    argv = ["convert", "av2t-sam", str(tmp_path / "_mul_adapter_evf_sam2_s4_0.0_0.0_best.pth"), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"a backbone, {named}" in error and "not a trained AV2T-SAM checkpoint" in error
    assert not (tmp_path / "out").exists()
