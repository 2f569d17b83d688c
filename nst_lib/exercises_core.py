"""The machinery of the notebooks' exercises (:mod:`nst_lib.exercises`): an exercise, its
verdict, and the comparisons and hints shared by the checks of every notebook."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

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


_POSITIONS = ("That is positions x positions (F^T F). The Gram matrix compares filters: "
              "with F reshaped to (N, M), G = F @ F.T, shape (N, N).")
