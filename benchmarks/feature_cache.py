"""The frozen-feature cache: an epoch whose frozen-encoder features come from disk vs one that computes them.

    python benchmarks/feature_cache.py [--clips 24] [--repeats 3]

An "epoch" here is what ``avseg train`` does before and during one pass over
the data: embed every clip's audio with a full-size VGGish (72M frozen
parameters, random weights since none can be downloaded; the cost is the
same) and its cues with MiniLM, then run one training step per batch of a
tiny TeSO. The first epoch starts from an empty cache, the second from the
filled one (a new process would see the same files). Cold and warm epochs
alternate across repeats; the table gives medians and ranges, and checks
that the features are identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import machine, spread, table

from avseg.cues.pipeline import oracle_cues
from avseg.data.avsbench import MS3
from avseg.data.synthetic import write_dataset
from avseg.encoders.build import minilm_offline_path
from avseg.encoders.cache import CachedAudioEncoder, CachedTextEncoder, FeatureCache
from avseg.encoders.text import TextEncoder
from avseg.encoders.vggish import VGGish, VGGishEncoder
from avseg.models.teso import TeSO, TeSOConfig
from avseg.models.teso.inputs import TeSOInputs
from avseg.models.teso.system import TeSOSystem


def epoch(clips, cues, audio_encoder, text_encoder) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    vggish, text = audio_encoder.encoder, text_encoder.encoder
    torch.manual_seed(0)
    model = TeSO(TeSOConfig.tiny(text_dim=text.dim, audio_dim=vggish.dim))
    system = TeSOSystem(model, TeSOInputs(audio_encoder, text_encoder, text.dim, 64), cues)
    task = system.task(clips, batch_clips=4, seed=0)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    for batch in task.batches(0):
        optimizer.zero_grad()
        task.loss(batch)["total"].backward()
        optimizer.step()
    features = torch.cat([rows.audio for rows in task.rows])
    return time.perf_counter() - started, features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ms3"
        write_dataset("ms3", root, args.clips, seed=0, size=64)
        clips, cues = list(MS3(root, None)), oracle_cues(root)
        torch.manual_seed(0)
        vggish = VGGishEncoder(VGGish())
        text = TextEncoder.from_pretrained(str(minilm_offline_path()))
        cold, warm, same = [], [], True
        for repeat in range(args.repeats):
            # The encoders' identities (a digest of their weights) are computed once per process.
            cache = FeatureCache(Path(tmp) / f"cache{repeat}")
            audio_encoder, text_encoder = CachedAudioEncoder(vggish, cache), CachedTextEncoder(text, cache)
            cold_time, cold_features = epoch(clips, cues, audio_encoder, text_encoder)
            warm_time, warm_features = epoch(clips, cues, audio_encoder, text_encoder)
            cold.append(cold_time)
            warm.append(warm_time)
            same &= torch.equal(cold_features, warm_features)
    ratio = sorted(c / w for c, w in zip(cold, warm))[len(cold) // 2]
    print(f"{args.clips} clips x 5 s, full-size VGGish (frozen), MiniLM cues, tiny TeSO training steps, {args.repeats} repeats\n")
    print(table(["epoch", "seconds, median (min-max)", "speed-up"], [["first (cache empty)", spread(cold), "1.0x"], ["second (cache filled)", spread(warm), f"{ratio:.1f}x"]]))
    print(f"\nfeatures identical with and without the cache: {same}")


if __name__ == "__main__":
    main()
