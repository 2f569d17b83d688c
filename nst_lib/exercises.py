"""The notebooks' exercises: checks with hints aimed at the mistake, and your code in real runs.

    nst.exercises.check("gram_matrix", gram_matrix)   # a verdict; true if it passes
    mine = nst.exercises.loss_functions(gram_matrix=gram_matrix)   # yours if it passes
    nst.reconstruct_style(painting, functions=mine)   # ... and your Gram matrix paints

A check never raises: a placeholder that returns None (or raises NotImplementedError) gets
"Not yet" and a hint; a wrong answer gets a hint aimed at the mistake it makes (a missing
1/2, a mean instead of a sum, F^T F instead of F F^T, gradients that pile up because
zero_grad is missing ...). ``EXERCISES[name].mistakes`` lists the mistakes each exercise
recognises. :func:`mine_or_library` hands back your function once it passes its check and
the library's until then, and says which, so a notebook runs top to bottom either way.

The exercises, in the order the paper builds the method:

- 01: ``layer_shape(name, height, width) -> (N, H, W)``, the size of a layer's response;
- 02: ``content_loss(F, P)``, eq. 1; ``optimise(model, targets, start, steps)``, the loop
  that changes the image with L-BFGS;
- 03: ``gram_matrix(F)``, eq. 3; ``style_layer_loss(F, A)``, eq. 4;
- 04: ``total_loss(content, style, alpha=, beta=)``, eq. 7; and two optional ones from
  Gatys et al. 2017, *Controlling Perceptual Factors in Neural Style Transfer*:
  ``luminance(image)`` and ``combine_luminance(grey, photo)`` (luminance-only transfer),
  ``masked_gram(F, mask)`` (two styles in two regions, :func:`two_styles`).

The checks run on small tensors (the loop on a 16 x 16 image and an untrained VGG19): no
real weights are needed. The solutions are in ``notebooks/solutions/``, not in this module.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F

from .color import combine_luminance, luminance, rgb_to_yiq, yiq_to_rgb
from .config import Config
from .losses import (LossFunctions, content_loss, fast_style_layer_loss, gram_matrix,
                     style_layer_loss, total_loss)
from .optimize import Targets
from .vgg import vgg19

Case = tuple[tuple, dict]  # positional and keyword arguments of one call


@dataclass(frozen=True)
class Exercise:
    """One exercise: how it is checked, the hints it gives, what stands in for it."""

    name: str
    hint: str  # what to look at again, shown with every "not yet"
    reference: Callable[..., Any]  # the library's answer (for the loop: a correct loop)
    cases: Callable[[], list[Case]] | None = None  # fresh inputs, compared with reference
    judge: Callable[[Callable], tuple[bool, str]] | None = None  # or a check of its own
    diagnose: Callable[..., str | None] = lambda *_: None  # (got, expected, case) -> hint
    # the mistakes it recognises: a short name -> the hint it gives for it
    mistakes: dict[str, str] = field(default_factory=dict)
    errors: tuple[tuple[str, str], ...] = ()  # (pattern in an error message, mistake)
    differentiable: bool = False  # the inputs require grad, and so must the answer
    library: str = ""  # how mine_or_library names the stand-in
    fallback: Callable[..., Any] | None = None  # the stand-in, when not the reference


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: true when it passed; shown as its message in a notebook."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return self.message

    __str__ = __repr__


def check(name: str, candidate: Callable[..., Any]) -> Verdict:
    """Run ``candidate`` on the exercise's tests and compare with the library.

    Returns a :class:`Verdict`: "Correct ..." or "Not yet ..." with a hint, true only if
    every test passed (so ``assert check(...)`` works). Never raises, whatever
    ``candidate`` does. Make it the last line of a cell, or print it, to see the message.
    """
    exercise = _get(name)
    try:
        if exercise.judge is not None:
            ok, message = exercise.judge(candidate)
        else:
            ok, message = _by_cases(exercise, candidate)
    except Exception as err:  # an answer so odd that the check itself tripped over it
        ok, message = False, f"{name}: the check could not read your answer ({err!r})."
    if ok:
        return Verdict(True, f"Correct: {message}")
    return Verdict(False, f"Not yet: {message}\nHint: {exercise.hint}")


def mine_or_library(name: str, mine: Callable[..., Any]) -> Callable[..., Any]:
    """Your function if it passes its check, else the library's; prints which one is used.

    This is what lets a notebook run top to bottom while an exercise is still open: the
    cells after it use the library's function and say so, until yours passes.
    """
    exercise = _get(name)
    if check(name, mine):
        print(f"{name}: yours (it passes its check).")
        return mine
    print(f"{name}: yours does not pass its check yet, so the library's {exercise.library} "
          "is used instead.")
    return exercise.fallback or exercise.reference


def loss_functions(**mine: Callable[..., Any]) -> LossFunctions:
    """``nst.LossFunctions`` with each of your functions that passes its check, and the
    library's for the others: ``loss_functions(content_loss=content_loss)``. Prints which."""
    unknown = sorted(set(mine) - set(LossFunctions._fields))
    if unknown:
        raise TypeError(f"LossFunctions has no {', '.join(unknown)}; its fields are "
                        f"{', '.join(LossFunctions._fields)}.")
    return LossFunctions(**{name: mine_or_library(name, fn) for name, fn in mine.items()})


