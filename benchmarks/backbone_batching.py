"""The backbone's share of a fine-tuned training step, three ways side by side in one process:
one image at a time (rpl before issue 12), a step's images in one batch, and the same batch in
``channels_last`` memory format (what training does now). Forward and backward of ImageNet MobileNetV2 for the
paper's ~37 x 37 feature grid two ways beside today's 16 x 16: SIFT Flow's 256 px at output
stride 16 (16 x 16 cells) and 8 (32 x 32), and upsampled to 600 px at stride 16 (38 x 38).

    python benchmarks/backbone_batching.py [--images 10] [--repeats 3] [--threads 2] [--out FILE]

Prints seconds per image, the ratios to one at a time, and each grid's cost relative to
stride 16 at 256 px (channels-last batches); writes results/backbone_batching_cpu.json. Every variant
computes the same gradients up to the order of float32 summation (checked here: 1e-3 relative,
or 1e-4 of the largest gradient).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from rpl.files import write_json
from rpl.models import mobilenet_v2
from rpl.provenance import provenance

VARIANTS = ("one at a time", "batched", "batched, channels_last")


def step(backbone, images: torch.Tensor, variant: str) -> torch.Tensor:
    """Forward + backward of a summed feature loss; returns the first conv layer's gradient."""
    backbone.zero_grad(set_to_none=True)
    if variant == "one at a time":
        for image in images.split(1):
            backbone(image).square().mean().backward()
    else:
        if variant.endswith("channels_last"):
            images = images.contiguous(memory_format=torch.channels_last)
        backbone(images).square().mean(dim=(1, 2, 3)).sum().backward()
    return next(backbone.parameters()).grad.detach().clone()


CASES = ((16, 256), (8, 256), (16, 600))  # (output stride, image size)


def measure(output_stride: int, size: int, images: int, repeats: int) -> dict:
    torch.manual_seed(0)
    batch = torch.rand(images, 3, size, size)
    out = {}
    gradients = {}
    for variant in VARIANTS:
        backbone = mobilenet_v2("imagenet", output_stride)
        backbone.train()  # as in training (Backbone keeps batch norm statistics frozen)
        if variant.endswith("channels_last"):
            backbone = backbone.to(memory_format=torch.channels_last)
        gradients[variant] = step(backbone, batch, variant)  # warm-up, and the gradient to compare
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step(backbone, batch, variant)
            times.append(time.perf_counter() - start)
        out[variant] = statistics.median(times) / images
    reference = gradients[VARIANTS[0]]
    for variant in VARIANTS[1:]:
        torch.testing.assert_close(gradients[variant], reference, rtol=1e-3, atol=1e-4 * reference.abs().max().item())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/backbone_batching_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    base = None
    for output_stride, size in CASES:
        seconds = measure(output_stride, size, args.images, args.repeats)
        base = base or seconds[VARIANTS[2]]
        rows[f"os{output_stride}_{size}px"] = seconds
        print(
            f"output stride {output_stride}, {size} px: "
            + ", ".join(f"{v} {s:.3f} s/image ({seconds[VARIANTS[0]] / s:.2f}x)" for v, s in seconds.items())
            + f"; channels_last {seconds[VARIANTS[2]] / base:.1f}x the cost of stride 16 at 256 px"
        )
    out = args.out
    write_json(
        out,
        provenance(
            benchmark="backbone_batching",
            command="python benchmarks/backbone_batching.py " + " ".join(sys.argv[1:]),
            images=args.images,
            repeats=args.repeats,
            torch=torch.__version__,
            torch_threads=torch.get_num_threads(),
            seconds_per_image=rows,
        ),
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
