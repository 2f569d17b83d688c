"""Command line: ``python -m nst_lib CONTENT STYLE -o OUT.png``.

Also ``python -m nst_lib --fetch-weights`` to download the VGG19 weights ahead of time.
``--save-every N`` keeps the pictures along the way and ``--animation run.gif`` makes a GIF of them.
Errors are one line on stderr with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import warnings
from pathlib import Path

from .config import INITS, OPTIMIZERS, POOLINGS, PRECISIONS, Config, parse_steps, split_settings, steps_text
from .image import ImageError, check_writable, save_image, unused_path
from .vgg import WEIGHTS
from .weights import WeightsError, caffe_weights


DEFAULT_OUTPUT = "out.png"
DEFAULT_EVERY = 10  # evaluations between the pictures of --animation without --save-every
INPUTS = {"content": "content image", "style": "style image", "weights": "weights file"}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, as all errors here, and a guess at a typo."""

    def error(self, message: str):
        typo = re.match(r"unrecognized arguments: (-\S+)", message)
        options = [option for action in self._actions for option in action.option_strings]
        close = difflib.get_close_matches(typo.group(1), options, n=1) if typo else []
        _error(message + (f" (did you mean {close[0]}?)" if close else "")
               + f"; see {self.prog} --help")
        sys.exit(2)


def _steps(text: str) -> int | tuple[int, ...]:
    try:
        return parse_steps(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _layers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one layer name, e.g. conv4_2 or "
                                         "conv1_1,conv2_1")
    return names


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m nst_lib",
        description="Paint the content of one image in the style of another "
                    "(Gatys, Ecker and Bethge 2016).",
    )
    p.add_argument("content", nargs="?", help="content image (a photo)")
    p.add_argument("style", nargs="?", help="style image (a painting)")
    p.add_argument("-o", "--output", help=f"output image, replaced if it exists (default: "
                   f"{DEFAULT_OUTPUT}, or out-1.png ... if that exists)")
    _add_settings(p, Config())
    p.add_argument("--save-every", type=int, metavar="N",
                   help="save the picture every N loss evaluations, in a folder beside the "
                        "output named after it: OUT_steps/0020.png ... (OUT_steps-1/ if that "
                        "exists); coarse-to-fine's first pictures are smaller")
    p.add_argument("--animation", metavar="GIF", help="write the run as an animated GIF, e.g. "
                   f"run.gif: a picture every --save-every N evaluations (default "
                   f"{DEFAULT_EVERY}), then the result")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--fetch-weights", action="store_true",
                   help="download and cache the VGG19 weights, then exit")
    return p


def _add_settings(p: argparse.ArgumentParser, d: Config) -> None:
    """The options that are fields of :class:`~nst_lib.Config`, with its defaults ``d``."""
    p.add_argument("--size", type=int, default=d.size, help=f"longest side in px (default {d.size})")
    p.add_argument("--style-size", type=int, default=None, help="longest side of the style image")
    p.add_argument("--steps", type=_steps, default=d.steps,
                   help="loss evaluations per scale: N, or one per scale coarsest first "
                        f"(default {steps_text(d.steps)})")
    p.add_argument("--alpha", type=float, default=d.alpha, help=f"content weight (default {d.alpha:g})")
    p.add_argument("--beta", type=float, default=d.beta, help=f"style weight (default {d.beta:g}); "
                   "the paper's knob is alpha/beta")
    p.add_argument("--content-layers", type=_layers, default=d.content_layers,
                   help="comma-separated, e.g. conv4_2")
    p.add_argument("--style-layers", type=_layers, default=d.style_layers,
                   help="comma-separated, e.g. conv1_1,conv2_1,conv3_1,conv4_1,conv5_1")
    p.add_argument("--init", choices=INITS, default=d.init)
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (default: 1 L-BFGS, 0.02 Adam)")
    p.add_argument("--pooling", choices=POOLINGS, default=d.pooling)
    p.add_argument("--weights", default=d.weights,
                   help="; ".join(f"{name}: {w.about}" for name, w in WEIGHTS.items())
                   + "; or the path of a state dict file")
    p.add_argument("--scales", type=int, default=d.scales, help="coarse-to-fine levels")
    p.add_argument("--tol", type=float, default=d.tol, help="stop early below this relative improvement")
    p.add_argument("--time-limit", type=float, default=None, help="seconds")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--precision", choices=PRECISIONS,
                   default=d.precision, help="what VGG19 computes in (default auto: bfloat16 "
                   "where the CPU or GPU has it natively, else float32)")
    p.add_argument("--per-position", action=argparse.BooleanOptionalAction,
                   default=d.per_position, help="read alpha/beta per position of the content "
                   "layer (default); --no-per-position: eq. 1 as printed")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or mps")


