"""The exercises of notebooks 1-3 (:mod:`nst_lib.exercises`): a layer's shape (01); eq. 1 and
the L-BFGS loop (02); eq. 3 and eq. 4 (03)."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import torch

from .config import Config
from .exercises_core import (_DETACHED, _POSITIONS, Case, Exercise, _attempt, _features,
                             _near, _placeholder, _ratio)
from .losses import content_loss, fast_style_layer_loss, gram_matrix, style_layer_loss
from .optimize import Targets
from .vgg import vgg19

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
