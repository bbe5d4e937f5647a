"""VCT at full size: avseg against the release (spyflying/VCT_AVS), one forward of a few 384x384 frames on the same
weights and inputs, each side in a fresh process: seconds and peak memory, and the logits compared.

    python benchmarks/vct.py --official-src PATH/TO/VCT_AVS --official-python PATH/TO/venv/bin/python \
        --official-path PATH/TO/detectron2 [--official-path MORE] --weights STATE.pt [--subset s4|ms3|ss] \
        [--frames 2] [--repeats 2] [--threads 2] [--tasks infer,train]

``STATE.pt``: a state dict of the release's ``VCT`` (its checkpoints' ``model``, or random weights); avseg converts it
once with ``avseg convert vct``. The release runs from its own checkout and environment (detectron2 and friends, which
avseg does not need), built from its ``configs/{subset}_swinb_384/COMBO_SWINB.yaml``; its deformable attention takes
its pure-PyTorch fallback when the compiled op is absent (as on CPU). ``--official-path`` entries go first on its
``sys.path`` (detectron2's source, any stand-ins the environment needs).

Per side and task, ``--repeats`` fresh processes alternate (official first, then avseg first, ...). Each loads the
weights, runs one untimed warm-up step, then one timed step: ``infer`` a no-grad forward; ``train`` a training-mode
forward and a backward of the sum of the final mask logits' means (stochastic depth off). Peak memory is the
process's peak RSS (``VmHWM``) after loading and at the end. The final mask logits of both sides are compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import machine, spread, table

WORKER = r"""
import json, sys, time
import torch
side, task, weights, subset, frames, threads, out = sys.argv[1:8]
frames, threads = int(frames), int(threads)
torch.set_num_threads(threads)
def peak():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
generator = torch.Generator().manual_seed(1)
images = torch.rand(frames, 3, 384, 384, generator=generator) * 255
mask_images = torch.randint(0, 256, (frames, 3, 384, 384), generator=generator).float()
log_mel = torch.randn(frames, 1, 96, 64, generator=generator)
if side == "official":
    src, config = sys.argv[8], sys.argv[9]
    from detectron2.config import get_cfg
    from detectron2.projects.deeplab import add_deeplab_config
    from detectron2.modeling import build_model
    sys.path.insert(0, src)
    from models import add_maskformer2_config, add_audio_config, add_fuse_config
    cfg = get_cfg(); add_deeplab_config(cfg); add_audio_config(cfg); add_fuse_config(cfg); add_maskformer2_config(cfg)
    cfg.merge_from_file(config)
    cfg.MODEL.AUDIO.FREEZE_AUDIO_EXTRACTOR = False; cfg.MODEL.SWIN.DROP_PATH_RATE = 0.0; cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    # With the modules' version metadata, as detectron2's checkpointer loads it: without it the release's head takes
    # the state dict for its legacy layout and renames its keys (VCT_Model_Head._load_from_state_dict).
    state = __import__("collections").OrderedDict(torch.load(weights, weights_only=True))
    state._metadata = model.state_dict()._metadata
    model.load_state_dict(state, strict=True)
    item = {"images": images, "pre_masks": mask_images, "audio_log_mel": log_mel, "height": 384, "width": 384, "category_label": 1}
    if subset == "ss":
        item["vid_temporal_mask_flag"] = torch.ones(frames); item["gt_temporal_mask_flag"] = torch.ones(frames)
    captured = {}
    head = model.sem_seg_head.forward
    def keep(*args):
        captured["out"] = head(*args)
        return captured["out"]
    model.sem_seg_head.forward = keep
    def step():
        if task == "infer":
            with torch.no_grad():
                model([item])
        else:
            model.train()
            x = [(i - model.pixel_mean) / model.pixel_std for i in images]
            m = [(i - model.pixel_mean) / model.pixel_std for i in mask_images]
            with torch.no_grad():
                audio = model.audio_backbone(log_mel)
            features, pre = model.backbone(torch.stack(x)), model.pre_sam_backbone(torch.stack(m))
            for i, key in enumerate(features):
                features[key] = features[key] + model.scale_factor_module[i](pre[key]) * pre[key]
            model.sem_seg_head(features, audio)["pred_masks"].mean().backward()
        return captured["out"]["pred_masks"]
    model.eval()