def _get(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"No exercise {name!r}; the exercises are: {', '.join(EXERCISES)}.")
    return EXERCISES[name]


def _by_cases(exercise: Exercise, candidate: Callable) -> tuple[bool, str]:
    """Compare ``candidate`` with the reference on each test case."""
    cases = exercise.cases()
    for args, kwargs in cases:
        expected = exercise.reference(*args, **kwargs)
        grad = exercise.differentiable
        got, error = _attempt(exercise, candidate, _copy(args, grad), _copy(kwargs, grad))
        problem = error or _compare(got, expected, exercise, (args, kwargs))
        if problem:
            return False, problem
    return True, f"{exercise.name} matches the library on all {len(cases)} test cases."


def _attempt(exercise: Exercise, candidate: Callable, args: tuple, kwargs: dict,
             shown: str | None = None) -> tuple[Any, str | None]:
    """(what ``candidate`` returned, None), or (None, what it raised and the hint for it)."""
    try:
        return candidate(*args, **kwargs), None
    except NotImplementedError:  # a placeholder
        return None, None
    except Exception as err:  # the student's code failed: explain, do not raise
        text = " ".join(str(err).split())
        hint = next((exercise.mistakes[key] for pattern, key in exercise.errors
                     if re.search(pattern, text)), "")
        where = shown or f"{exercise.name}{_call(args, kwargs)}"
        return None, f"{where} raised {type(err).__name__}: {text} {hint}".strip()


def _copy(value, grad: bool = False):
    """Fresh copies of the inputs, so a function that changes its arguments in place cannot
    change the reference's inputs; with ``grad``, floating-point tensors require grad."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(grad and value.is_floating_point())
    if isinstance(value, dict):
        return {k: _copy(v, grad) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_copy(v, grad) for v in value)
    return value


def _show(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor({value.item():g})" if value.dim() == 0 else \
            f"tensor of shape {tuple(value.shape)}"
    return "{...}" if isinstance(value, dict) else repr(value)


def _call(args: tuple, kwargs: dict | None = None) -> str:
    shown = [_show(a) for a in args] + [f"{k}={_show(v)}" for k, v in (kwargs or {}).items()]
    return f"({', '.join(shown)})"


def _placeholder(got) -> bool:
    return got is None or got is NotImplemented or got is Ellipsis


def _compare(got, expected, exercise: Exercise, case: Case) -> str | None:
    """None when ``got`` matches ``expected``, else what is wrong."""
    where = f"{exercise.name}{_call(*case)}"
    if _placeholder(got):
        return f"{where} returned {got!r}: replace the placeholder with your code."
    if isinstance(expected, tuple):  # layer_shape: a tuple of ints
        return _compare_shape(got, expected, exercise, case, where)
    try:
        got_t = torch.as_tensor(got.detach() if isinstance(got, torch.Tensor) else got,
                                dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return f"{where} returned a {type(got).__name__}; return a tensor (or a number)."
    expected_t = expected.detach().to(torch.float64)
    if got_t.shape != expected_t.shape:
        message = _diagnose(exercise, got_t, expected_t, case)
        return (f"{where} has shape {tuple(got_t.shape)}, the library's has shape "
                f"{tuple(expected_t.shape)}. {message or ''}").strip()
    if torch.allclose(got_t, expected_t, rtol=1e-4, atol=1e-8 * float(expected_t.abs().max())):
        if exercise.differentiable and not (isinstance(got, torch.Tensor) and got.requires_grad):
            return f"{where} has the right value but no gradient. {exercise.mistakes['detached']}"
        return None
    message = _diagnose(exercise, got_t, expected_t, case)
    if expected_t.dim() == 0:
        values = f"{where} = {got_t.item():.6g}, the library gives {expected_t.item():.6g}."
    else:
        values = (f"{where} differs from the library's by up to "
                  f"{float((got_t - expected_t).abs().max()):.3g}.")
    return f"{values} {message or ''}".strip()


def _compare_shape(got, expected: tuple, exercise: Exercise, case: Case, where: str):
    try:
        got = tuple(int(v) for v in got)
    except (TypeError, ValueError):
        return f"{where} returned {got!r}; return a tuple of three integers (N, H, W)."
    if got == expected:
        return None
    message = _diagnose(exercise, got, expected, case)
    return f"{where} returned {got}, the library gives {expected}. {message or ''}".strip()


def _diagnose(exercise: Exercise, got, expected, case: Case) -> str | None:
    """The exercise's specific hint, if it recognises the mistake (never raises)."""
    try:
        return exercise.diagnose(got, expected, case)
    except Exception:  # an answer too odd to diagnose: the general hint will do
        return None


def _ratio(got: torch.Tensor, expected: torch.Tensor) -> float:
    """got / expected for scalars (nan when not comparable)."""
    if got.numel() != 1 or expected.numel() != 1 or expected.item() == 0:
        return math.nan
    return got.item() / expected.item()


def _near(value: float, target: float) -> bool:
    return math.isfinite(value) and math.isclose(value, target, rel_tol=1e-3)


def _first_match(got: torch.Tensor, guesses: dict[str, torch.Tensor | float],
                 mistakes: dict[str, str]) -> str | None:
    """The hint of the first guessed mistake that ``got`` equals."""
    for key, guess in guesses.items():
        guess = torch.as_tensor(guess, dtype=torch.float64)
        if guess.shape == got.shape and torch.allclose(got, guess, rtol=1e-4, atol=1e-10):
            return mistakes[key]
    return None


