import errno
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from avseg.data.avsbench import AVSS, MS3, S4, read_class_names, voc_palette
from avseg.data.files import read_binary_mask, read_color_mask, read_csv, resize
from avseg.data.refavs import RefAVS
from avseg.data.synthetic import load_objects, split_of, write_dataset
from avseg.errors import AvsegError, ConfigError, DatasetError


def test_s4_layout_and_flags(synthetic):
    root = synthetic / "s4"
    assert (root / "s4_data/visual_frames/train").is_dir()
    train, test = S4(root, "train"), S4(root, "test")
    assert len(train) + len(test) + len(S4(root, "val")) == 15
    clip = train[0]
    assert clip.frames.shape == (5, 48, 48, 3) and clip.masks.shape == (5, 48, 48)
    assert clip.mask_valid.tolist() == [True, False, False, False, False]
    assert clip.masks[0].any() and not clip.masks[1:].any()
    assert set(np.unique(clip.masks)) <= {0, 1}
    assert clip.sample_rate == 16000 and len(clip.waveform) == 5 * 16000
    assert clip.meta["category"] in {"bell", "drum", "flute", "guitar", "dog", "siren", "engine", "bird"}
    for clip in test:
        assert clip.mask_valid.all() and all(m.any() for m in clip.masks)  # single source sounds throughout


def test_s4_accepts_parent_folder_and_resamples(synthetic, tmp_path):
    (tmp_path / "avsbench").mkdir()
    (tmp_path / "avsbench" / "Single-source").symlink_to(synthetic / "s4")
    clip = S4(tmp_path / "avsbench", "val", sample_rate=44100, size=(32, 24))[0]
    assert clip.frames.shape == (5, 24, 32, 3) and clip.masks.shape == (5, 24, 32)
    assert clip.sample_rate == 44100 and len(clip.waveform) == 5 * 44100


def test_ms3_has_all_masks_and_silent_clips(synthetic):
    clips = list(MS3(synthetic / "ms3", split=None))
    assert len(clips) == 15
    assert all(c.mask_valid.all() and c.frames.shape[0] == 5 for c in clips)
    assert (synthetic / "ms3/ms3_data/visual_frames/synth00000/synth00000.mp4_1.png").is_file()
    palette_mask = Image.open(synthetic / "ms3/ms3_data/gt_masks/train/synth00000/synth00000_1.png")
    assert palette_mask.mode == "P"
    empty_clips = [c for c in clips if not c.masks.any()]
    assert empty_clips, "MS3 must include clips whose every mask is empty"
    for clip in empty_clips:  # silent clips carry only the noise floor
        assert np.sqrt(np.mean(clip.waveform**2)) < 0.01


def test_masks_follow_the_sound(synthetic):
    """A frame's mask is non-empty exactly when some visible object sounds in that second."""
    objects = load_objects(synthetic / "ms3")
    for clip in MS3(synthetic / "ms3", split=None):
        sounding = objects[clip.id]["sounding"]
        assert [bool(m.any()) for m in clip.masks] == [bool(names) for names in sounding]
        rms = np.sqrt(np.mean(clip.waveform.reshape(5, -1) ** 2, axis=1))
        for second, names in enumerate(sounding):
            assert (rms[second] > 0.02) == bool(names)
        assert all(set(s) <= set(v) for s, v in zip(sounding, objects[clip.id]["visible"]))


def test_every_class_is_silent_about_half_the_time(tmp_path):
    write_dataset("ms3", tmp_path, videos=60, seed=1, size=32)
    objects = load_objects(tmp_path)
    visible = sounding = 0
    for entry in objects.values():
        for vis, snd in zip(entry["visible"], entry["sounding"]):
            visible += len(vis)
            sounding += len(snd)
    assert 0.3 < sounding / visible < 0.6


