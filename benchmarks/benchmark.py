"""How fast is nst_lib, and how good are its pictures for the time? Prints one table.

    python benchmarks/benchmark.py                 # 256, 512 and 1024 px (about 35 minutes)
    python benchmarks/benchmark.py --sizes 256     # one size

On the bundled images (chelsea.png content, starry_night.jpg style) it measures:
- the floor: median time of one forward pass to the deepest used layer (conv5_1) plus the
  backward pass to the input image, in the default precision;
- nst_lib's median time per loss evaluation (its defaults), as a ratio to that floor;
- for a transfer at each size: nst_lib's defaults, the same in float32 (``precision=
  "float32"``) and a plain loop (the PyTorch tutorial's recipe: L-BFGS without line search
  from the content image, 300 evaluations, one scale, float32, same alpha/beta and layers;
  only up to ``--plain-up-to`` px): wall time (the median of ``--repeat`` runs, and their
  range; the plain loop runs once), the time estimate, evaluations, peak memory
  (RSS of a fresh process per run) next to :func:`nst_lib.cost.estimate`, and the style
  errors of :mod:`measure` (style, colour, content).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch

import nst_lib as nst
from measure import judge
from nst_lib.cost import estimate
from nst_lib.vgg import resolve_precision

CONTENT, STYLE = "chelsea.png", "starry_night.jpg"
PLAIN_EVALS = 300


def plain_loop(content, style, config: nst.Config) -> tuple[torch.Tensor, int]:
    """The baseline: the PyTorch tutorial's L-BFGS loop, written out."""
    config = replace(config, precision="float32")  # the tutorial's float32
    model = nst.vgg19(config.weights, pooling=config.pooling, device="cpu")
    targets = nst.Targets(model, config, content, style)
    x = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x])
    evals = [0]

    def closure():
        with torch.no_grad():
            x.clamp_(0, 1)
        opt.zero_grad()
        loss = targets.losses(model, x, config.alpha, config.beta)[0]
        loss.backward()
        evals[0] += 1
        return loss

    while evals[0] < PLAIN_EVALS:
        opt.step(closure)
    return x.detach().clamp(0, 1), evals[0]


KINDS = {"nst_lib": {}, "float32": {"precision": "float32"}}  # the defaults, the float32 path


def one_run(kind: str, size: int) -> dict:
    """A single transfer in this process (the parent starts a fresh one for each)."""
    torch.manual_seed(0)
    config = nst.Config(size=size, **KINDS.get(kind, {}))
    content = nst.load_image(nst.example(CONTENT), size)
    style = nst.load_image(nst.example(STYLE), size)
    dtype = resolve_precision(config.precision, "cpu") if kind != "plain" else torch.float32
    plain = replace(config, steps=PLAIN_EVALS, scales=1) if kind == "plain" else config
    predicted = estimate(tuple(content.shape[-2:]), plain, "cpu", dtype)
    nst.vgg19(config.weights, pooling=config.pooling, device="cpu")  # load before timing
    start = time.perf_counter()
    if kind == "plain":
        image, evals = plain_loop(content, style, config)
    else:
        result = nst.transfer(content, style, config, progress=False, device="cpu")
        image, evals = result.image, len(result.history)
        nst.save_image(image, f"benchmarks/out_{kind}_{size}.png")
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "size": size, "seconds": seconds, "evals": evals, "peak_mb": peak_mb,
            "estimate_mb": predicted.memory_mb, "estimate_s": predicted.seconds,
            **judge(image, content, style)}


def floor_and_overhead(size: int, rounds: int = 3, repeats: int = 6) -> dict:
    """Median forward+backward time versus nst_lib's median time per loss evaluation.

    Measured in alternating rounds (``repeats`` floor passes, then a short transfer), so
    that a machine that gets busier or quieter during the measurement affects both alike.
    """
    config = nst.Config(size=size)
    model = nst.vgg19(config.weights, pooling=config.pooling, device="cpu")
    content = nst.load_image(nst.example(CONTENT), size)
    style = nst.load_image(nst.example(STYLE), size)
    deepest = max(config.style_layers + config.content_layers, key=nst.LAYERS.get)
    dtype = resolve_precision(config.precision, "cpu")
    floors, evals = [], []
    for _ in range(rounds):
        for i in range(repeats + 1):
            x = content.clone().requires_grad_(True)
            start = time.perf_counter()
            model(x, [deepest], dtype=dtype)[deepest].sum().backward()
            if i:  # the first pass of a round warms up
                floors.append(time.perf_counter() - start)
        result = nst.transfer(content, style, replace(config, steps=repeats + 2, scales=1),
                              model=model, progress=False)
        seconds = [h["seconds"] for h in result.history]
        evals += [b - a for a, b in zip(seconds[1:], seconds[2:])]
    return {"floor": statistics.median(floors), "per_eval": statistics.median(evals)}


def _fresh(kind: str, size: int) -> dict:
    """:func:`one_run` in a new process, so that each run's peak memory is its own."""
    out = subprocess.run([sys.executable, __file__, "--one", kind, str(size)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--plain-up-to", type=int, default=512,
                        help="run the plain loop at sizes up to this (it is slow)")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the defaults and of float32 per size; the median is shown")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], int(args.one[1]))))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{resolve_precision('auto', 'cpu')} by default")
    o = floor_and_overhead(256)
    print(f"floor (forward to conv5_1 + backward, 256 px): {o['floor'] * 1000:.0f} ms; "
          f"nst_lib per evaluation: {o['per_eval'] * 1000:.0f} ms "
          f"= {o['per_eval'] / o['floor']:.2f} x floor")
    print(f"{'size':>5} {'run':>8} {'seconds':>8} {'range':>10} {'est. s':>7} {'evals':>6} {'peak MB':>8} "
          f"{'est. MB':>8} {'style err':>10} {'colour err':>11} {'content err':>12}")
    for size in args.sizes:
        rows = {}
        for kind in ("nst_lib", "float32", "plain"):
            if kind == "plain" and size > args.plain_up_to:
                continue
            runs = sorted((_fresh(kind, size) for _ in range(1 if kind == "plain" else args.repeat)),
                          key=lambda r: r["seconds"])
            r = rows[kind] = runs[len(runs) // 2]  # the median run
            spread = f"{runs[0]['seconds']:.1f}-{runs[-1]['seconds']:.1f}" if len(runs) > 1 else ""
            print(f"{size:>5} {kind:>8} {r['seconds']:>8.1f} {spread:>10} {r['estimate_s']:>7.0f} "
                  f"{r['evals']:>6} {r['peak_mb']:>8.0f} {r['estimate_mb']:>8.0f} "
                  f"{r['style_err']:>10.3f} {r['colour_err']:>11.3f} {r['content_err']:>12.3f}",
                  flush=True)
        for other in ("float32", "plain"):
            if other in rows:
                a, b = rows["nst_lib"], rows[other]
                print(f"{size:>5} {'/' + other:>8} {a['seconds'] / b['seconds']:>8.2f} {'':>10} {'':>7} "
                      f"{'':>6} {a['peak_mb'] / b['peak_mb']:>8.2f} {'':>8} "
                      f"{a['style_err'] / b['style_err']:>10.2f} "
                      f"{a['content_err'] / b['content_err']:>12.2f}")


if __name__ == "__main__":
    main()