else:
    from avseg.models.vct.model import VCT, PIXEL_MEAN, PIXEL_STD
    model = VCT.from_pretrained(weights)
    for module in model.modules():
        if type(module).__name__ == "SwinDropPath":
            module.drop_prob = 0.0
    mean, std = torch.tensor(PIXEL_MEAN)[:, None, None], torch.tensor(PIXEL_STD)[:, None, None]
    batch = {"pixels": (images - mean) / std, "mask_images": (mask_images - mean) / std, "spectrograms": log_mel[:, 0]}
    def step():
        if task == "infer":
            model.eval()
            with torch.no_grad():
                return model(**batch).final_mask_logits
        model.train()
        logits = model(**batch).final_mask_logits
        logits.mean().backward()
        return logits
loaded = peak()
logits = step()
started = time.perf_counter()
step()
seconds = time.perf_counter() - started
torch.save(logits.detach(), out + ".pt")
json.dump({"seconds": seconds, "load_peak_mib": loaded, "peak_mib": peak(), "torch": torch.__version__}, open(out, "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-src", required=True, type=Path)
    parser.add_argument("--official-python", required=True)
    parser.add_argument("--official-path", action="append", default=[])
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--subset", default="s4", choices=["s4", "ms3", "ss"])
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", default="infer,train")
    args = parser.parse_args()

    import torch

    from avseg.models.vct.convert import convert

    work = Path(tempfile.mkdtemp(prefix="vct-bench-"))
    torch.save({"model": torch.load(args.weights, weights_only=True)}, work / "model_best.pth")
    convert(work / "model_best.pth", work / "avseg")
    config = args.official_src / "configs" / f"{args.subset}_swinb_384" / "COMBO_SWINB.yaml"
    worker = work / "worker.py"
    worker.write_text(WORKER)
    src = Path(__file__).resolve().parent.parent / "src"
    rows = []
    for task in args.tasks.split(","):
        runs: dict[str, list[dict]] = {"official": [], "avseg": []}
        for repeat in range(args.repeats):
            for side in (("official", "avseg") if repeat % 2 == 0 else ("avseg", "official")):
                out = str(work / f"{side}-{task}-{repeat}.json")
                settings = [args.subset, str(args.frames), str(args.threads), out]
                if side == "official":
                    command = [args.official_python, str(worker), side, task, str(args.weights), *settings, str(args.official_src), str(config)]
                    env = {"PYTHONPATH": ":".join([*args.official_path, str(args.official_src)])}
                else:
                    command = [sys.executable, str(worker), side, task, str(work / "avseg"), *settings]
                    env = {"PYTHONPATH": str(src)}
                subprocess.run(command, check=True, env={**__import__("os").environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                runs[side].append({**json.loads(Path(out).read_text()), "logits": out + ".pt"})
        difference = float((torch.load(runs["avseg"][0]["logits"]) - torch.load(runs["official"][0]["logits"])).abs().max())
        seconds = {side: [r["seconds"] for r in runs[side]] for side in runs}
        peaks = {side: statistics.median(r["peak_mib"] for r in runs[side]) for side in runs}
        loads = {side: statistics.median(r["load_peak_mib"] for r in runs[side]) for side in runs}
        rows.append([
            task, spread(seconds["official"]), spread(seconds["avseg"]), f"{statistics.median(seconds['avseg']) / statistics.median(seconds['official']):.2f}",
            f"{loads['official']:.0f}", f"{loads['avseg']:.0f}", f"{peaks['official']:.0f}", f"{peaks['avseg']:.0f}", f"{peaks['avseg'] / peaks['official']:.2f}", f"{difference:.1e}",
        ])
    print(machine())
    print(f"VCT {args.subset}, {args.frames} frames of 384x384, {args.threads} threads, {args.repeats} fresh processes per side")
    print(table(["task", "official s", "avseg s", "time ratio", "official load peak MiB", "avseg load peak MiB", "official peak MiB", "avseg peak MiB", "memory ratio", "max |Δ mask logits|"], rows))


if __name__ == "__main__":
    main()