def _features(*shape: int, seed: int) -> torch.Tensor:
    """Random rectified feature maps (non-negative, with zeros, like post-ReLU F), stored
    channels-last as VGG19's are."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(*shape, generator=g, dtype=torch.float64).relu()
    return f.contiguous(memory_format=torch.channels_last) if f.dim() == 4 else f


# the hint for an answer that has lost its gradient (.item(), float(), .detach())
_DETACHED = ("Keep it a tensor computed from the inputs: .item(), float() or .detach() cut "
             "it off from the gradient, and the optimiser could not change the image.")

# ----------------------------------------------------------------------------- 01: shapes


def _layer_shape_reference(name: str, height: int, width: int) -> tuple[int, int, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights are fine: only shapes matter
        model = vgg19("random", device="cpu")
    with torch.no_grad():
        out = model(torch.zeros(1, 3, height, width), [name])[name]
    return tuple(out.shape[1:])


_LAYER_SHAPE_MISTAKES = {
    "channels": "Look at the channels: block 1 has 64 filters, each later block twice as "
                "many, up to 512 (64, 128, 256, 512, 512); a pool keeps the channels.",
    "rounding": "Each pool rounds down (an odd side loses its last row or column): 37 -> 18.",
    "pools": "{name} comes after {pools} pool{s}; each pool halves height and width, the 3x3 "
             "convs (padding 1) keep them.",
}


def _layer_shape_diagnose(got, expected, case) -> str | None:
    name, height, width = case[0]
    if got[0] != expected[0]:
        return _LAYER_SHAPE_MISTAKES["channels"]
    pools = int(name[4]) - (0 if name.startswith("pool") else 1)
    ceil = (math.ceil(height / 2**pools), math.ceil(width / 2**pools))
    if got[1:] == ceil and ceil != expected[1:]:
        return _LAYER_SHAPE_MISTAKES["rounding"]
    return _LAYER_SHAPE_MISTAKES["pools"].format(name=name, pools=pools,
                                                 s="s" if pools != 1 else "")


_EX_LAYER_SHAPE = Exercise(
    "layer_shape", "the conv layers keep the size; each pool halves it (rounding down); "
    "channels double after each pool, up to 512.", _layer_shape_reference,
    cases=lambda: [(("conv1_1", 64, 48), {}), (("conv3_2", 100, 75), {}), (("pool2", 37, 50), {}),
                   (("conv4_2", 170, 256), {}), (("conv5_1", 99, 131), {})],
    diagnose=_layer_shape_diagnose, mistakes=_LAYER_SHAPE_MISTAKES,
    library="shape measured on VGG19")


# ----------------------------------------------------------------------- 02: content loss

def _content_cases() -> list[Case]:
    return [((_features(1, 8, 5, 7, seed=s), _features(1, 8, 5, 7, seed=s + 10)), {})
            for s in range(3)]


_CONTENT_MISTAKES = {
    "one_number": "Eq. 1 is one number: sum the squared differences over all i and j.",
    "half": "You are off by a factor 2: eq. 1 starts with 1/2.",
    "mean": "Eq. 1 sums over i and j; a mean divides by the number of entries.",
    "norm": "Square the differences and sum them; do not take the square root (a norm).",
    "detached": _DETACHED,
}


def _content_diagnose(got, expected, case) -> str | None:
    f, p = case[0]
    if got.dim() != 0 and got.numel() != 1:
        return _CONTENT_MISTAKES["one_number"]
    r = _ratio(got, expected)
    if _near(r, 2.0):
        return _CONTENT_MISTAKES["half"]
    if _near(r, 2.0 / f.numel()) or _near(r, 1.0 / f.numel()):
        return _CONTENT_MISTAKES["mean"]
    if _near(got.item() ** 2, 2 * expected.item()) or _near(got.item() ** 2, expected.item()):
        return _CONTENT_MISTAKES["norm"]
    return None


_EX_CONTENT_LOSS = Exercise(
    "content_loss", "eq. 1: L = 1/2 * sum_ij (F_ij - P_ij)^2, a sum over all filters and "
    "positions.", content_loss, cases=_content_cases, diagnose=_content_diagnose,
    mistakes=_CONTENT_MISTAKES, differentiable=True, library="nst.content_loss")


# --------------------------------------------------------------- 02: the optimisation loop

def _optimise(model, targets, start: torch.Tensor, steps: int, *, alpha: float = 1.0,
              beta: float = 1.0) -> tuple[torch.Tensor, list[float]]:
    """The loop of exercise "optimise", as the library writes it: L-BFGS changes a copy of
    ``start`` (the network stays fixed) for ``steps`` iterations; returns the image and the
    loss of every evaluation. ``targets.losses(model, x, alpha, beta).total`` is the loss."""
    x = start.detach().clone().requires_grad_(True)  # the image is the only thing optimised
    optimizer = torch.optim.LBFGS([x], max_iter=steps, line_search_fn="strong_wolfe")
    losses: list[float] = []

    def closure():
        optimizer.zero_grad()  # backward() adds to x.grad: start from zero each time
        loss = targets.losses(model, x, alpha, beta).total
        loss.backward()
        losses.append(loss.item())
        return loss  # L-BFGS reads the loss from here

    optimizer.step(closure)
    return x.detach(), losses


_LOOP_STEPS = 8  # the steps the check asks of a loop
_LOOP_CALL = f"optimise(model, targets, start, steps={_LOOP_STEPS})"

_LOOP_MISTAKES = {
    "returns": "Return two things: the image (a tensor shaped like start) and the list of "
               "losses: return x.detach(), losses.",
    "no_grad": "The loss has no gradient to follow: the image must require grad, x = "
               "start.clone().requires_grad_(True), and the loss must be computed from x.",
    "no_return": "The closure must return the loss: L-BFGS calls it and uses what it returns.",
    "losses_tuple": "targets.losses(...) returns four terms (total, content, style, layers): "
                    "the loss is its .total.",
    "copy": "Your loop changed the caller's start image: optimise a copy, x = "
            "start.clone().requires_grad_(True).",
    "network": "Your loop optimises the network's weights: VGG19 stays fixed and only the "
               "image is optimised. Give L-BFGS the image: torch.optim.LBFGS([x], ...).",
    "targets": "Your loop never asked targets for a loss: compute it in the closure with "
               "targets.losses(model, x, alpha=1.0, beta=1.0).total.",
    "zero_grad_late": "The gradients are zeroed after loss.backward(), so L-BFGS finds none "
                      "and stops: zero them first (optimizer.zero_grad()), then backpropagate.",
    "zero_grad": "The gradients pile up: each backward() adds to x.grad, so L-BFGS got the "
                 "sum of all gradients so far instead of the current one. Call "
                 "optimizer.zero_grad() at the start of the closure.",
    "parameters": "The image did not change: give L-BFGS the image you compute the loss of, "
                  "torch.optim.LBFGS([x], ...) (not model.parameters()), and return that x.",
    "record": "The list should hold one loss per evaluation, in order: append loss.item() "
              "inside the closure, each time it runs.",
    "budget": "Your loop ran {evaluations} loss evaluations for steps={steps}: call "
              "optimizer.step(closure) once, with torch.optim.LBFGS([x], max_iter=steps, "
              "...); one step runs up to max_iter iterations.",
    "no_progress": "The loss hardly fell: use L-BFGS with its default lr=1 and "
                   "line_search_fn=\"strong_wolfe\".",
}


class _Watched:
    """Targets that record each evaluation: its total loss, and each gradient that reaches
    the image (a hook on the leaf tensor the loss is computed from)."""

    def __init__(self, targets: Targets):
        self.targets, self.totals, self.grads, self.leaf = targets, [], [], None

    def losses(self, model, x, alpha, beta):
        out = self.targets.losses(model, x, alpha, beta)
        self.totals.append(out.total.item())
        leaf = _leaf(x)
        if leaf is not None and self.leaf is None:
            self.leaf = leaf
            leaf.register_hook(self.grads.append)  # append returns None: grad unchanged
        return out

    def __getattr__(self, name):  # anything else a loop reads: the real targets'
        return getattr(self.targets, name)


def _leaf(x) -> torch.Tensor | None:
    """The tensor that ``backward()`` accumulates into: ``x`` itself, or the leaf it was
    computed from (``x.clamp(0, 1)``, say)."""
    if not isinstance(x, torch.Tensor) or not x.requires_grad:
        return None
    todo = [x.grad_fn]
    while todo:
        node = todo.pop()
        if node is None:
            continue
        if hasattr(node, "variable"):  # AccumulateGrad: the leaf's own node
            return node.variable
        todo.extend(parent for parent, _ in node.next_functions)
    return x


def _loop_problem():
    """A tiny content reconstruction (16 x 16 px, conv1_2) with an untrained VGG19, and a
    copy of it for the loop, so that a loop that trains the network harms nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained weights are fine for a check
        original = vgg19("random", device="cpu")
    model = copy.deepcopy(original)
    content, start = torch.rand(2, 1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    config = Config(content_layers=("conv1_2",), precision="float32")
    return original, model, Targets(model, config, content), start


def _judge_loop(candidate: Callable) -> tuple[bool, str]:
    original, model, targets, start = _loop_problem()
    watched, given = _Watched(targets), start.clone()
    got, error = _attempt(_EX_OPTIMISE, candidate, (model, watched, given, _LOOP_STEPS),
                          {}, shown=_LOOP_CALL)
    if error:
        return False, error
    if _placeholder(got):
        return False, f"{_LOOP_CALL} returned {got!r}: replace the placeholder with your code."
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and isinstance(got[0], torch.Tensor)
            and got[0].shape == start.shape):
        return False, f"{_LOOP_CALL} returned a {type(got).__name__}. {_LOOP_MISTAKES['returns']}"
    image, losses = got[0].detach(), got[1]
    key = _loop_mistake(original, model, watched, start, given, image, losses)
    n = len(watched.totals)
    if key:
        hint = _LOOP_MISTAKES[key].format(evaluations=n, steps=_LOOP_STEPS)
        return False, f"{_LOOP_CALL}: {hint}"
    with torch.no_grad():
        before, after = (targets.losses(model, im, 1.0, 1.0).total.item() for im in (start, image))
    if not after < 0.5 * before:
        return False, (f"{_LOOP_CALL}: the loss went from {before:.3g} to {after:.3g} in {n} "
                       f"evaluations. {_LOOP_MISTAKES['no_progress']}")
    return True, (f"your loop ran {n} loss evaluations and lowered the loss from {before:.3g} "
                  f"to {after:.3g}; it changed the image and left the network alone.")


