"""Training throughput (images/s) of a preset: real SIFT Flow images through the real training
loop (proposals from the cache, ground-truth regions, flips, accumulation, SGD steps).

    python benchmarks/train_throughput.py                         # cpu preset, here
    python benchmarks/train_throughput.py --preset paper --device cuda --set weights=none
    python benchmarks/train_throughput.py --preset paper --device cuda --set weights=none --set precision=bf16
    python benchmarks/train_throughput.py --preset cpu --device cuda --set image_size=600 [--set precision=bf16]

On CUDA the peak GPU memory (``torch.cuda.max_memory_allocated``) is recorded too. The paper's
authors trained at about 0.2 images/s on a Titan X (25 epochs of 2488 images in 75 hours).
Writes results/train_throughput_<preset>_<image size or native>_<precision>_<cpu|cuda>.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch

from rpl.files import write_json
from rpl.provenance import provenance
from rpl.runs import PRESETS, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    cfg = PRESETS[args.preset].with_overrides([f"train_images={args.images}", "epochs=1", *args.set])
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as run:
        summary = train(cfg, run, progress=False, device=args.device)
    device = torch.cuda.get_device_name() if cuda else "cpu"
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    rate = summary["images_per_s"]
    memory = f", peak GPU memory {peak:.1f} GiB" if cuda else ""
    print(
        f"{args.preset} preset ({cfg.precision}) on {device}: {rate:.2f} training images/s over {args.images} "
        f"images{memory} (an epoch of 2488 images: {2488 / rate / 60:.1f} min; the authors: ~0.2 images/s)"
    )
    size = f"{cfg.image_size}px" if cfg.image_size else "native"
    out = args.out or f"results/train_throughput_{args.preset}_{size}_{cfg.precision}_{'cuda' if cuda else 'cpu'}.json"
    write_json(
        out,
        provenance(
            benchmark="train_throughput",
            command="python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
            device=device,
            preset=args.preset,
            images=args.images,
            image_size=cfg.image_size,
            precision=cfg.precision,
            peak_gpu_memory_gib=peak,
            images_per_s=rate,
            torch=torch.__version__,
            torch_threads=torch.get_num_threads(),
        ),
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
