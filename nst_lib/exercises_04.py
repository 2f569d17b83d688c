"""The exercises of notebook 4 (:mod:`nst_lib.exercises`): eq. 7, eq. 5, and the method
assembled, ``style_transfer`` (the paper's: white noise, one scale, L-BFGS), checked on a
16 x 16 image with an untrained VGG19 whose every call it watches."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import torch

from .exercises_core import (_DETACHED, Case, Exercise, _attempt, _features, _first_match,
                             _placeholder)
from .losses import content_loss, gram_matrix, style_layer_loss, style_loss, total_loss
from .vgg import vgg19

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


# --------------------------------------------------------------------------- 04: eq. 5

STYLE_WEIGHTS = {name: 1 / 5 for name in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")}


def _style_loss_cases() -> list[Case]:
    """Features of three style layers and the content layer (a run asks the network for all
    of them at once), Gram matrices of the style layers only, unequal and equal weights."""
    cases = []
    for s, weights in enumerate(({"conv1_1": 0.5, "conv2_1": 0.3, "conv3_1": 0.2},
                                 {"conv1_1": 1 / 3, "conv2_1": 1 / 3, "conv3_1": 1 / 3})):
        shapes = {"conv1_1": (4, 6, 5), "conv2_1": (6, 3, 3), "conv3_1": (8, 2, 2),
                  "conv4_2": (10, 1, 2)}
        features = {name: _features(1, *shape, seed=80 + 10 * s + i)
                    for i, (name, shape) in enumerate(shapes.items())}
        grams = {name: gram_matrix(_features(1, *shapes[name], seed=90 + 10 * s + i))
                 for i, name in enumerate(weights)}
        cases.append(((features, grams, weights), {}))
    return cases


_STYLE_LOSS_MISTAKES = {
    "no_weights": "Eq. 5 weighs each layer: L_style = sum_l w_l E_l. You added the E_l without "
                  "their w_l.",
    "mean": "Eq. 5 is a weighted sum with the given w_l, not a mean of the E_l (the two agree "
            "only when every w_l is 1/(number of layers)).",
    "all_layers": "Sum over the style layers, the keys of weights (for name, w in "
                  "weights.items()): features also holds the content layer, conv4_2, which has "
                  "no Gram matrix.",
    "one_number": "L_style is one number: the sum of w_l E_l over the layers.",
    "detached": _DETACHED,
}


def _style_loss_diagnose(got, expected, case) -> str | None:
    features, grams, weights = case[0]
    if got.numel() != 1:
        return _STYLE_LOSS_MISTAKES["one_number"]
    terms = [float(style_layer_loss(features[n], grams[n])) for n in weights]
    return _first_match(got.reshape(()), {"no_weights": sum(terms),
                                          "mean": sum(terms) / len(terms)},
                        _STYLE_LOSS_MISTAKES)


_EX_STYLE_LOSS = Exercise(
    "style_loss", "eq. 5: L_style = sum_l w_l E_l over the layers of weights, E_l = "
    "style_layer_loss(features[l], target_grams[l]) (eq. 4).", style_loss,
    cases=_style_loss_cases, diagnose=_style_loss_diagnose, mistakes=_STYLE_LOSS_MISTAKES,
    errors=(("conv4_2", "all_layers"),), differentiable=True, library="nst.style_loss")


# ---------------------------------------------------------- 04: the method, assembled

CONTENT_LAYER = "conv4_2"


def _style_transfer(model, photo: torch.Tensor, painting: torch.Tensor, alpha: float,
                    beta: float, steps: int) -> tuple[torch.Tensor, list[float]]:
    """The paper's method in one function, as exercise "style_transfer" asks for it: white
    noise, one scale, L-BFGS for ``steps`` iterations on eq. 7 (eq. 1 at conv4_2 as printed,
    eq. 5 with w_l = 1/5 on conv1_1 ... conv5_1); ``painting`` at the photo's size. Returns
    the image clamped to [0, 1] and the loss of every evaluation."""
    layers = [CONTENT_LAYER, *STYLE_WEIGHTS]
    with torch.no_grad():  # the targets: computed once, constants for the optimiser
        p = model(photo, [CONTENT_LAYER])[CONTENT_LAYER]
        a = {name: gram_matrix(f) for name, f in model(painting, list(STYLE_WEIGHTS)).items()}
    x = torch.rand_like(photo).requires_grad_(True)  # white noise, the only thing optimised
    optimizer = torch.optim.LBFGS([x], max_iter=steps, line_search_fn="strong_wolfe")
    losses: list[float] = []

    def closure():
        optimizer.zero_grad()
        f = model(x, layers)
        loss = total_loss(content_loss(f[CONTENT_LAYER], p), style_loss(f, a, STYLE_WEIGHTS),
                          alpha=alpha, beta=beta)
        loss.backward()
        losses.append(loss.item())
        return loss

    optimizer.step(closure)
    return x.detach().clamp(0, 1), losses


_TRANSFER_STEPS = 10  # L-BFGS iterations the check asks for
_SIDE = 16  # px, the check's images
_TRANSFER_WEIGHTS = {"alpha": 1e5, "beta": 5.0}  # both terms count at the check's start
_TRANSFER_CALL = (f"style_transfer(model, photo, painting, alpha={_TRANSFER_WEIGHTS['alpha']:g}, "
                  f"beta={_TRANSFER_WEIGHTS['beta']:g}, steps={_TRANSFER_STEPS})")

_TRANSFER_MISTAKES = {
    "returns": "Return two things, the image and the list of losses: return "
               "x.detach().clamp(0, 1), losses.",
    "network": "Your loop changed the network's weights: VGG19 stays fixed and only the image "
               "is optimised. Give L-BFGS the image alone: torch.optim.LBFGS([x], ...).",
    "no_grad": "The white noise must require grad, x = torch.rand_like(photo)."
               "requires_grad_(True): it is what L-BFGS changes, and without it no gradient "
               "reaches the image.",
    "detached": "The targets are constants: compute P and A once, before the loop, under "
                "torch.no_grad() (or .detach() them). Otherwise every backward() also runs "
                "back through the network that made them, and the second one fails (the "
                "check's network has a layer whose weights require grad, to show this).",
    "targets_in_loop": "The targets are computed again at every evaluation: P^l and A^l do not "
                       "change, so compute them once, before the loop, and only the image's "
                       "features in the closure.",
    "clamped_in_graph": "The loss is computed from a clamped image (x.clamp(0, 1) in the "
                        "closure): a pixel beyond 0 or 1 gets no gradient there and stays "
                        "stuck. Optimise x as it is and clamp once, at the end: "
                        "x.detach().clamp(0, 1).",
    "start_photo": "The paper starts from white noise, not from the photo (starting from the "
                   "photo is the library's choice, init=\"content\"; Fig. 6 compares the "
                   "starts): x = torch.rand_like(photo).",
    "start_noise": "Start from white noise in [0, 1], the range of an image: "
                   "torch.rand_like(photo) (uniform), not torch.randn (normal, half of it "
                   "negative) or a constant.",
    "record": "Record one loss per evaluation, in order: losses.append(loss.item()) in the "
              "closure, each time it runs.",
    "targets_from_x": "The loss is 0 at the start: the targets were computed from the image "
                      "being optimised. P^l comes from the photo, A^l from the painting.",
    "swapped_images": "The targets come from the wrong images: the content target P^l from "
                      "the photo, the Gram matrices A^l from the painting.",
    "content_from_painting": "The content target comes from the painting: P^l is the photo's "
                             "response at conv4_2.",
    "style_from_photo": "The style targets come from the photo: A^l are the Gram matrices of "
                        "the painting's responses.",
    "weights": "Your style term is 5 times too large: eq. 5 weighs each E_l by w_l = 1/5 "
               "(style_loss(features, grams, weights) with the five weights).",
    "alpha_beta": "alpha weighs the content and beta the style: "
                  "total_loss(content, style, alpha=alpha, beta=beta).",
    "per_position": "Your content term is divided by the number of positions of conv4_2: "
                    "that is the library's unit for alpha/beta (Config.per_position), not "
                    "eq. 1, which is a sum.",
    "unchanged": "The image did not change: give L-BFGS the image x you compute the loss of, "
                 "and return that x.",
    "not_clamped": "Your image leaves [0, 1] (L-BFGS does not keep it there): clamp the "
                   "result once, at the end, return x.detach().clamp(0, 1).",
    "budget": "Your loop ran {evaluations} loss evaluations for steps={steps}: "
              "torch.optim.LBFGS([x], max_iter=steps, line_search_fn=\"strong_wolfe\") and "
              "one optimizer.step(closure).",
    "no_progress": "The loss hardly fell: use L-BFGS with its default lr=1 and "
                   "line_search_fn=\"strong_wolfe\", as in notebook 2.",
    "formula": "At your first image your loss is {got:.6g}; eq. 7 there is {expected:.6g}: "
               "alpha * content_loss(F, P) at conv4_2 + beta * sum_l w_l E_l, w_l = 1/5 on "
               "conv1_1 ... conv5_1 (are your eq. 1, 3, 4 and 7 the ones that passed?).",
}


class _Spy:
    """The network as the check hands it to ``style_transfer``: it computes as the network
    does, and records what each call was given (the photo, the painting, or the image being
    optimised, and whether that came clamped), and each gradient that reaches the image."""

    def __init__(self, model, photo: torch.Tensor, painting: torch.Tensor):
        self.model, self.photo, self.painting = model, photo, painting
        self.calls: list[str] = []  # "photo", "painting", "image" (requires grad) or "other"
        self.first = self.leaf = self.first_value = None  # the first image given, the
        # tensor it came from, and its value then
        self.start = None  # the value of that tensor then
        self.grads: list[torch.Tensor] = []

    def __call__(self, image, layers, **kwargs):
        self.calls.append(self._kind(image))
        if self.calls[-1] == "image" and self.first is None:
            self.first, self.leaf = image, _leaf(image)
            self.first_value, self.start = image.detach().clone(), self.leaf.detach().clone()
            self.leaf.register_hook(self.grads.append)  # append returns None: grad unchanged
        return self.model(image, layers, **kwargs)

    def _kind(self, image) -> str:
        if isinstance(image, torch.Tensor) and image.requires_grad:
            return "image"
        for name, known in (("photo", self.photo), ("painting", self.painting)):
            if isinstance(image, torch.Tensor) and image.shape == known.shape and \
                    torch.equal(image.detach().cpu(), known):
                return name
        return "other"

    def __getattr__(self, name):  # parameters(), features ...: the network's own
        return getattr(self.model, name)


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """The tensor ``backward()`` accumulates into: ``x`` or the leaf it was computed from."""
    todo = [x.grad_fn]
    while todo:
        node = todo.pop()
        if node is None:
            continue
        if hasattr(node, "variable"):
            return node.variable
        todo.extend(parent for parent, _ in node.next_functions)
    return x


def _clamped(x: torch.Tensor) -> bool:
    """True if ``x`` was computed from its leaf through a clamp (or clip)."""
    todo = [x.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or hasattr(node, "variable"):
            continue
        if "Clamp" in type(node).__name__ or "Clip" in type(node).__name__:
            return True
        todo.extend(parent for parent, _ in node.next_functions)
    return False


def _transfer_problem():
    """A 16 x 16 photo (smooth colours) and painting (saturated stripes), an untrained VGG19
    whose first layer's weights require grad (so that targets left attached to the network
    show; one layer is enough, and cheap), and a copy to compare the network with
    afterwards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained weights are fine for a check
        original = vgg19("random", device="cpu")
    model = copy.deepcopy(original)
    model.features[0].requires_grad_(True)  # conv1_1
    ramp = torch.linspace(0, 1, _SIDE)
    photo = torch.stack([ramp.view(1, -1).expand(_SIDE, _SIDE), ramp.view(-1, 1).expand(
        _SIDE, _SIDE), ramp.view(1, -1) * ramp.view(-1, 1)]).unsqueeze(0).contiguous()
    stripes = (torch.arange(_SIDE) // 2 % 2).float()
    painting = torch.stack([stripes.view(1, -1).expand(_SIDE, _SIDE), 1 - stripes.view(-1, 1)
                            .expand(_SIDE, _SIDE), torch.zeros(_SIDE, _SIDE)]).unsqueeze(0)
    painting = painting.contiguous()
    return original, model, photo, painting


def _terms(model, x: torch.Tensor, photo: torch.Tensor, painting: torch.Tensor) -> dict:
    """Eq. 1 and eq. 4 of image ``x`` against each image's targets, by the library."""
    layers = [CONTENT_LAYER, *STYLE_WEIGHTS]
    with torch.no_grad():
        f, fp, fa = (model(im, layers) for im in (x, photo, painting))
        m = f[CONTENT_LAYER].shape[-2] * f[CONTENT_LAYER].shape[-1]
        terms = {"m": m}
        for name, target in (("photo", fp), ("painting", fa)):
            terms[f"content_{name}"] = float(content_loss(f[CONTENT_LAYER], target[CONTENT_LAYER]))
            e = [float(style_layer_loss(f[n], gram_matrix(target[n]))) for n in STYLE_WEIGHTS]
            terms[f"style_{name}"] = sum(w * v for w, v in zip(STYLE_WEIGHTS.values(), e))
            terms[f"style_{name}_unweighted"] = sum(e)
    return terms


def _loss_guesses(t: dict, alpha: float, beta: float) -> dict[str, float]:
    """The loss at the first image for each mistake that changes it (and "ok")."""
    c, s = t["content_photo"], t["style_painting"]
    return {"ok": alpha * c + beta * s,
            "weights": alpha * c + beta * t["style_painting_unweighted"],
            "alpha_beta": beta * c + alpha * s,
            "per_position": alpha * c / t["m"] + beta * s,
            "swapped_images": alpha * t["content_painting"] + beta * t["style_photo"],
            "content_from_painting": alpha * t["content_painting"] + beta * s,
            "style_from_photo": alpha * c + beta * t["style_photo"]}


def _judge_transfer(candidate: Callable) -> tuple[bool, str]:
    original, model, photo, painting = _transfer_problem()
    spy = _Spy(model, photo, painting)
    with torch.random.fork_rng(devices=[]):  # the same white noise at every check
        torch.manual_seed(0)
        got, error = _attempt(_EX_STYLE_TRANSFER, candidate, (spy, photo.clone(),
                              painting.clone()), dict(_TRANSFER_WEIGHTS, steps=_TRANSFER_STEPS),
                              shown=_TRANSFER_CALL)
    if error:
        return False, error
    if _placeholder(got):
        return False, f"{_TRANSFER_CALL} returned {got!r}: replace the placeholder with your code."
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and isinstance(got[0], torch.Tensor)
            and got[0].shape == photo.shape):
        return False, f"{_TRANSFER_CALL} returned a {type(got).__name__}. " \
                      f"{_TRANSFER_MISTAKES['returns']}"
    key, fields = _transfer_mistake(original, model, spy, photo, painting, got[0].detach(), got[1])
    if key:
        hint = _TRANSFER_MISTAKES[key].format(**fields)
        return False, f"{_TRANSFER_CALL}: {hint}"
    return True, (f"from white noise, your method ran {fields['evaluations']} loss evaluations "
                  f"and lowered eq. 7 from {fields['before']:.4g} to {fields['after']:.4g}, with "
                  "the targets computed once and the network left alone.")