def _loop_mistake(original, model, watched: _Watched, start, given, image, losses) -> str | None:
    """The first mistake a run of the loop shows (a key of _LOOP_MISTAKES), or None."""
    n, leaf, grads = len(watched.totals), watched.leaf, watched.grads
    grad = leaf.grad if leaf is not None else None
    if not torch.equal(given.detach(), start):
        return "copy"
    if any(not torch.equal(a, b) for a, b in zip(original.parameters(), model.parameters())):
        return "network"
    if n == 0:
        return "targets"
    if n == 1 and grads and (grad is None or not grad.any()):
        return "zero_grad_late"
    if grad is not None and len(grads) >= 2 and not torch.allclose(grad, grads[-1]):
        return "zero_grad"
    if torch.equal(image, start):
        return "parameters"
    try:
        recorded = [float(v) for v in losses]
    except (TypeError, ValueError, RuntimeError):
        return "record"
    if len(recorded) != n or not all(math.isclose(a, b, rel_tol=1e-5)
                                     for a, b in zip(recorded, watched.totals)):
        return "record"
    if not _LOOP_STEPS / 2 <= n <= 2 * _LOOP_STEPS:
        return "budget"
    return None


_EX_OPTIMISE = Exercise(
    "optimise", "the optimiser changes the image x (a copy of start that requires grad), never "
    "the network; at every evaluation it calls your closure, which computes the loss of x and "
    "its gradient, records the loss and returns it.", _optimise, judge=_judge_loop,
    mistakes=_LOOP_MISTAKES,
    errors=(("does not require grad", "no_grad"), ("not 'NoneType'", "no_return"),
            ("'Losses' object has no attribute", "losses_tuple"),
            # L-BFGS cannot flatten the gradients of VGG19's channels-last weights
            ("view size is not compatible", "network")),
    library="loop (L-BFGS with a strong Wolfe line search)")