def test_avss_padding_flags_and_classes(synthetic):
    dataset = AVSS(synthetic / "avss", split=None)
    assert dataset.num_classes == 9 and dataset.class_names[0] == "background"
    by_subset = {}
    for clip in dataset:
        by_subset.setdefault(clip.meta["subset"], []).append(clip)
        assert clip.frames.shape[0] == 10 and clip.masks.shape[0] == 10
    assert set(by_subset) == {"v1s", "v1m", "v2"}
    for clip in by_subset["v1m"]:
        assert clip.frame_valid.tolist() == [True] * 5 + [False] * 5
        assert clip.mask_valid.tolist() == [True] * 5 + [False] * 5
        assert not clip.frames[5:].any()
    v1s_train = [c for c in by_subset["v1s"] if c.meta["split"] == "train"]
    assert v1s_train and all(c.mask_valid.tolist() == [True] + [False] * 9 for c in v1s_train)
    assert all(c.frame_valid.all() and c.mask_valid.all() for c in by_subset["v2"])
    classes = set(np.unique(np.concatenate([c.masks[c.mask_valid].ravel() for c in dataset])))
    assert len(classes - {0}) >= 3, "AVSS must use several classes"
    assert any(c.mask_valid.any() and not c.masks.any() for c in dataset), "AVSS must include all-empty clips"


def test_avss_semantic_labels_agree_with_colour_labels(synthetic):
    clip = AVSS(synthetic / "avss", split="test")[0]
    folder = synthetic / "avss" / clip.meta["subset"] / clip.id
    for k in np.flatnonzero(clip.mask_valid):
        semantic = np.asarray(Image.open(folder / "labels_semantic" / f"{k}.png"))
        np.testing.assert_array_equal(semantic, clip.masks[k])


def test_refavs_rows_and_null_split(synthetic):
    root = synthetic / "refavs"
    seen = RefAVS(root, "test_s")
    null = RefAVS(root, "test_n")
    assert len(null) > 0
    for clip in null:
        assert clip.meta["null"] and clip.mask_valid.all() and not clip.masks.any()
        assert clip.frames.shape == (10, 48, 48, 3)
    for clip in seen:
        assert not clip.meta["null"]
        assert clip.masks.any() and clip.meta["expression"].startswith("the ")
    rows = read_csv(root / "metadata.csv", ["vid", "uid", "split", "fid", "exp"])
    assert {r["split"] for r in rows} == {"train", "val", "test_s", "test_u", "test_n"}


def test_refavs_skips_unknown_splits(synthetic, tmp_path):
    import shutil

    shutil.copytree(synthetic / "refavs", tmp_path / "r")
    with open(tmp_path / "r" / "metadata.csv", "a") as handle:
        handle.write("vid00000,vid00000_bell_9,TODO,9,the bell\n")
    assert len(RefAVS(tmp_path / "r", split=None)) == len(RefAVS(synthetic / "refavs", split=None))


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic(tmp_path):
    for name in ("a", "b"):
        write_dataset("avss", tmp_path / name, videos=4, seed=5, size=32)
    write_dataset("avss", tmp_path / "c", videos=4, seed=6, size=32)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_split_assignment():
    splits = [split_of(i, 10) for i in range(10)]
    assert splits == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert [split_of(i, 2) for i in range(2)] == ["train", "train"]


def test_binary_mask_rules(tmp_path):
    values = np.array([[0, 1], [255, 0]], dtype=np.uint8)
    for mode in ("L", "P"):
        Image.fromarray(values, mode=mode).save(tmp_path / f"{mode}.png")
        np.testing.assert_array_equal(read_binary_mask(tmp_path / f"{mode}.png"), [[0, 1], [1, 0]])
    Image.fromarray(values.astype(bool)).save(tmp_path / "one.png")
    np.testing.assert_array_equal(read_binary_mask(tmp_path / "one.png"), [[0, 1], [1, 0]])
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1, 2] = 128
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_binary_mask(tmp_path / "rgb.png"), [[0, 1], [0, 0]])
    np.testing.assert_array_equal(resize(read_binary_mask(tmp_path / "L.png"), (4, 4), Image.NEAREST)[3], [1, 1, 0, 0])
    Image.new("CMYK", (2, 2)).save(tmp_path / "cmyk.jpg")
    with pytest.raises(DatasetError, match="cmyk.jpg: unexpected mask image mode 'CMYK'"):
        read_binary_mask(tmp_path / "cmyk.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetError, match="broken.png: unreadable image"):
        read_binary_mask(tmp_path / "broken.png")


def test_voc_palette_and_colour_masks(tmp_path):
    palette = voc_palette(71)
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[70].tolist() == [32, 128, 128]
    assert len({tuple(c) for c in palette}) == 71
    rgb = np.stack([palette[[0, 5]], palette[[70, 0]]]).astype(np.uint8)
    rgb[1, 1] = [1, 2, 3]  # not in the palette: background
    rgb[0, 0] = palette[12]
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_color_mask(tmp_path / "c.png", palette), [[12, 5], [70, 0]])