def _one_line_warning(message, category, *args, **kwargs) -> str:
    return f"warning: {message}\n"


def _error(err: BaseException | str) -> None:
    """Print one line ``error: ...`` on stderr (messages with line breaks are joined)."""
    print("error: " + " ".join(str(err).split()), file=sys.stderr)


def _check_device(name: str) -> None:
    """Raise ValueError now if ``--device`` names a device this machine does not have."""
    import torch

    from .vgg import resolve_device

    try:
        torch.empty(1, device=resolve_device(name))
    except (RuntimeError, AssertionError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"--device {name} cannot be used here ({reason}); use --device auto or cpu."
        ) from None


def _output(args: argparse.Namespace) -> Path:
    """The file to write: ``-o`` as given, unless it is one of the input files (see
    :func:`_not_an_input`). Without ``-o``: out.png, or out-1.png, out-2.png ... so that a
    file nobody named is never replaced."""
    if args.output is None:
        return unused_path(Path(DEFAULT_OUTPUT))
    return _not_an_input(args, "-o", args.output, ".png")


def _not_an_input(args: argparse.Namespace, option: str, given: str, suffix: str) -> Path:
    """``given`` as a path, unless it is one of the input files, which writing it would
    destroy (compared as files, so links and other spellings of the path count)."""
    out = Path(given).expanduser()
    for name, what in INPUTS.items():
        source = getattr(args, name)
        if os.path.exists(out) and os.path.exists(source) and os.path.samefile(out, source):
            other = out.with_name(f"{out.stem}_styled{suffix}")
            raise ValueError(f"{option} {given} is the {what}; the result would replace it. "
                             f"Give another name, e.g. {option} {other}")
    return out


def _save(result, out: Path, *, named: bool) -> Path:
    """Save the result to ``out`` and say so when that replaces a file; a file the user did
    not name is not replaced even when it appeared during the run (another run's)."""
    out = out if named else unused_path(out)
    replacing = os.path.lexists(out)
    result.save(out)
    if replacing:
        print(f"replaced existing {out}")
    return out