# -------------------------------------------- 03: Gram matrix, eq. 3, and E_l, eq. 4

def _gram_cases() -> list[Case]:
    return [((_features(1, n, h, w, seed=s),), {})
            for s, (n, h, w) in enumerate([(4, 3, 5), (6, 7, 2), (3, 4, 4)])]


_POSITIONS = ("That is positions x positions (F^T F). The Gram matrix compares filters: "
              "with F reshaped to (N, M), G = F @ F.T, shape (N, N).")

_GRAM_MISTAKES = {
    "positions": _POSITIONS,
    "batch": "Drop the batch dimension: reshape F to (N, M) first, then G is (N, N).",
    "shape": "Reshape the (1, N, H, W) features to F of shape (N, M = H*W), then G = F @ F.T.",
    "divided_by_M": "Eq. 3 is a plain sum; do not divide by M (eq. 4 normalises later).",
    "divided_by_NM": "Eq. 3 is a plain sum; do not divide by N*M (eq. 4 normalises later).",
    "divided_by_N": "Eq. 3 is a plain sum; do not divide by N (eq. 4 normalises later).",
    "not_symmetric": "A Gram matrix is symmetric; yours is not. Multiply F by its transpose, "
                     "F @ F.T; reshaping F to (M, N) is not a transpose.",
    "mixed": "Reshape straight from (1, N, H, W) to (N, H*W); moving the channel axis first "
             "mixes filters with positions.",
    "detached": _DETACHED,
}


def _gram_diagnose(got, expected, case) -> str | None:
    (f,) = case[0]
    n, m = f.shape[1], f.shape[2] * f.shape[3]
    if got.shape == (m, m):
        return _GRAM_MISTAKES["positions"]
    if got.shape in ((1, n, n), (n, n, 1)):
        return _GRAM_MISTAKES["batch"]
    if got.shape != expected.shape:
        return _GRAM_MISTAKES["shape"]
    for scale, key in ((m, "divided_by_M"), (n * m, "divided_by_NM"), (n, "divided_by_N")):
        if torch.allclose(got * scale, expected, rtol=1e-4):
            return _GRAM_MISTAKES[key]
    if not torch.allclose(got, got.T):
        return _GRAM_MISTAKES["not_symmetric"]
    return _GRAM_MISTAKES["mixed"]


_EX_GRAM_MATRIX = Exercise(
    "gram_matrix", "reshape (1, N, H, W) to F of shape (N, M) with M = H*W; eq. 3: G_ij = "
    "sum_k F_ik F_jk, that is F @ F.T, shape (N, N).", gram_matrix, cases=_gram_cases,
    diagnose=_gram_diagnose, mistakes=_GRAM_MISTAKES, differentiable=True,
    library="nst.gram_matrix")


def _style_cases() -> list[Case]:
    cases = []
    # N and M chosen so that no two factors of _style_factors coincide (N = 4 would look
    # like a missing 4)
    for s, (n, h, w) in enumerate([(5, 3, 4), (6, 7, 2)]):
        target = gram_matrix(_features(1, n, h + 2, w + 1, seed=s + 20))
        cases.append(((_features(1, n, h, w, seed=s), target), {}))
    return cases