def test_class_names_file(tmp_path):
    (tmp_path / "l.json").write_text(json.dumps({"b": 2, "background": 1, "c": 3}))
    assert read_class_names(tmp_path / "l.json") == ["background", "b", "c"]
    (tmp_path / "bad.json").write_text(json.dumps({"a": 1, "b": 5}))
    with pytest.raises(DatasetError, match="bad.json: class indices must be consecutive"):
        read_class_names(tmp_path / "bad.json")


def test_missing_frame_names_the_file(synthetic, tmp_path):
    import shutil

    shutil.copytree(synthetic / "ms3", tmp_path / "ms3")
    victim = tmp_path / "ms3/ms3_data/visual_frames/synth00002/synth00002.mp4_3.png"
    victim.unlink()
    dataset = MS3(tmp_path / "ms3", split=None)
    with pytest.raises(DatasetError, match=r"synth00002\.mp4_3\.png: missing file"):
        dataset.check()


def test_s4_columns_by_position_as_the_official_loader(synthetic, tmp_path):
    import shutil

    shutil.copytree(synthetic / "s4", tmp_path / "s4")
    csv_path = tmp_path / "s4" / "s4_meta_data.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(["vid,start_sec,label,split", *lines[1:]]) + "\n")
    clips = S4(tmp_path / "s4", "test")
    assert len(clips) == len(S4(synthetic / "s4", "test")) and clips[0].meta["category"] == S4(synthetic / "s4", "test")[0].meta["category"]


def test_missing_column_and_bad_split(synthetic, tmp_path):
    (tmp_path / "s4_meta_data.csv").write_text("name,start,category\nx,0,dog\n")
    with pytest.raises(DatasetError, match=r"s4_meta_data.csv: missing column\(s\) split"):
        S4(tmp_path, "train")
    (tmp_path / "s4_meta_data.csv").write_text("name,split\nx,train\n")
    with pytest.raises(DatasetError, match=r"s4_meta_data.csv: missing column 3 \(category\)"):
        S4(tmp_path, "train")
    with pytest.raises(ConfigError, match="unknown split 'test_n'"):
        S4(synthetic / "s4", "test_n")
    with pytest.raises(DatasetError, match="nowhere: dataset folder does not exist"):
        MS3(tmp_path / "nowhere")
    (tmp_path / "metadata.csv").write_text("vid,uid,s_min,s_sec,a_obj,split,label\nv,u,0,0,x,train,v3\n")
    with pytest.raises(DatasetError, match="line 2: unknown label 'v3'"):
        AVSS(tmp_path, "train")


def test_bad_audio_in_dataset(synthetic, tmp_path):
    import shutil

    shutil.copytree(synthetic / "s4", tmp_path / "s4")
    wav = next((tmp_path / "s4/s4_data/audio_wav/test").rglob("*.wav"))
    wav.write_text("garbage")
    with pytest.raises(DatasetError, match=rf"{wav.name}: not a readable media file"):
        S4(tmp_path / "s4", "test").check()


def test_synth_argument_checks(tmp_path):
    with pytest.raises(ConfigError, match="unknown layout"):
        write_dataset("s5", tmp_path, 3)
    with pytest.raises(ConfigError, match="--videos"):
        write_dataset("s4", tmp_path, 0)
    with pytest.raises(ConfigError, match="--size must be between 32 and 4096 pixels, got 100000"):
        write_dataset("s4", tmp_path, 3, size=100000)  # not a 74 GiB allocation error
    assert not any(tmp_path.iterdir())


