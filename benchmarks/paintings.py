"""Do the defaults paint every painting? One table per size, over all bundled paintings.

    python benchmarks/paintings.py                           # 256 and 512 px, the defaults
    python benchmarks/paintings.py --sizes 256 --reference   # also the paper's recipe
    python benchmarks/paintings.py --photos my.jpg --paintings the_scream.jpg

For each photo and painting (bundled names, or paths) it runs :func:`nst_lib.transfer`
with the defaults (or ``--set key=value`` overrides) and prints the time, the evaluations,
the three errors of :mod:`measure` and whether they are in its band, then per painting the
mean over the photos and the slowest run. ``--reference`` adds a long run of the paper's own
recipe (single scale from white noise, L-BFGS, 1000 evaluations, the same alpha/beta) as the
quality reference. Every result is saved in a contact sheet
``benchmarks/out_paintings_<size>.png`` (photos in rows, paintings in columns) to look at.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import nst_lib as nst
from measure import BAND, in_band, judge
from nst_lib.experiments import PAPER_RECIPE

PHOTOS = ("chelsea.png", "kodim23.png", "sail.png")
PAINTINGS = ("starry_night.jpg", "woman_with_hat.jpg", "udnie.jpg", "shipwreck.jpg",
             "the_scream.jpg", "composition_vii.jpg")
ERRORS = tuple(BAND)  # style_err, colour_err, content_err


def _value(text: str):
    try:
        return eval(text, {})  # numbers, tuples, None, True/False
    except Exception:
        return text


def _path(name: str) -> Path:
    """A bundled image by name, or any image file by its path."""
    return Path(name) if Path(name).exists() else nst.example(name)


def run(photo: str, painting: str, size: int, settings: dict, model) -> tuple[torch.Tensor, dict]:
    content = nst.load_image(_path(photo), size)
    style = nst.load_image(_path(painting), size)
    start = time.perf_counter()
    result = nst.transfer(content, style, size=size, progress=False, model=model, **settings)
    seconds = time.perf_counter() - start
    return result.image, {"seconds": seconds, "evals": len(result.history),
                          **judge(result.image, content, style)}


def _row(size, kind, painting, photo, r, evals="") -> str:
    errors = " ".join(f"{r[k]:>7.3f}" for k in ERRORS)
    return (f"{size:>5} {kind:>9} {Path(painting).stem[:20]:>20} {Path(photo).stem[:12]:>12} "
            f"{r['seconds']:>6.1f} {evals:>5} {errors} {'yes' if in_band(r) else 'no':>4}")


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
    parser.add_argument("--save", metavar="DIR", help="also save every result as a PNG in DIR")
    args = parser.parse_args()
    settings = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    kinds = {"defaults": settings} | ({"paper": {**settings, **PAPER_RECIPE}} if args.reference else {})
    model = nst.vgg19(device="cpu")
    nst.transfer(nst.example(PHOTOS[0]), nst.example(PAINTINGS[0]), size=64, steps=3,
                 model=model, progress=False)  # warm up
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {nst.Config(**settings)}")
    print(f"band: {', '.join(f'{k} <= {v}' for k, v in BAND.items())}")
    print(f"{'size':>5} {'run':>9} {'painting':>20} {'photo':>12} {'s':>6} {'evals':>5} "
          + " ".join(f"{k.split('_')[0]:>7}" for k in ERRORS) + " band")
    from nst_lib.plot import grid
    for size in args.sizes:
        sheet, rows_labels = [], []
        for kind, kind_settings in kinds.items():
            runs = {}
            for photo in args.photos:
                row = [nst.load_image(_path(photo), size)]
                for painting in args.paintings:
                    image, r = run(photo, painting, size, kind_settings, model)
                    row.append(image)
                    if args.save:
                        nst.save_image(image, Path(args.save) / f"{kind}_{size}_{Path(photo).stem}"
                                       f"_{Path(painting).stem}.png")
                    runs.setdefault(painting, []).append(r)
                    print(_row(size, kind, painting, photo, r, r["evals"]), flush=True)
                sheet.append(row)
                rows_labels.append(f"{kind}: {Path(photo).stem}")
            for painting, rs in runs.items():
                mean = {k: statistics.mean(r[k] for r in rs) for k in ("seconds", *ERRORS)}
                print(_row(size, kind, painting, "mean", mean), flush=True)
            every = [r for rs in runs.values() for r in rs]
            print(f"{size:>5} {kind:>9}: {sum(map(in_band, every))} of {len(every)} runs in the "
                  f"band; time median {statistics.median(r['seconds'] for r in every):.1f} s, "
                  f"max {max(r['seconds'] for r in every):.1f} s", flush=True)
        labels = ["photo"] + [Path(p).stem.replace("_", " ")[:14] for p in args.paintings]
        grid(sheet, col_labels=labels, row_labels=rows_labels).savefig(
            f"benchmarks/out_paintings_{size}{args.tag}.png", dpi=80)


if __name__ == "__main__":
    main()
