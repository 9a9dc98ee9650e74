"""The two layers' speed and memory, side by side with their peers, in one process.

* free-form ROI pooling, forward + backward, versus ``torchvision.ops.roi_pool`` on the same
  boxes (target on CPU: <= 1.5x torchvision's time; on a GPU: <= 2x);
* region-to-pixel, forward + backward, versus the plain PyTorch reference (target on CPU:
  >= 5x faster).

Sizes are SIFT Flow's: C = 512 channels, 16x16 (256 px, stride 16) and 37x37 (592 px) feature
maps, K = 370 and 1100 regions, 33 classes. Regions, masks and atoms are real Selective Search
proposals (RGB) of a busy SIFT Flow test image resized to 16x map size, cycled to reach K, with
their atoms from the ground truth.

    python benchmarks/ops.py [--device cpu|cuda] [--repeats 5]

Writes results/ops_benchmark_<device>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from rpl.data import SiftFlow
from rpl.files import write_json
from rpl.ops import free_form_roi_pool, reference, region_to_pixel
from rpl.proposals import selective_search
from rpl.provenance import provenance

CLASSES = 33


def real_case(image_name: str, map_size: int, k: int, device: str):
    """Boxes, feature masks and atom membership of K real proposals at a map_size² feature map."""
    test = SiftFlow("test")
    sample = test[test.names.index(image_name)]
    size = map_size * 16
    image = np.asarray(Image.fromarray(sample.image).resize((size, size), Image.BILINEAR))
    label = np.asarray(Image.fromarray(sample.label.astype(np.uint8)).resize((size, size), Image.NEAREST))
    regions = selective_search(image, "rgb")
    atoms = regions.with_ground_truth(label.astype(np.int64), "exact")  # atoms as the committed benchmark measured them
    idx = np.arange(k) % len(atoms)
    boxes = torch.cat([torch.zeros(k, 1), torch.tensor(atoms.boxes[idx], dtype=torch.float32)], 1)
    masks = torch.tensor(atoms.feature_masks(16, (map_size, map_size))[idx])
    member = torch.tensor(atoms.membership.toarray().T[:, idx])  # [A, K]
    return boxes.to(device), masks.to(device), member.to(device)


def peak_memory(fn, device: str) -> float:
    """MiB above the starting point at the peak of fn() (CPU: resident set; GPU: allocator)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set size
    status = lambda key: int(
        next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key)).split()[1]
    )  # noqa: E731
    start = status("VmRSS:")
    fn()
    return (status("VmHWM:") - start) / 1024


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--image",
        default="insidecity_hous109",
        help="SIFT Flow test image whose proposals are used (default: the one with most superpixels)",
    )
    args = parser.parse_args()
    device = args.device
    rows = []
    print(
        f"device: {device}, torch {torch.__version__} ({torch.get_num_threads()} threads), torchvision {torchvision.__version__}"
    )
    for map_size in (16, 37):
        for k in (370, 1100):
            boxes, masks, member = real_case(args.image, map_size, k, device)
            features = torch.randn(1, 512, map_size, map_size, device=device, requires_grad=True)

            def ours():
                out = free_form_roi_pool(features, boxes, masks)
                out.backward(torch.ones_like(out))

            def theirs():
                out = torchvision.ops.roi_pool(features, boxes, (7, 7), 1 / 16)
                out.backward(torch.ones_like(out))

            scores = torch.randn(k, CLASSES, device=device, requires_grad=True)

            def r2p():
                region_to_pixel(scores, member).sum().backward()

            def r2p_reference():
                reference.region_to_pixel(scores, member).sum().backward()

            row = {"map": f"{map_size}x{map_size}", "regions": k, "atoms": member.shape[0]}
            for name, fn in (("pool", ours), ("roi_pool", theirs), ("r2p", r2p), ("r2p_reference", r2p_reference)):
                row[f"{name}_ms"] = 1000 * timed(fn, device, args.repeats)
                row[f"{name}_peak_mib"] = peak_memory(fn, device)
            rows.append(row)
            print(
                f"{row['map']:>5} K={k:4d} A={row['atoms']:4d} | free-form pool {row['pool_ms']:7.1f} ms "
                f"vs roi_pool {row['roi_pool_ms']:7.1f} ms = {row['pool_ms'] / row['roi_pool_ms']:.2f}x "
                f"(peak {row['pool_peak_mib']:.0f} vs {row['roi_pool_peak_mib']:.0f} MiB) | region-to-pixel "
                f"{row['r2p_ms']:6.2f} ms vs reference {row['r2p_reference_ms']:7.1f} ms = "
                f"{row['r2p_reference_ms'] / row['r2p_ms']:.0f}x faster (peak {row['r2p_peak_mib']:.1f} vs "
                f"{row['r2p_reference_peak_mib']:.0f} MiB)"
            )
    payload = provenance(
        benchmark="ops",
        command="python benchmarks/ops.py " + " ".join(sys.argv[1:]),
        device=device if device == "cpu" else torch.cuda.get_device_name(),
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        torch_threads=torch.get_num_threads(),
        rows=rows,
        worst_pool_ratio=max(r["pool_ms"] / r["roi_pool_ms"] for r in rows),
        worst_r2p_speedup=min(r["r2p_reference_ms"] / r["r2p_ms"] for r in rows),
    )
    out = args.out or f"results/ops_benchmark_{device}.json"
    write_json(out, payload)
    print(
        f"worst free-form/roi_pool time ratio {payload['worst_pool_ratio']:.2f}x; "
        f"worst region-to-pixel speed-up {payload['worst_r2p_speedup']:.0f}x; wrote {out}"
    )


if __name__ == "__main__":
    main()