def _transfer_mistake(original, model, spy: _Spy, photo, painting, image, losses):
    """The first mistake a run shows (a key of _TRANSFER_MISTAKES, and the fields of its
    hint), or (None, the numbers of a good run)."""
    alpha, beta, steps = _TRANSFER_WEIGHTS["alpha"], _TRANSFER_WEIGHTS["beta"], _TRANSFER_STEPS
    if any(not torch.equal(a, b) for a, b in zip(original.parameters(), model.parameters())):
        return "network", {}
    if "image" not in spy.calls:
        return "no_grad", {}
    first = spy.calls.index("image")
    if {"photo", "painting"} & set(spy.calls[first:]):
        return "targets_in_loop", {}
    if _clamped(spy.first):
        return "clamped_in_graph", {}
    start = spy.start
    if any(start.shape == im.shape and torch.allclose(start, im) for im in (photo, painting)):
        return "start_photo", {}
    if start.min() < 0 or start.max() > 1 or start.std() < 0.2:
        return "start_noise", {}
    n = len(spy.grads)
    try:
        recorded = [float(v) for v in losses]
    except (TypeError, ValueError, RuntimeError):
        return "record", {}
    if not recorded or len(recorded) != n:
        return "record", {}
    guesses = _loss_guesses(_terms(original, spy.first_value, photo, painting), alpha, beta)
    if not math.isclose(recorded[0], guesses["ok"], rel_tol=1e-3):
        if abs(recorded[0]) < 1e-6 * guesses["ok"]:
            return "targets_from_x", {}
        for key, value in guesses.items():
            if key != "ok" and math.isclose(recorded[0], value, rel_tol=1e-3):
                return key, {}
        return "formula", {"got": recorded[0], "expected": guesses["ok"]}
    if not steps / 2 <= n <= 2 * steps:
        return "budget", {"evaluations": n, "steps": steps}
    if torch.equal(image, start):
        return "unchanged", {}
    if image.min() < 0 or image.max() > 1:
        return "not_clamped", {}
    after = _loss_guesses(_terms(original, image, photo, painting), alpha, beta)["ok"]
    if not after < 0.5 * guesses["ok"]:
        return "no_progress", {}
    return None, {"evaluations": n, "before": guesses["ok"], "after": after}


_EX_STYLE_TRANSFER = Exercise(
    "style_transfer", "the paper's method: the targets P^l (the photo at conv4_2) and A^l (the "
    "painting's Gram matrices at conv1_1 ... conv5_1) once, under torch.no_grad(); white "
    "noise x that requires grad; your loop of notebook 2 with eq. 7 (eq. 1 and eq. 5) as its "
    "loss; then x clamped to [0, 1] once, at the end.", _style_transfer, judge=_judge_transfer,
    mistakes=_TRANSFER_MISTAKES,
    errors=(("does not require grad", "no_grad"),
            ("backward through the graph a second time", "detached"),
            ("view size is not compatible", "network")),
    library="paper's method (nst.exercises._style_transfer)")
