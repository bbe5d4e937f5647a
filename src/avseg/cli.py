"""The ``avseg`` command. Sub-commands only parse their arguments and call the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avseg import __version__
from avseg.config import MAX_AUDIO_RATE, MIN_AUDIO_RATE
from avseg.data.dense import MAX_FPS as MAX_SYNTHETIC_FPS
from avseg.data.synthetic import MAX_SIZE as MAX_SYNTHETIC_SIZE
from avseg.data.synthetic import MIN_SIZE as MIN_SYNTHETIC_SIZE
from avseg.engine.data import LAYOUTS, reader_class
from avseg.engine.dense import MAX_WINDOW
from avseg.errors import AvsegError, ConfigError
from avseg.models.architectures import MODELS

MAX_FRAME_SIZE = 8192
"""Beyond this, ``extract --size`` is a typo, not a resolution (8K video is 7680 wide)."""
ALLOW_SILENT_HELP = "a video without an audio track is segmented (extract: written) with silence as its audio, instead of refused"


def cmd_synth(args: argparse.Namespace) -> None:
    from avseg.data.synthetic import write_dataset

    counts = write_dataset(args.layout, args.out, args.videos, args.seed, args.size, args.fps, args.motion)
    splits = ", ".join(f"{split} {count}" for split, count in counts.items())
    dense = f"; videos at {args.fps} fps with every-frame masks{' (motion)' if args.motion else ''}" if args.fps else ""
    print(f"wrote a synthetic {args.layout} dataset to {args.out} ({splits}){dense}")


def cmd_check(args: argparse.Namespace) -> None:
    reader = reader_class(args.layout)
    splits = reader.splits if args.split == "all" else (args.split,)
    table = {}
    for split in splits:
        dataset = reader(args.root, split=split)
        if len(dataset):
            table[split] = dataset.check()
    if not table:
        raise AvsegError(f"{args.root}: no clips in split(s) {', '.join(splits)}")
    print(json.dumps(table, indent=1) if args.json else _format_counts(table))


def _format_counts(table: dict[str, dict[str, int]]) -> str:
    columns = list(next(iter(table.values())))
    lines = ["| split | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {split} | " + " | ".join(str(row[c]) for c in columns) + " |" for split, row in table.items()]
    return "\n".join(lines)


def cmd_probe(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from avseg.media import probe

    for path in args.videos:
        print(json.dumps(asdict(probe(path))))


def cmd_extract(args: argparse.Namespace) -> None:
    from PIL import Image

    from avseg.data.synthetic import write_wav
    from avseg.media import check_audio_track, iter_frames, probe, read_audio
    from avseg.outputs import staged_folder

    size = (args.size, args.size) if args.size else None
    info = probe(args.video)
    check_audio_track(args.video, info, args.allow_silent)
    waveform, rate = read_audio(args.video, args.rate, missing="silence")
    with staged_folder(args.out, replaceable={"frames": {"*.png": None}, "audio.wav": None}) as staging:
        (staging / "frames").mkdir()
        count = 0
        for count, frame in enumerate(iter_frames(args.video, args.sampling, size), start=1):
            Image.fromarray(frame.image).save(staging / "frames" / f"{count - 1}.png")
        write_wav(staging / "audio.wav", waveform, rate)
    silence = " (silence: the video has no audio track)" if not info.has_audio else ""
    print(f"wrote {count} frames and {len(waveform) / rate:.2f}s of {rate} Hz audio{silence} to {args.out}")


def cmd_cues(args: argparse.Namespace) -> None:
    from avseg.cues.pipeline import generate_cues, write_oracle_cues
    from avseg.errors import ConfigError

    if args.oracle and (args.captioner or args.llm):
        raise ConfigError("--oracle writes the synthetic visible names; it takes no --captioner or --llm")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    dataset = reader_class(args.layout)(args.data, split=None if args.split == "all" else args.split)
    if args.oracle:
        stats = write_oracle_cues(dataset, args.out)
    else:
        from avseg.cues.captioner import DEFAULT_CAPTIONER, Captioner
        from avseg.cues.llm import DEFAULT_LLM, CueLLM

        captioner = Captioner.from_pretrained(args.captioner or DEFAULT_CAPTIONER, device=args.device)
        llm = CueLLM.from_pretrained(args.llm or DEFAULT_LLM, device=args.device)
        stats = generate_cues(dataset, args.out, captioner, llm, args.batch_size, progress=True)
    print(
        f"cues for {stats.frames} frames in {args.out}: {stats.generated} new, "
        f"{stats.reused} copied from identical frames, {stats.cached} already there"
    )


def cmd_train(args: argparse.Namespace) -> None:
    from avseg.config import load_recipe
    from avseg.engine.train import train

    out = train(load_recipe(args.config, args.set), resume=args.resume, overwrite=args.overwrite)
    print(f"trained {out}: best model in {out / 'best'}, last in {out / 'final'}, metrics in {out / 'metrics.jsonl'}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from avseg.config import load_recipe
    from avseg.engine.report import evaluate_recipe, pretrained_recipe

    row, checkpoint, out = None, args.checkpoint, args.out
    if args.model is not None:
        if args.config is not None or args.checkpoint is not None:
            raise ConfigError("--model: evaluates a pretrained model by name on its own test set; give either --model NAME --data DIR, or a recipe with --checkpoint")
        recipe, checkpoint, row = pretrained_recipe(args.model, args.data, args.set)
        out = out or Path(recipe.output) / recipe.name / f"eval-{args.split or recipe.data.test_split}"
    elif args.config is None:
        raise ConfigError("evaluate: give a recipe (avseg evaluate RECIPE --checkpoint FOLDER) or a pretrained model (--model NAME --data DIR)")
    else:
        recipe = load_recipe(args.config, args.set + ([f"data.root={args.data}"] if args.data is not None else []))
    report = evaluate_recipe(
        recipe, checkpoint, args.split, args.perturb, out,
        silence_gate=not args.no_silence_gate, robust=args.robust, noise_dir=args.noise_dir,
        precision=args.precision, compile=args.compile, pretrained=row,
    )
    if report is not None:  # under torchrun, the first process reports
        print(report)


def cmd_segment(args: argparse.Namespace) -> int:
    from avseg.engine.corpus_run import SegmentOptions, segment_corpus

    options = {name: getattr(args, name) for name in SegmentOptions.__dataclass_fields__}
    return segment_corpus(args.videos, args.list, SegmentOptions(**options))


def cmd_push(args: argparse.Namespace) -> None:
    from avseg.hub.push import push_model

    url = push_model(args.folder, args.repo_id, private=args.private, revision=args.revision, licence=args.license)
    print(f"pushed {args.folder} to {url}; load it with avseg.load_model({args.repo_id!r})")


def cmd_convert(args: argparse.Namespace) -> None:
    if args.kind == "semantic-sam":
        from avseg.models.semantic_sam.convert import convert as convert_semantic_sam

        if args.projector or args.sam:
            raise ConfigError("--projector, --sam: not Semantic-SAM options")
        model = convert_semantic_sam(args.checkpoint, args.out)
        print(f"converted {args.checkpoint} (semantic-sam) -> {args.out}: Swin {model.config.swin['embed_dim']} wide, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; VCT's mask_generator: {args.out}")
        return
    if args.kind == "vct":
        from avseg.models.vct.convert import convert as convert_vct

        if args.projector:
            raise ConfigError("--projector: VCT has no projector (it is AV2T-SAM's)")
        model = convert_vct(args.checkpoint, args.out)
        config = model.config
        print(f"converted {args.checkpoint} (vct) -> {args.out}: {model.name}, {config.num_classes} classes, {config.num_prototypes} prototypes, {sum(p.numel() for p in model.trainable_parameters()) / 1e6:.1f}M trainable parameters")
        return
    if args.kind == "auralsam2":
        from avseg.models.auralsam2.convert import DEFAULT_SAM
        from avseg.models.auralsam2.convert import convert as convert_auralsam2

        if args.projector:
            raise ConfigError("--projector: AuralSAM2 has no projector (it is AV2T-SAM's)")
        model = convert_auralsam2(args.checkpoint, args.out, sam=args.sam or DEFAULT_SAM)
        trainable = sum(p.numel() for p in model.trainable_parameters())
        print(f"converted {args.checkpoint} (auralsam2) -> {args.out}: {model.name}, inference mode {model.inference_mode}, {trainable / 1e6:.1f}M trainable parameters")
        return
    from avseg.models.av2t_sam.convert import convert

    if args.sam:
        raise ConfigError("--sam: only for auralsam2 (the SAM 2 of a checkpoint that holds the AuralFuser alone)")
    model = convert(args.checkpoint, args.out, kind=args.kind, projector=args.projector)
    trainable = sum(p.numel() for p in model.trainable_parameters())
    print(f"converted {args.checkpoint} ({args.kind}) -> {args.out}: {model.name}, projector {model.config.projector}, {trainable / 1e6:.1f}M trainable parameters")


def cmd_models(args: argparse.Namespace) -> None:
    from avseg.hub.pretrained import format_models_table, pretrained_models
    from avseg.models.architectures import available_models

    models = available_models()
    if args.json:
        print(json.dumps(models, indent=1))
        return
    print("Pretrained models (load by name):\n")
    print(format_models_table(pretrained_models()))
    print("\nArchitectures (train them with a recipe; their model folders load by path):\n")
    for model in models:
        if model["kind"] == "architecture":
            print(f"- {model['name']}: {model['method']}. {model['description']}")


def cmd_demo(args: argparse.Namespace) -> None:
    from avseg.engine.demo import run_demo

    run_demo(args.out, args.set)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors on one line, like every other avseg error (``avseg: error: ...``, exit 2)."""

    def error(self, message: str):
        self.exit(2, f"avseg: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def int_between(low: int, high: int | None = None):
    """An argparse type: an integer in ``[low, high]`` (no upper bound if ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=("bf16", "fp16", "fp32"), help="autocast precision (default: bf16 on CUDA, fp32 on CPU; fp16 is CUDA only)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models' repeated blocks (the first call pays the compilation; its time is printed)")


def rate_option(text: str) -> str:
    """``--rate``: ``all`` or a whole number of frames per second, at least 1."""
    if text == "all" or (text.isdigit() and int(text) >= 1):
        return text
    raise argparse.ArgumentTypeError(f"expected all or a whole number of frames per second (at least 1), got {text!r}")


def cmd_app(args: argparse.Namespace) -> None:
    from avseg.app.inputs import check_max_seconds
    from avseg.app.scratch import process_temporary_folder
    from avseg.errors import ConfigError

    check_max_seconds(args.max_seconds)
    with process_temporary_folder():  # before Gradio and torch fix where their temporary files go
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise ConfigError("avseg app needs the app extra: pip install 'avseg[app]'") from None
        from avseg.app.server import serve

        serve(args.model, host=args.host, port=args.port, max_seconds=args.max_seconds, device=args.device, captioner=args.captioner, llm=args.llm)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="avseg", description="Audio-visual segmentation toolkit.")
    parser.add_argument("--version", action="version", version=f"avseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="offline: synthesise data, train a tiny TeSO, test it with muted audio, segment a video")
    demo.add_argument("--out", type=Path, default=Path("avseg-demo"))
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the demo recipe")
    demo.set_defaults(run=cmd_demo)

    synth = commands.add_parser("synth", help="write a synthetic dataset in an official layout")
    synth.add_argument("--layout", required=True, choices=LAYOUTS)
    synth.add_argument("--out", required=True, type=Path)
    synth.add_argument("--videos", type=int_between(1), default=40)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=int_between(MIN_SYNTHETIC_SIZE, MAX_SYNTHETIC_SIZE), default=224, help="frame width and height in pixels")
    synth.add_argument("--fps", type=int_between(1, MAX_SYNTHETIC_FPS), help="also write each clip as a video at this frame rate, with a mask for every frame (videos/, dense_masks/, dense_truth.json)")
    synth.add_argument("--motion", action="store_true", help="with --fps: objects move within each second and sounds start and stop at arbitrary times")
    synth.set_defaults(run=cmd_synth)

    check = commands.add_parser("check", help="read every clip of a dataset and count frames, masks and empty masks")
    check.add_argument("root", type=Path)
    check.add_argument("--layout", required=True, choices=LAYOUTS)
    check.add_argument("--split", default="all", help="a split name, or 'all' (default)")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.set_defaults(run=cmd_check)

    probe = commands.add_parser("probe", help="print duration, frame rate and audio format of media files")
    probe.add_argument("videos", nargs="+", type=Path)
    probe.set_defaults(run=cmd_probe)

    extract = commands.add_parser("extract", help="sample a video into AVSBench-style frames and a wav")
    extract.add_argument("video", type=Path)
    extract.add_argument("--out", required=True, type=Path)
    extract.add_argument("--sampling", choices=["avsbench", "all"], default="avsbench")
    extract.add_argument("--size", type=int_between(0, MAX_FRAME_SIZE), default=224, help="square frame size; 0 keeps the native size")
    extract.add_argument("--rate", type=int_between(MIN_AUDIO_RATE, MAX_AUDIO_RATE), default=16000, help="audio sample rate in Hz")
    extract.add_argument("--allow-silent", action="store_true", help=ALLOW_SILENT_HELP)
    extract.set_defaults(run=cmd_extract)

    cues = commands.add_parser("cues", help="caption every frame and ask an LLM what could be sounding (TeSO text cues)")
    cues.add_argument("--data", required=True, type=Path, help="dataset folder (as for avseg check)")
    cues.add_argument("--layout", required=True, choices=LAYOUTS)
    cues.add_argument("--split", default="all", help="a split name, or 'all' (default)")
    cues.add_argument("--out", required=True, type=Path, help="cue cache folder; an interrupted run resumes there")
    cues.add_argument("--captioner", help="image-to-text model name or folder (default Salesforce/blip2-opt-2.7b)")
    cues.add_argument("--llm", help="chat LLM name or folder (default Qwen/Qwen2.5-1.5B-Instruct)")
    cues.add_argument("--batch-size", type=int, default=8, help="frames per model batch")
    cues.add_argument("--device", help="torch device for both models (default: cuda if available, else cpu)")
    cues.add_argument("--oracle", action="store_true", help="write a synthetic dataset's visible object names, no models")
    cues.set_defaults(run=cmd_cues)

    train = commands.add_parser("train", help="train a model from a YAML recipe (torchrun for several processes)")
    train.add_argument("config", type=Path)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe value")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint, with the recipe the run was started with (changes allowed on resume are recorded in recipe.json)")
    train.add_argument("--overwrite", action="store_true", help="replace an earlier run of the same name (only a run folder avseg wrote, holding nothing else)")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="official metrics, with audio perturbations for the preference test")
    evaluate.add_argument("config", type=Path, nargs="?", help="a recipe (or --model NAME --data DIR instead)")
    evaluate.add_argument("--checkpoint", type=Path, help="a trained model folder (e.g. runs/NAME/best); none for zero-shot recipes")
    evaluate.add_argument("--model", help="a pretrained name of `avseg models` (auralsam2-s4, ...): evaluated on its own test set, its published numbers printed beside")
    evaluate.add_argument("--data", type=Path, help="the dataset folder (with --model: the test set's layout; with a recipe: overrides data.root)")
    evaluate.add_argument("--split", help="which split (default: the recipe's test split)")
    evaluate.add_argument("--perturb", default="", help="comma list of mute, wgnDB (e.g. wgn10), swap, silence, noise, offscreen")
    evaluate.add_argument("--robust", action="store_true", help="AVSBench-Robust: J, F, FPR under silence, noise and off-screen audio; G-mIoU, G-F")
    evaluate.add_argument("--noise-dir", type=Path, help="with --robust: a folder of noise recordings (any audio/video file) beside the synthetic pink and brown noise")
    evaluate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe value")
    evaluate.add_argument("--out", type=Path, help="folder for report.json, report.md and drops.png")
    evaluate.add_argument("--no-silence-gate", action="store_true", help="evaluate the network without its silence gate (TeSO, zeroshot-sam3)")
    add_inference_options(evaluate)
    evaluate.set_defaults(run=cmd_evaluate)

    convert = commands.add_parser("convert", help="official AV2T-SAM, AuralSAM2, VCT, Semantic-SAM, EVF-SAM(2) or SAM 3 weights -> an avseg model folder")
    convert.add_argument(
        "kind",
        choices=["av2t-sam", "auralsam2", "vct", "semantic-sam", "evf-sam", "sam3"],
        help="av2t-sam: a trained official AV2T-SAM checkpoint; auralsam2: an official AuralSAM2 checkpoint (the AuralFuser alone, "
        "the whole model or legacy audio_prompter names); vct: an official VCT checkpoint ({s4,ms3,ss}_swinb_384/model_best.pth); "
        "semantic-sam: an official Semantic-SAM checkpoint (swin{l,t}_only_sam_many2many.pth; VCT's mask-image generator); "
        "evf-sam: EVF-SAM2/EVF-SAM hub weights (AV2T-SAM's training start); "
        "sam3: SAM 3 (hub name such as facebook/sam3, or folder; AV2T-SAM3's training start)",
    )
    convert.add_argument(
        "--sam",
        help="auralsam2: the transformers SAM 2 video model (hub name or folder) for a checkpoint holding the AuralFuser alone "
        "(default facebook/sam2-hiera-large, the release's SAM 2.0 Hiera-L)",
    )
    convert.add_argument("checkpoint", help=".pth/.bin/.safetensors file or a hub folder (sam3: also a hub name)")
    convert.add_argument("--out", required=True, type=Path, help="model folder to write (config.json, model.safetensors, system.json)")
    convert.add_argument(
        "--projector",
        choices=["mul", "clap", "clip"],
        help="av2t-sam: the mode the checkpoint was trained with (required unless its name is the release's NAME_MODE_adapter_evf_sam2_...); "
        "evf-sam, sam3: the new projector's mode (default mul)",
    )
    convert.set_defaults(run=cmd_convert)

    segment = commands.add_parser("segment", help="segment the sounding objects of video files, folders or lists of them (torchrun for several processes)")
    segment.add_argument("videos", nargs="*", help="video files, folders (their videos, at any depth) or quoted glob patterns")
    segment.add_argument("--list", type=Path, help="a file with one video per line: a path, or JSON {\"path\": ..., \"cues\": ..., \"vocabulary\": ...}; relative paths are beside the list")
    segment.add_argument("--model", required=True, help="a model folder (runs/NAME/best), a name of `avseg models` (av2t-sam-s4, zeroshot-sam3), or a hub repo org/name[@revision]")
    segment.add_argument("--out", required=True, type=Path)
    segment.add_argument("--cues", help="TeSO: comma-separated names of the objects that could sound, or 'auto' (captioner + LLM, cached)")
    segment.add_argument("--expression", help="Ref-AVS models (auralsam2-refavs): the referring expression, what to segment ('the dog on the left')")
    segment.add_argument("--vocabulary", help="zero-shot: s4, avss (default), a .txt file, or a comma list ('dog barking: dog, piano')")
    segment.add_argument("--clap-model", help="zero-shot: CLAP hub name or folder (default laion/larger_clap_general)")
    segment.add_argument("--sam3-model", help="zero-shot: SAM 3 hub name or folder (default facebook/sam3)")
    segment.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="zero-shot: another setting (e.g. min_probability=0.3)")
    segment.add_argument("--captioner", help="--cues auto: image-to-text model name or folder (default Salesforce/blip2-opt-2.7b)")
    segment.add_argument("--llm", help="--cues auto: chat LLM name or folder (default Qwen/Qwen2.5-1.5B-Instruct)")
    segment.add_argument("--rate", type=rate_option, default="all", help="output frames per second: all (every decoded frame, default) or N; 1 is AVSBench's sampling")
    segment.add_argument("--keyframes", type=int_between(1), default=1, help="with a propagator: frames per second the model segments (the rest are propagated)")
    segment.add_argument("--propagator", default="none", help="none (the model on every output frame, default), auto (the model's own: AV2T-SAM's SAM 2, zeroshot-sam3's SAM 3 tracker), hold (keyframe masks held), or a SAM 2 video folder or hub name")
    segment.add_argument("--format", default="png", choices=("png", "rle"), help="masks as PNG files (masks/) or COCO RLE lines (masks.jsonl)")
    segment.add_argument("--window", type=int_between(1, MAX_WINDOW), default=5, help="model frames per call (at --rate 1: seconds)")
    segment.add_argument("--allow-silent", action="store_true", help=ALLOW_SILENT_HELP)
    segment.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when present)")
    add_inference_options(segment)
    segment.set_defaults(run=cmd_segment)

    models = commands.add_parser("models", help="the models avseg knows: pretrained names (avseg segment --model NAME) and trainable architectures")
    models.add_argument("--json", action="store_true", help="print the list as JSON (avseg.available_models())")
    models.set_defaults(run=cmd_models)

    push = commands.add_parser("push", help="upload a model folder with a model card to the Hugging Face hub")
    push.add_argument("folder", type=Path, help="a model folder (runs/NAME/best)")
    push.add_argument("repo_id", help="hub repo to create or update (org/name)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to push to (default: the default branch)")
    push.add_argument("--license", help="licence id for the model card (default: other, with the frozen encoders' licences listed)")
    push.set_defaults(run=cmd_push)


    app = commands.add_parser("app", help="a local web page: segment a video, compare with muted or swapped audio (pip install 'avseg[app]')")
    app.add_argument("--model", nargs="+", default=[], metavar="NAME_OR_FOLDER", help="models offered in the page (folders or names)")
    app.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    app.add_argument("--port", type=int_between(0, 65535), default=7860, help="port to listen on (0: any free port)")
    app.add_argument("--max-seconds", type=float, default=600, help="refuse longer uploads")
    app.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when present)")
    app.add_argument("--captioner", help="cues auto: image-to-text model name or folder (default Salesforce/blip2-opt-2.7b)")
    app.add_argument("--llm", help="cues auto: chat LLM name or folder (default Qwen/Qwen2.5-1.5B-Instruct)")
    app.set_defaults(run=cmd_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
    except AvsegError as exc:
        print(f"avseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avseg: interrupted", file=sys.stderr)
        return 130
    return code or 0  # a command that returns no status succeeded; segment returns 1 when a video failed


if __name__ == "__main__":
    sys.exit(main())
