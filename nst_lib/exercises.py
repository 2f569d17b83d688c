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
- 04: ``style_loss(features, target_grams, weights)``, eq. 5; ``total_loss(content,
  style, alpha=, beta=)``, eq. 7; ``style_transfer(model, photo, painting, alpha, beta,
  steps)``, the whole method as the paper runs it (CVPR Fig. 2: targets once, white noise,
  one scale, L-BFGS); and two optional ones from Gatys et al. 2017, *Controlling Perceptual Factors in Neural Style Transfer*:
  ``luminance(image)`` and ``combine_luminance(grey, photo)`` (luminance-only transfer),
  ``masked_gram(F, mask)`` (two styles in two regions, :func:`two_styles`).

The checks run on small tensors (the loops on a 16 x 16 image and an untrained VGG19): no
real weights are needed. The solutions are in ``notebooks/solutions/``, not in this module.
"""

from __future__ import annotations

from typing import Any, Callable

from . import exercises_01_03, exercises_04, exercises_2017, exercises_core
from .exercises_core import Exercise, Verdict
from .losses import LossFunctions

# The exercises live in one module per part of the path (exercises_01_03, exercises_04,
# exercises_2017) on the shared machinery of exercises_core; every name they define is also
# a name of this module, so that ``nst.exercises.two_styles`` (and the tests' private names)
# read as before.
for _module in (exercises_core, exercises_01_03, exercises_04, exercises_2017):
    globals().update({k: v for k, v in vars(_module).items() if not k.startswith("__")})
del _module


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
            ok, message = exercises_core._by_cases(exercise, candidate)
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


# ------------------------------------------------------------------------- the exercises

# by name, in the order of the notebooks
EXERCISES: dict[str, Exercise] = {ex.name: ex for ex in (
    exercises_01_03._EX_LAYER_SHAPE, exercises_01_03._EX_CONTENT_LOSS,
    exercises_01_03._EX_OPTIMISE, exercises_01_03._EX_GRAM_MATRIX,
    exercises_01_03._EX_STYLE_LAYER_LOSS, exercises_04._EX_TOTAL_LOSS,
    exercises_04._EX_STYLE_LOSS, exercises_04._EX_STYLE_TRANSFER,
    exercises_2017._EX_LUMINANCE, exercises_2017._EX_COMBINE_LUMINANCE,
    exercises_2017._EX_MASKED_GRAM)}