_STYLE_MISTAKES = {
    "one_number": "E_l is one number: sum (G - A)^2 over all i and j.",
    "no_4": "Eq. 4 divides by 4 N^2 M^2: the 4 is missing.",
    "NM": "Eq. 4 divides by 4 N^2 M^2: you divided by N M (the 4 and both squares are "
          "missing).",
    "4NM": "Eq. 4 divides by 4 N^2 M^2 (squares): you divided by 4 N M.",
    "no_division": "Eq. 4 divides the sum by 4 N^2 M^2.",
    "M_not_squared": "Eq. 4 divides by 4 N^2 M^2: square M too (you divided by 4 N^2 M).",
    "N_not_squared": "Eq. 4 divides by 4 N^2 M^2: square N too (you divided by 4 N M^2).",
    "4_squared": "(4 N M)^2 squares the 4 as well: eq. 4 divides by 4 N^2 M^2, that is "
                 "4 * N**2 * M**2.",
    "precedence": "Put the denominator in brackets: x / 4 * N**2 * M**2 multiplies by "
                  "N^2 M^2; write x / (4 * N**2 * M**2).",
    "N_squared_twice": "You divided by N^2 once too often: 1/(4 N^2 M^2) already takes the "
                       "mean over the N^2 entries, and M is H*W (features.numel() is N*H*W).",
    "formula": "E_l = 1/(4 N^2 M^2) * sum_ij (G_ij - A_ij)^2 with G the Gram matrix of "
               "your F.",
    "detached": _DETACHED,
}


def _style_factors(n: int, m: int) -> list[tuple[float, str]]:
    """got / expected for each usual mistake in eq. 4 (N filters, M positions), and its key."""
    return [
        (4, "no_4"),                        # / (N^2 M^2)
        (4 * n * m, "NM"),                  # / (N M)
        (n * m, "4NM"),                     # / (4 N M)
        (4 * n**2 * m**2, "no_division"),   # the plain sum
        (m, "M_not_squared"),               # / (4 N^2 M)
        (n, "N_not_squared"),               # / (4 N M^2)
        (1 / 4, "4_squared"),               # / (4 N M)^2
        (n**4 * m**4, "precedence"),        # / 4 * N**2 * M**2
        (1 / n**2, "N_squared_twice"),      # a mean on top, or M = N*H*W
    ]


def _style_diagnose(got, expected, case) -> str | None:
    f, _ = case[0]
    n, m = f.shape[1], f.shape[2] * f.shape[3]
    if got.numel() != 1:
        return _STYLE_MISTAKES["one_number"]
    r = _ratio(got, expected)
    for factor, key in _style_factors(n, m):
        if _near(r, factor):
            return _STYLE_MISTAKES[key]
    return _STYLE_MISTAKES["formula"]


_EX_STYLE_LAYER_LOSS = Exercise(
    "style_layer_loss", "eq. 4: E = 1/(4 N^2 M^2) * sum_ij (G_ij - A_ij)^2, N filters, M = H*W.",
    style_layer_loss, cases=_style_cases, diagnose=_style_diagnose, mistakes=_STYLE_MISTAKES,
    differentiable=True, fallback=fast_style_layer_loss,
    library="nst.fast_style_layer_loss (eq. 4, with eq. 6 as its backward pass)")


# ------------------------------------------------------------------- 04: eq. 7

def _total_cases() -> list[Case]:
    # alpha != 1 and every value distinct, so that each mistake gives its own number
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return [((t(2.0), t(3.0)), {"alpha": 5.0, "beta": 7.0}),
            ((t(0.25), t(0.004)), {"alpha": 0.5, "beta": 2000.0})]


_TOTAL_MISTAKES = {
    "swapped": "alpha weighs the content and beta the style: alpha * content + beta * style.",
    "beta_missing": "Multiply the style loss by beta as well.",
    "alpha_missing": "Multiply the content loss by alpha as well.",
    "ratio": "Weigh each term by its own factor, alpha * content + beta * style: the paper "
             "quotes the ratio alpha/beta, but eq. 7 uses both.",
    "mean": "Eq. 7 is a weighted sum, not a mean: do not divide by 2.",
    "normalised": "Eq. 7 does not divide by alpha + beta: alpha * content + beta * style.",
    "keywords": "Keep the names alpha and beta: a run calls total_loss(content, style, "
                "alpha=..., beta=...).",
    "detached": _DETACHED,
}


def _total_diagnose(got, expected, case) -> str | None:
    (content, style), weights = case
    c, s, a, b = float(content), float(style), weights["alpha"], weights["beta"]
    guesses = {"swapped": a * s + b * c, "beta_missing": a * c + s, "alpha_missing": c + b * s,
               "ratio": a / b * c + s, "mean": (a * c + b * s) / 2,
               "normalised": (a * c + b * s) / (a + b)}
    return _first_match(got, guesses, _TOTAL_MISTAKES)


_EX_TOTAL_LOSS = Exercise(
    "total_loss", "eq. 7: L_total = alpha * L_content + beta * L_style.", total_loss,
    cases=_total_cases, diagnose=_total_diagnose, mistakes=_TOTAL_MISTAKES,
    errors=(("unexpected keyword argument", "keywords"),), differentiable=True,
    library="nst.total_loss")


