"""Checks for the notebooks' exercises: does your function match the library?

    nst.exercises.check("gram_matrix", gram_matrix)   # shows a verdict; true if it matches
    nst.exercises.solution("gram_matrix")             # prints a solution

A check never raises: a stub that returns None (or raises NotImplementedError) gets
"not yet" and a hint; a wrong answer gets a hint aimed at the usual mistake (a missing 1/2,
a mean instead of a sum, the wrong axis). Each exercise lists the mistakes it recognises in
``EXERCISES[name].mistakes``. The exercises, by notebook:

- 01: ``layer_shape(name, height, width) -> (N, H, W)``, the size of a layer's response;
- 02: ``content_loss(F, P)``, eq. 1;
- 03: ``gram_matrix(F)``, eq. 3, and ``style_layer_loss(F, A)``, eq. 4;
- 04: ``style_loss(features, target_grams, weights)``, eq. 5.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .losses import content_loss, gram_matrix, style_layer_loss, style_loss
from .vgg import vgg19

Case = tuple[tuple, dict]  # positional and keyword arguments of one call


@dataclass(frozen=True)
class Exercise:
    """One exercise: test cases, the library's answer, hints and a solution."""

    name: str
    cases: Callable[[], list[Case]]  # fresh inputs for each check
    reference: Callable[..., Any]  # the library's answer for the same inputs
    hint: str  # what to look at again, shown with every "not yet"
    solution: str  # source code, printed by solution(name)
    diagnose: Callable[[torch.Tensor, torch.Tensor, Case], str | None] = lambda *_: None
    # the usual mistakes that diagnose recognises: a short name -> the hint it gives for it
    mistakes: dict[str, str] = field(default_factory=dict)


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
    """Run ``candidate`` on the exercise's test cases and compare with the library.

    Returns a :class:`Verdict`: "Correct ..." or "Not yet ..." with a hint, true only if
    every case matched (so ``assert check(...)`` works). Never raises, whatever
    ``candidate`` does. Make it the last line of a cell, or print it, to see the message.
    """
    exercise = _get(name)
    cases = exercise.cases()
    for args, kwargs in cases:
        expected = exercise.reference(*args, **kwargs)
        try:
            got = candidate(*_copy(args), **_copy(kwargs))
        except NotImplementedError:
            got = None
        except Exception as err:  # the student's code failed: explain, do not raise
            return Verdict(False, f"Not yet: {name}{_call(args)} raised {type(err).__name__}: "
                                  f"{err}\nHint: {exercise.hint}")
        problem = _compare(got, expected, exercise, (args, kwargs))
        if problem:
            return Verdict(False, f"Not yet: {problem}\nHint: {exercise.hint}")
    return Verdict(True, f"Correct: {name} matches the library on all {len(cases)} test cases.")


def solution(name: str) -> None:
    """Print a solution of the exercise (try first!)."""
    print(_get(name).solution)


def _get(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"No exercise {name!r}; the exercises are: {', '.join(EXERCISES)}.")
    return EXERCISES[name]


def _copy(value):
    """Fresh copies of the inputs, so a function that changes its arguments in place cannot
    change the reference's inputs."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value


def _call(args: tuple) -> str:
    shown = [f"tensor of shape {tuple(a.shape)}" if isinstance(a, torch.Tensor)
             else "{...}" if isinstance(a, dict) else repr(a) for a in args]
    return f"({', '.join(shown)})"


def _compare(got, expected, exercise: Exercise, case: Case) -> str | None:
    """None when ``got`` matches ``expected``, else what is wrong."""
    where = f"{exercise.name}{_call(case[0])}"
    if got is None or got is NotImplemented or got is Ellipsis:
        return f"{where} returned {got!r}: replace the placeholder with your code."
    if isinstance(expected, tuple):  # layer_shape: a tuple of ints
        try:
            got = tuple(int(v) for v in got)
        except (TypeError, ValueError):
            return f"{where} returned {got!r}; return a tuple of three integers (N, H, W)."
        if got == expected:
            return None
        message = _diagnose(exercise, got, expected, case)
        return f"{where} returned {got}, the library gives {expected}. {message or ''}".strip()
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
        return None
    message = _diagnose(exercise, got_t, expected_t, case)
    if expected_t.dim() == 0:
        values = f"{where} = {got_t.item():.6g}, the library gives {expected_t.item():.6g}."
    else:
        values = (f"{where} differs from the library's by up to "
                  f"{float((got_t - expected_t).abs().max()):.3g}.")
    return f"{values} {message or ''}".strip()


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


def _features(*shape: int, seed: int) -> torch.Tensor:
    """Random rectified feature maps (non-negative, with zeros, like post-ReLU F)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).relu()


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