def test_synth_refuses_a_folder_with_other_files_and_leaves_none_behind(tmp_path, monkeypatch):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(AvsegError, match=r"taken: already holds files avseg did not write \(notes.txt\)"):
        write_dataset("s4", tmp_path / "taken", 3, size=32)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("avseg.data.synthetic.write_wav", full_disk)
    with pytest.raises(AvsegError, match=r"new/data: cannot write \(No space left on device\)"):
        write_dataset("s4", tmp_path / "new" / "data", 3, size=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no partial dataset, no empty new/


@pytest.fixture()
def s4_copy(synthetic, tmp_path):
    shutil.copytree(synthetic / "s4", tmp_path / "s4")
    return tmp_path / "s4"


def test_a_mask_of_another_size_than_its_frame_is_an_error(s4_copy):
    """The official loaders never resize masks; stretching one would silently score a wrong annotation."""
    mask = next((s4_copy / "s4_data/gt_masks/test").rglob("*_2.png"))
    Image.open(mask).resize((48, 24)).save(mask)
    for size in (None, (32, 32)):
        with pytest.raises(DatasetError, match=rf"{mask.name}: mask is 48x24 but its frame {mask.name} is 48x48"):
            S4(s4_copy, "test", size=size).check()


def test_avss_colour_mask_of_another_aspect_is_an_error(synthetic, tmp_path):
    shutil.copytree(synthetic / "avss", tmp_path / "avss")
    mask = next((tmp_path / "avss").rglob("labels_rgb/3.png"))
    Image.open(mask).resize((24, 48)).save(mask)
    with pytest.raises(DatasetError, match=r"3.png: mask is 24x48 but its frame 3.jpg is 48x48"):
        AVSS(tmp_path / "avss", split=None).check()


def test_frames_of_different_sizes_in_one_clip_are_an_error(s4_copy):
    frame = next((s4_copy / "s4_data/visual_frames/val").rglob("*_4.png"))
    Image.open(frame).resize((40, 48)).save(frame)
    for size in (None, (32, 32)):
        with pytest.raises(DatasetError, match=rf"{frame.name}: frame is 40x48 but .*_1.png of the same clip is 48x48"):
            S4(s4_copy, "val", size=size).check()


def test_metadata_with_a_byte_order_mark(synthetic, tmp_path):
    """Excel writes UTF-8 csvs with a BOM; it must not hide the first column."""
    shutil.copytree(synthetic / "avss", tmp_path / "avss")
    meta = tmp_path / "avss" / "metadata.csv"
    meta.write_bytes(b"\xef\xbb\xbf" + meta.read_bytes())
    clips = AVSS(tmp_path / "avss", split="test")
    assert [c.meta["vid"] for c in clips] == [c.meta["vid"] for c in AVSS(synthetic / "avss", split="test")]
    assert all(c.meta["vid"].startswith("vid") for c in clips)


def test_readers_fill_sounding_labels_from_what_each_dataset_says(synthetic):
    from avseg.config import DataConfig
    from avseg.engine.data import open_split

    for clip in S4(synthetic / "s4", None):
        assert clip.meta["sounding_labels"] == [[clip.meta["category"]]] * 5
    avss = AVSS(synthetic / "avss", None)
    for clip in avss:
        labels = clip.meta["sounding_labels"]
        assert len(labels) == clip.num_frames == 10
        for t in range(10):
            present = sorted(avss.class_names[c] for c in np.unique(clip.masks[t]) if c > 0)
            assert sorted(labels[t]) == present and (clip.frame_valid[t] or labels[t] == [])
    assert any(len(frame) > 1 for clip in avss for frame in clip.meta["sounding_labels"])  # multi-source frames
    for clip in RefAVS(synthetic / "refavs", None):
        name = clip.meta["expression"].removeprefix("the ")
        expected = [[] if clip.meta["null"] or not clip.masks[t].any() else [name] for t in range(10)]
        assert clip.meta["sounding_labels"] == expected
    assert all("sounding_labels" not in clip.meta for clip in MS3(synthetic / "ms3", None))  # no category in MS3's files
    # the synthetic benchmark supplies MS3's from its record of what sounds, through the same field
    objects = load_objects(synthetic / "ms3")
    for clip in open_split(DataConfig(layout="ms3", root=str(synthetic / "ms3")), "train"):
        assert clip.meta["sounding_labels"] == objects[clip.id]["sounding"]
        assert clip.meta["visible_labels"] == objects[clip.id]["visible"]  # off-screen audio avoids what is visible