# ------------------------------------------ 04, optional: luminance-only transfer (2017)

def _luminance_cases() -> list[Case]:
    pure = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]],  # red ... white
                        dtype=torch.float64).T.reshape(1, 3, 2, 2)
    noise = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(40),
                       dtype=torch.float64)
    return [((pure,), {}), ((noise,), {})]


_LUMA_WEIGHTS = {"mean": (1 / 3, 1 / 3, 1 / 3), "bgr": (0.114, 0.587, 0.299),
                 "rec709": (0.2126, 0.7152, 0.0722)}

_LUMINANCE_MISTAKES = {
    "one_channel": "Repeat Y in all three channels, shape (1, 3, H, W): VGG19 takes RGB "
                   "images, and a grey RGB pixel is (Y, Y, Y).",
    "mean": "Not the plain mean of R, G and B: Y = 0.299 R + 0.587 G + 0.114 B weighs green "
            "most, as the eye does.",
    "bgr": "The channels are R, G, B in that order: Y = 0.299 R + 0.587 G + 0.114 B.",
    "rec709": "Those are the Rec. 709 (HDTV) weights; nst.color uses YIQ's Y = 0.299 R + "
              "0.587 G + 0.114 B.",
}


def _luminance_diagnose(got, expected, case) -> str | None:
    (image,) = case[0]
    if got.shape != expected.shape and got.numel() == image[0, 0].numel():
        return _LUMINANCE_MISTAKES["one_channel"]
    guesses = {key: sum(w * image[:, i] for i, w in enumerate(weights)).unsqueeze(1)
               .expand_as(image) for key, weights in _LUMA_WEIGHTS.items()}
    return _first_match(got, guesses, _LUMINANCE_MISTAKES)


_EX_LUMINANCE = Exercise(
    "luminance", "Y = 0.299 R + 0.587 G + 0.114 B (the Y of YIQ), repeated in three channels: "
    "(1, 3, H, W) -> (1, 3, H, W).", luminance, cases=_luminance_cases,
    diagnose=_luminance_diagnose, mistakes=_LUMINANCE_MISTAKES, library="nst.color.luminance")


def _combine_cases() -> list[Case]:
    g = torch.Generator().manual_seed(50)
    cases = []
    for h, w in ((4, 6), (5, 3)):
        grey = torch.rand(1, 1, h, w, generator=g, dtype=torch.float64).expand(1, 3, h, w)
        photo = torch.rand(1, 3, h, w, generator=g, dtype=torch.float64)
        cases.append(((grey.clone(), photo), {}))  # the photo's colours leave [0, 1]
    return cases


_COMBINE_MISTAKES = {
    "photo_luminance": "That is the photo again: take Y from the stylised grey image, and only "
                       "I and Q from the photo.",
    "swapped": "That is the photo's luminance: Y comes from the stylised grey image (its "
               "strokes), I and Q from the photo (its colours).",
    "grey_only": "That is the grey image unchanged: put the photo's colour channels I and Q "
                 "back.",
    "not_clamped": "Clamp the result to [0, 1]: a new Y with the photo's I and Q can leave the "
                   "range of RGB.",
}


def _combine_diagnose(got, expected, case) -> str | None:
    grey, photo = case[0]
    yiq = torch.cat([grey.mean(dim=1, keepdim=True), rgb_to_yiq(photo)[:, 1:]], dim=1)
    guesses = {"photo_luminance": photo, "swapped": luminance(photo), "grey_only": grey,
               "not_clamped": yiq_to_rgb(yiq)}
    return _first_match(got, guesses, _COMBINE_MISTAKES)


_EX_COMBINE_LUMINANCE = Exercise(
    "combine_luminance", "convert the photo to YIQ (nst.color.rgb_to_yiq), replace its Y by the "
    "grey image's (the mean of its channels), convert back (nst.color.yiq_to_rgb) and clamp "
    "to [0, 1].", combine_luminance, cases=_combine_cases, diagnose=_combine_diagnose,
    mistakes=_COMBINE_MISTAKES, library="nst.color.combine_luminance")


# ------------------------------------------------ 04, optional: two styles in two regions