_LAYER_SHAPE_SOLUTION = '''\
def layer_shape(name, height, width):
    block = int(name[4])                      # "conv3_2" -> 3, "pool2" -> 2
    pools = block if name.startswith("pool") else block - 1
    channels = min(64 * 2 ** (block - 1), 512)
    for _ in range(pools):                    # each 2x2 pool, stride 2, rounds down
        height, width = height // 2, width // 2
    return channels, height, width'''


# ----------------------------------------------------------------------- 02: content loss

def _content_cases() -> list[Case]:
    return [((_features(1, 8, 5, 7, seed=s), _features(1, 8, 5, 7, seed=s + 10)), {})
            for s in range(3)]


_CONTENT_MISTAKES = {
    "one_number": "Eq. 1 is one number: sum the squared differences over all i and j.",
    "half": "You are off by a factor 2: eq. 1 starts with 1/2.",
    "mean": "Eq. 1 sums over i and j; a mean divides by the number of entries.",
    "norm": "Square the differences and sum them; do not take the square root (a norm).",
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


_CONTENT_SOLUTION = '''\
def content_loss(features, target):
    return 0.5 * ((features - target) ** 2).sum()'''


# -------------------------------------------- 03: Gram matrix, eq. 3, and E_l, eq. 4

def _gram_cases() -> list[Case]:
    return [((_features(1, n, h, w, seed=s),), {})
            for s, (n, h, w) in enumerate([(4, 3, 5), (6, 7, 2), (3, 4, 4)])]


_GRAM_MISTAKES = {
    "positions": "That is positions x positions (F^T F). The Gram matrix compares filters: "
                 "with F reshaped to (N, M), G = F @ F.T, shape (N, N).",
    "batch": "Drop the batch dimension: reshape F to (N, M) first, then G is (N, N).",
    "shape": "Reshape the (1, N, H, W) features to F of shape (N, M = H*W), then G = F @ F.T.",
    "divided_by_M": "Eq. 3 is a plain sum; do not divide by M (eq. 4 normalises later).",
    "divided_by_NM": "Eq. 3 is a plain sum; do not divide by N*M (eq. 4 normalises later).",
    "divided_by_N": "Eq. 3 is a plain sum; do not divide by N (eq. 4 normalises later).",
    "not_symmetric": "A Gram matrix is symmetric; yours is not. Multiply F by its transpose, "
                     "F @ F.T; reshaping F to (M, N) is not a transpose.",
    "mixed": "Reshape straight from (1, N, H, W) to (N, H*W); moving the channel axis first "
             "mixes filters with positions.",
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


_GRAM_SOLUTION = '''\
def gram_matrix(features):
    n = features.shape[1]
    f = features.reshape(n, -1)     # (N, M): one row per filter, one column per position
    return f @ f.T                  # (N, N): G_ij = sum_k F_ik F_jk'''


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


_STYLE_SOLUTION = '''\
def style_layer_loss(features, target_gram):
    n = features.shape[1]                       # N filters
    m = features.shape[2] * features.shape[3]   # M positions
    g = nst.gram_matrix(features)
    return ((g - target_gram) ** 2).sum() / (4 * n**2 * m**2)'''


# --------------------------------------------------------------------- 04: eq. 5

_STYLE_SHAPES = {"conv1_1": (4, 6, 5), "conv2_1": (8, 3, 3), "conv3_1": (6, 2, 2)}


def _style_loss_cases() -> list[Case]:
    cases = []
    for s, weights in enumerate([{"conv1_1": 0.2, "conv2_1": 0.5, "conv3_1": 0.3},
                                 {"conv1_1": 1.0, "conv3_1": 3.0}]):
        feats = {name: _features(1, *shape, seed=10 * s + k)
                 for k, (name, shape) in enumerate(_STYLE_SHAPES.items())}
        feats["conv4_2"] = _features(1, 5, 2, 3, seed=10 * s + 5)  # a content layer: not in eq. 5
        grams = {name: gram_matrix(_features(1, shape[0], 4, 4, seed=10 * s + 6 + k))
                 for k, (name, shape) in enumerate(_STYLE_SHAPES.items())}
        cases.append(((feats, grams, weights), {}))
    return cases


_STYLE_LOSS_MISTAKES = {
    "one_number": "L_style is one number.",
    "unweighted": "Multiply each E_l by its weight w_l = weights[name].",
    "mean": "Use the given weights w_l, not 1 / (number of layers).",
    "all_layers": "Sum over the layers named in `weights` only (the others may be content "
                  "layers).",
    "formula": "L_style = sum over the layers in weights of weights[name] * E_l (eq. 5).",
}


def _style_loss_diagnose(got, expected, case) -> str | None:
    features, grams, weights = case[0]
    if got.numel() != 1:
        return _STYLE_LOSS_MISTAKES["one_number"]
    terms = {name: float(style_layer_loss(features[name], grams[name])) for name in weights}
    guesses = {
        "unweighted": sum(terms.values()),
        "mean": sum(terms.values()) / len(terms),
        "all_layers": sum(float(style_layer_loss(features[n], g)) * weights.get(n, 1.0)
                          for n, g in grams.items()),
    }
    for key, value in guesses.items():
        if _near(got.item(), value):
            return _STYLE_LOSS_MISTAKES[key]
    return _STYLE_LOSS_MISTAKES["formula"]


_STYLE_LOSS_SOLUTION = '''\
def style_loss(features, target_grams, weights):
    return sum(w * nst.style_layer_loss(features[name], target_grams[name])
               for name, w in weights.items())'''


EXERCISES: dict[str, Exercise] = {
    ex.name: ex for ex in [
        Exercise(
            name="layer_shape",
            cases=lambda: [(("conv1_1", 64, 48), {}), (("conv3_2", 100, 75), {}),
                           (("pool2", 37, 50), {}), (("conv4_2", 170, 256), {}),
                           (("conv5_1", 99, 131), {})],
            reference=_layer_shape_reference,
            hint="the conv layers keep the size; each pool halves it (rounding down); "
                 "channels double after each pool, up to 512.",
            solution=_LAYER_SHAPE_SOLUTION,
            diagnose=_layer_shape_diagnose,
            mistakes=_LAYER_SHAPE_MISTAKES,
        ),
        Exercise(
            name="content_loss",
            cases=_content_cases,
            reference=content_loss,
            hint="eq. 1: L = 1/2 * sum_ij (F_ij - P_ij)^2, a sum over all filters and positions.",
            solution=_CONTENT_SOLUTION,
            diagnose=_content_diagnose,
            mistakes=_CONTENT_MISTAKES,
        ),
        Exercise(
            name="gram_matrix",
            cases=_gram_cases,
            reference=gram_matrix,
            hint="reshape (1, N, H, W) to F of shape (N, M) with M = H*W; "
                 "eq. 3: G_ij = sum_k F_ik F_jk, that is F @ F.T, shape (N, N).",
            solution=_GRAM_SOLUTION,
            diagnose=_gram_diagnose,
            mistakes=_GRAM_MISTAKES,
        ),
        Exercise(
            name="style_layer_loss",
            cases=_style_cases,
            reference=style_layer_loss,
            hint="eq. 4: E = 1/(4 N^2 M^2) * sum_ij (G_ij - A_ij)^2, N filters, M = H*W.",
            solution=_STYLE_SOLUTION,
            diagnose=_style_diagnose,
            mistakes=_STYLE_MISTAKES,
        ),
        Exercise(
            name="style_loss",
            cases=_style_loss_cases,
            reference=style_loss,
            hint="eq. 5: L_style = sum_l w_l E_l over the layers in `weights` "
                 "(name -> w_l), with E_l = nst.style_layer_loss(features[name], target_grams[name]).",
            solution=_STYLE_LOSS_SOLUTION,
            diagnose=_style_loss_diagnose,
            mistakes=_STYLE_LOSS_MISTAKES,
        ),
    ]
}
