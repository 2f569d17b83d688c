"""The exercises of notebook 4 (:mod:`nst_lib.exercises`): eq. 7."""

from __future__ import annotations

import torch

from .exercises_core import _DETACHED, Case, Exercise, _first_match
from .losses import total_loss

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