def _masked_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The Gram matrix of one region (Gatys et al. 2017, spatial control): eq. 3 of the
    features multiplied by ``mask`` (1, 1, H0, W0) in [0, 1], averaged down to the layer's
    H x W. (1, N, H, W) -> (N, N)."""
    return gram_matrix(features * F.interpolate(mask, size=features.shape[-2:], mode="area"))


def _mask_cases() -> list[Case]:
    g = torch.Generator().manual_seed(60)
    cases = []
    # masks made of k x k blocks, so that any way of shrinking them gives the same mask
    for s, (n, h, w, k) in enumerate([(4, 3, 5, 4), (6, 4, 4, 2), (3, 6, 2, 1)]):
        blocks = (torch.rand(1, 1, h, w, generator=g) < 0.5).double()
        blocks[..., 0, 0], blocks[..., -1, -1] = 1.0, 0.0  # both regions are there
        mask = blocks.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)
        cases.append(((_features(1, n, h, w, seed=70 + s), mask), {}))
    return cases


_MASK_MISTAKES = {
    "not_resized": "Shrink the mask to the layer's H x W first: F.interpolate(mask, "
                   "size=features.shape[-2:], mode=\"area\"); each pool halves the maps.",
    "no_mask": "That is the Gram matrix of the whole image: multiply the features by the "
               "(shrunk) mask before eq. 3, so that only the region's positions count.",
    "inverted": "That is the other region: the mask is 1 where this style goes; multiply by "
                "the mask, not by 1 - mask.",
    "normalised": "Keep eq. 3 a plain sum: do not divide by the number of positions.",
    "positions": _POSITIONS,
    "detached": _DETACHED,
}


def _mask_diagnose(got, expected, case) -> str | None:
    f, mask = case[0]
    m = F.interpolate(mask, size=f.shape[-2:], mode="area")
    if got.shape == (m.numel(), m.numel()):
        return _MASK_MISTAKES["positions"]
    guesses = {"no_mask": gram_matrix(f), "inverted": gram_matrix(f * (1 - m)),
               "normalised": expected / m.sum()}
    return (_first_match(got, guesses, _MASK_MISTAKES)
            or _first_match(got, {"normalised": expected / m.numel()}, _MASK_MISTAKES))


_EX_MASKED_GRAM = Exercise(
    "masked_gram", "shrink the mask (1, 1, H0, W0) to the layer's H x W (F.interpolate(..., "
    "mode=\"area\")), multiply the features by it, then eq. 3 (nst.gram_matrix).", _masked_gram,
    cases=_mask_cases, diagnose=_mask_diagnose, mistakes=_MASK_MISTAKES,
    errors=(("must match the size of tensor", "not_resized"),), differentiable=True,
    library="masked Gram matrix")


class _Total(NamedTuple):
    total: torch.Tensor  # alpha * content + beta * style (eq. 7)


class _TwoStyles:
    """Eq. 7 with two styles, each matched in its own region (Gatys et al. 2017).

    The regions are ``mask`` (for ``styles[0]``) and ``1 - mask``. Region r's term on layer
    l is E = 1/(4 N^2 M_r^2) sum_ij (G^r_ij - A^r_ij)^2, with G^r = masked_gram(F, mask_r),
    M_r = M * mean(mask_r) the positions in the region, and A^r the style's Gram matrix per
    position times M_r: a region's E is on the scale of a whole image's. The content term
    is eq. 1 per position of its layer, as in :class:`nst_lib.Config`.
    """

    def __init__(self, model, config: Config, content, styles, mask, masked_gram):
        self.weights, self.masked_gram = config.layer_weights(), masked_gram
        self.masks = (mask, 1 - mask)
        self.layers = tuple(dict.fromkeys(config.content_layers + tuple(self.weights)))
        with torch.no_grad():
            self.content = model(content, config.content_layers)
            self.grams = [{name: gram_matrix(f) / (f.shape[-2] * f.shape[-1])
                           for name, f in model(s, tuple(self.weights)).items()}
                          for s in styles]

    def losses(self, model, x, alpha: float, beta: float) -> _Total:
        feats = model(x, self.layers)
        content = sum(content_loss(feats[name], p) / (p.shape[-2] * p.shape[-1])
                      for name, p in self.content.items())
        style = 0.0
        for name, w in self.weights.items():
            f = feats[name]
            n, m = f.shape[1], f.shape[-2] * f.shape[-1]
            for mask, grams in zip(self.masks, self.grams):
                m_r = m * float(mask.mean())
                g = self.masked_gram(f, mask)
                style = style + w * (g - grams[name] * m_r).pow(2).sum() / (4 * n**2 * m_r**2)
        return _Total(alpha * content + beta * style)


def two_styles(content: torch.Tensor, styles, mask: torch.Tensor, masked_gram: Callable, *,
               model, steps: int, config: Config | None = None):
    """Style transfer with ``styles[0]`` where ``mask`` is 1 and ``styles[1]`` where it is 0.

    ``content``, ``styles``: RGB (1, 3, H, W) in [0, 1]; ``mask``: (1, 1, H, W) at the
    content's size. ``masked_gram(features, mask)`` is the Gram matrix of one region (the
    exercise). ``config``'s layers, w_l and alpha/beta are used (default ``nst.Config()``);
    one scale of ``steps`` L-BFGS iterations from the content image. Returns the image
    (on the CPU, clamped to [0, 1]) and the losses of every evaluation.
    """
    config = config or Config()
    if not 0 < float(mask.mean()) < 1:
        raise ValueError("The mask must mark two regions: some of it 1, some of it 0.")
    device = next(model.parameters()).device
    content, mask = content.to(device), mask.to(device)
    targets = _TwoStyles(model, config, content, [s.to(device) for s in styles], mask,
                         masked_gram)
    image, losses = _optimise(model, targets, content, steps, alpha=config.alpha,
                              beta=config.beta)
    return image.clamp(0, 1).cpu(), losses


# ------------------------------------------------------------------------- the exercises

# by name, in the order of the notebooks
EXERCISES: dict[str, Exercise] = {ex.name: ex for ex in (
    _EX_LAYER_SHAPE, _EX_CONTENT_LOSS, _EX_OPTIMISE, _EX_GRAM_MATRIX, _EX_STYLE_LAYER_LOSS,
    _EX_TOTAL_LOSS, _EX_LUMINANCE, _EX_COMBINE_LUMINANCE, _EX_MASKED_GRAM)}
