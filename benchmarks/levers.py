"""Does a setting pay? Compares Config variants on the same photo x painting pairs.

    python benchmarks/levers.py --size 256 --variant "" --variant "steps=(80, 40, 15)"

Each ``--variant`` is a list of Config overrides (``key=value``, separated by ";"; "" is
the defaults). For every pair the variants run one after the other in this process, the
order turned round for each pair so that a machine getting busier or quieter affects them
alike; it prints each run and then, per variant, the mean wall time, evaluations, style
error, colour error and content error (:mod:`measure`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import nst_lib as nst
from measure import judge
from paintings import _value

PAIRS = (("chelsea.png", "starry_night.jpg"), ("kodim23.png", "the_scream.jpg"),
         ("sail.png", "composition_vii.jpg"))


def parse(variant: str) -> dict:
    pairs = [kv.split("=", 1) for kv in variant.split(";") if kv.strip()]
    return {k.strip(): _value(v) for k, v in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--variant", action="append", default=None,
                        help='Config overrides, e.g. "steps=(80, 40, 15);scales=3"')
    args = parser.parse_args()
    variants = args.variant or [""]
    model = nst.vgg19(device="cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size} px")
    rows = {v: [] for v in variants}
    nst.transfer(nst.example(PAIRS[0][0]), nst.example(PAIRS[0][1]), size=64, steps=5,
                 model=model, progress=False)  # warm up
    for i, (photo, painting) in enumerate(PAIRS):
        content = nst.load_image(nst.example(photo), args.size)
        style = nst.load_image(nst.example(painting), args.size)
        for variant in variants if i % 2 == 0 else variants[::-1]:
            start = time.perf_counter()
            result = nst.transfer(content, style, size=args.size, model=model, progress=False,
                                  **parse(variant))
            r = {"seconds": time.perf_counter() - start, "evals": len(result.history),
                 **judge(result.image, content, style)}
            rows[variant].append(r)
            nst.save_image(result.image, f"benchmarks/out_lever_{args.size}_{i}_"
                           f"{variants.index(variant)}.png")
            print(f"{photo:>12} {painting:>20} {variant or 'defaults':>28} {r['seconds']:6.1f} s "
                  f"{r['evals']:4} evals  style {r['style_err']:.3f}  content "
                  f"{r['content_err']:.3f}  colour {r['colour_err']:.3f}", flush=True)
    print("mean:")
    for variant, rs in rows.items():
        m = {k: statistics.mean(r[k] for r in rs) for k in rs[0]}
        print(f"{variant or 'defaults':>34} {m['seconds']:6.1f} s {m['evals']:6.0f} evals  "
              f"style {m['style_err']:.3f}  content {m['content_err']:.3f}  "
              f"colour {m['colour_err']:.3f}")


if __name__ == "__main__":
    main()