class _Pictures:
    """What ``--save-every`` and ``--animation`` keep of a run: the pictures the callback
    receives (``Step.image``, every ``every`` evaluations), saved in a folder and/or kept
    for the GIF. Both are checked before the run starts."""

    def __init__(self, args: argparse.Namespace, out: Path):
        if args.save_every is not None and args.save_every < 1:
            raise ValueError(f"--save-every must be at least 1, got {args.save_every}.")
        self.every = args.save_every or DEFAULT_EVERY
        self.folder = unused_path(out.with_name(f"{out.stem}_steps")) if args.save_every else None
        self.gif = None
        if args.animation:
            gif = Path(args.animation)
            if gif.suffix.lower() != ".gif":
                raise ValueError(f"--animation {args.animation} is not a .gif file name; give "
                                 f"e.g. --animation {gif.with_suffix('.gif')}")
            self.gif = check_writable(_not_an_input(args, "--animation", args.animation, ".gif"))
        self.frames: list = []
        self.saved = 0

    @property
    def wanted(self) -> bool:
        return self.folder is not None or self.gif is not None

    def __call__(self, step) -> None:
        if step.image is None:
            return
        if self.folder is not None:
            self.folder.mkdir(exist_ok=True)
            save_image(step.image, self.folder / f"{step.step:04d}.png")
            self.saved += 1
        if self.gif is not None:
            self.frames.append(step.image)

    def finish(self, result) -> None:
        """Write the GIF (the pictures, then the result) and say what was written."""
        if self.folder is not None and self.saved:
            print(f"Wrote {self.saved} pictures to {self.folder}/")
        elif self.folder is not None:
            print(f"No pictures saved: the run ended before evaluation {self.every}.")
        if self.gif is not None:
            from PIL import Image

            from .plot import animation

            animation([*self.frames, result.image], self.gif)
            with Image.open(self.gif) as gif:
                print(f"Wrote {self.gif} ({gif.n_frames} frames)")


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    args = parser().parse_args(argv)
    if args.fetch_weights:
        return _fetch_weights()
    if not args.content or not args.style:
        parser().error("give a CONTENT and a STYLE image (or --fetch-weights)")
    import torch

    try:
        config, _ = split_settings(None, vars(args))
        out = check_writable(_output(args))  # before the run, not after minutes of work
        pictures = _Pictures(args, out)
        _check_device(args.device)
        result = _run(args, config, pictures)
        out = _save(result, out, named=args.output is not None)
        pictures.finish(result)
    except (ImageError, WeightsError, ValueError, OSError) as err:
        _error(err)
        return 2
    except (MemoryError, torch.cuda.OutOfMemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        _error(f"out of memory at --size {args.size}"
               + (f" and --style-size {args.style_size}" if args.style_size else "") + "; "
               + ("use a smaller --size or --device cpu." if "CUDA" in str(err) else
                  "use a smaller --size (or --style-size), or close other programs."))
        return 2
    except KeyboardInterrupt:  # before the optimisation started: nothing to save yet
        print("Interrupted before the run started; nothing written.", file=sys.stderr)
        return 130
    return _report(result, out)


def _out_of_memory(err: BaseException) -> bool:
    """True for the ways PyTorch and Python say that memory ran out: MemoryError, CUDA's
    OutOfMemoryError, and the RuntimeError of the CPU allocator (under a memory limit,
    ``ulimit -v``)."""
    return isinstance(err, MemoryError) or any(
        text in str(err) for text in ("out of memory", "can't allocate memory",
                                      "not enough memory", "DefaultCPUAllocator"))


def _run(args: argparse.Namespace, config: Config, pictures: _Pictures):
    from .optimize import check_cost, transfer  # imported late: torch takes a moment

    cost = check_cost(args.content, args.style, config)  # refuses what cannot fit
    if not args.quiet:
        print(f"This run needs {cost}.", flush=True)
    return transfer(args.content, args.style, config, progress=not args.quiet,
                    callback=pictures if pictures.wanted else None, image_every=pictures.every)


def _report(result, out: Path) -> int:
    """Say how the run ended; the exit code."""
    if result.stop_reason in ("interrupted", "stopped"):
        print(f"Interrupted after {len(result.history)} evaluations; saved the image so far "
              f"to {out}")
        return 130
    if result.stop_reason == "diverged":
        print(f"The run diverged; saved the last finite image to {out}; lower --lr and run "
              "again.", file=sys.stderr)
        return 1
    print(f"Wrote {out} ({result.image.shape[-1]}x{result.image.shape[-2]} px, "
          f"{len(result.history)} evaluations, {result.seconds:.0f} s)")
    return 0


def _fetch_weights() -> int:
    try:
        path = caffe_weights()
    except WeightsError as err:
        _error(err)
        return 1
    print(f"VGG19 (Caffe) weights ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
