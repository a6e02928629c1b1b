"""Training throughput of baseline3 at batch 64 on 3x48x48 stamps, against a baseline run.

On CUDA: channels_last vs contiguous memory format (both at train.precision auto, i.e. bf16
where supported). On CPU: bf16 autocast vs fp32. The batch already lies on the device, so
this measures the optimisation step (forward, backward, AdamW), not data loading. Prints the
median samples/s of each variant over ``--repeats`` timings and their ratio.

    python benchmarks/bench_train.py [--steps 20] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from skysift.models import autocast, build_model, resolve_precision

BATCH, BANDS, SIZE = 64, 3, 48


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(device: torch.device, precision: str, channels_last: bool, steps: int,
               repeats: int) -> list[float]:
    """Samples per second of ``repeats`` timings of ``steps`` training steps each."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model("baseline3", BANDS, SIZE).to(device, memory_format=fmt).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, BANDS, SIZE, SIZE, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(BATCH, device=device) < 0.3).float()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(x)
        F.binary_cross_entropy_with_logits(logits.float(), y).backward()
        opt.step()

    for _ in range(3):  # warm-up: allocator, cuDNN algorithm choice
        step()
    rates = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        rates.append(BATCH * steps / (time.perf_counter() - t0))
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="training steps per timing")
    p.add_argument("--repeats", type=int, default=5, help="timings per variant")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        precision = resolve_precision("auto", device)
        variants = {f"contiguous {precision}": (precision, False),
                    f"channels_last {precision}": (precision, True)}
        print(f"device: {torch.cuda.get_device_name(device)}")
    else:
        variants = {"fp32": ("fp32", False), "bf16 autocast": ("bf16", False)}
        print(f"device: cpu, {args.threads} threads")
    medians = {}
    for name, (precision, channels_last) in variants.items():
        rates = throughput(device, precision, channels_last, args.steps, args.repeats)
        medians[name] = statistics.median(rates)
        print(f"{name:>24}: median {medians[name]:9.1f} samples/s "
              f"(min {min(rates):.1f}, max {max(rates):.1f}, {args.repeats} x {args.steps} steps)")
    (base, b), (variant, v) = medians.items()
    print(f"ratio {variant} / {base}: {v / b:.2f}")


if __name__ == "__main__":
    main()
