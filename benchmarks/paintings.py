"""Do the defaults paint every painting? One table per size, over all bundled paintings.

    python benchmarks/paintings.py                       # 256 and 512 px, the defaults
    python benchmarks/paintings.py --sizes 256 --reference   # also the paper's recipe

For each bundled photo and painting it runs :func:`nst_lib.transfer` with the defaults
(or ``--set key=value`` overrides) and prints the style error, content error and palette of
the result (:mod:`measure`), and the mean over the photos per painting. ``--reference`` adds
a long run of the paper's own recipe (single scale from white noise, L-BFGS, 1000
evaluations, the same alpha/beta) as the quality reference. Every result is saved in a
contact sheet ``benchmarks/out_paintings_<size>.png`` (photos in rows, paintings in columns)
to look at.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import nst_lib as nst
from measure import judge
from nst_lib.experiments import PAPER_RECIPE

PHOTOS = ("chelsea.png", "kodim23.png", "sail.png")
PAINTINGS = ("starry_night.jpg", "woman_with_hat.jpg", "udnie.jpg", "shipwreck.jpg",
             "the_scream.jpg", "composition_vii.jpg")


def _value(text: str):
    try:
        return eval(text, {})  # numbers, tuples, None, True/False
    except Exception:
        return text


def run(photo: str, painting: str, size: int, settings: dict) -> tuple[torch.Tensor, dict]:
    content = nst.load_image(nst.example(photo), size)
    style = nst.load_image(nst.example(painting), size)
    start = time.perf_counter()
    result = nst.transfer(content, style, size=size, progress=False, **settings)
    seconds = time.perf_counter() - start
    return result.image, {"seconds": seconds, "evals": len(result.history),
                          **judge(result.image, content, style)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS))
    parser.add_argument("--paintings", nargs="+", default=list(PAINTINGS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="Config overrides, e.g. --set init='noise' steps=100")
    parser.add_argument("--reference", action="store_true",
                        help="also run the paper's recipe (single scale from noise, 1000 evals)")
    parser.add_argument("--tag", default="", help="suffix of the contact sheet's file name")
    args = parser.parse_args()
    settings = dict(kv.split("=", 1) for kv in args.set)
    settings = {k: _value(v) for k, v in settings.items()}
    kinds = {"defaults": settings} | ({"paper": {**settings, **PAPER_RECIPE}} if args.reference else {})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {nst.Config(**settings)}")
    print(f"{'size':>5} {'run':>9} {'painting':>20} {'photo':>12} {'s':>6} {'evals':>5} "
          f"{'style':>6} {'content':>7} {'palette':>7}")
    from nst_lib.plot import grid
    for size in args.sizes:
        sheet = []
        for kind, kind_settings in kinds.items():
            means = {}
            for photo in args.photos:
                row = [nst.load_image(nst.example(photo), size)]
                for painting in args.paintings:
                    image, r = run(photo, painting, size, kind_settings)
                    row.append(image)
                    means.setdefault(painting, []).append(r)
                    print(f"{size:>5} {kind:>9} {painting:>20} {photo:>12} {r['seconds']:>6.1f} "
                          f"{r['evals']:>5} {r['style_err']:>6.3f} {r['content_err']:>7.3f} "
                          f"{r['palette']:>7.3f}", flush=True)
                sheet.append(row)
            for painting, rows in means.items():
                m = {k: statistics.mean(r[k] for r in rows)
                     for k in ("seconds", "style_err", "content_err", "palette")}
                print(f"{size:>5} {kind:>9} {painting:>20} {'mean':>12} {m['seconds']:>6.1f} "
                      f"{'':>5} {m['style_err']:>6.3f} {m['content_err']:>7.3f} "
                      f"{m['palette']:>7.3f}", flush=True)
        labels = ["photo"] + [p.split(".")[0].replace("_", " ")[:14] for p in args.paintings]
        rows_labels = [f"{k}: {p.split('.')[0]}" for k in kinds for p in args.photos]
        grid(sheet, col_labels=labels, row_labels=rows_labels).savefig(
            f"benchmarks/out_paintings_{size}{args.tag}.png", dpi=80)


if __name__ == "__main__":
    main()
