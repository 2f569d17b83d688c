"""nst_lib.exercises: the solutions pass, placeholders and each usual mistake get their own
verdict (never an error), and what stands in for an unfinished exercise says so.

The solutions are read from notebooks/solutions/solutions.ipynb, their only copy: what an
instructor reads there is what is tested here, and nothing in the package prints them.
"""

import ast
import json
import re
import string
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import nst_lib as nst
from nst_lib import exercises

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions" / "solutions.ipynb"
STUDENT_NOTEBOOKS = sorted(NOTEBOOKS.glob("0[1-4]_*.ipynb"))


def _code(path: Path) -> list[ast.Module]:
    """The code cells of a notebook, parsed (IPython's % and ! lines left out)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return [ast.parse("\n".join(line for line in text.splitlines()
                                if not line.startswith(("%", "!")))) for text in sources]


def _exercise_defs(path: Path) -> dict[str, ast.FunctionDef]:
    return {node.name: node for tree in _code(path) for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name in exercises.EXERCISES}


def _defined_in(path: Path, solved: bool = False) -> dict:
    """The exercises' functions as a notebook defines them, run with the notebook's imports
    only; with ``solved``, each replaced by the solutions notebook's, in the student's
    notebook (so a solution that needs something its notebook lacks fails here)."""
    solutions = _exercise_defs(SOLUTIONS)
    namespace, defined = {}, set()
    for tree in _code(path):
        for node in tree.body:
            if solved and isinstance(node, ast.FunctionDef) and node.name in solutions:
                node = solutions[node.name]
            exercise = isinstance(node, ast.FunctionDef) and node.name in exercises.EXERCISES
            if isinstance(node, (ast.Import, ast.ImportFrom)) or exercise:
                exec(compile(ast.Module([node], type_ignores=[]), str(path), "exec"), namespace)
                defined |= {node.name} if exercise else set()
    # an exercise's name imported from the library (notebook 4's stand-ins for eq. 1, 3, 4)
    # is no exercise of that notebook
    return {name: namespace[name] for name in exercises.EXERCISES if name in defined}


SOLVED = _defined_in(SOLUTIONS)


def test_the_solutions_notebook_solves_every_exercise():
    assert set(SOLVED) == set(exercises.EXERCISES)


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_each_solution_passes_its_check(name):
    verdict = exercises.check(name, SOLVED[name])
    assert verdict and verdict.message.startswith("Correct"), verdict


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=lambda p: p.name)
def test_each_solution_passes_in_its_own_notebook(path):
    for name, solution in _defined_in(path, solved=True).items():
        verdict = exercises.check(name, solution)
        assert verdict, (name, verdict)


def test_no_solution_is_printed_by_the_package():
    assert not hasattr(exercises, "solution")
    assert all(not hasattr(ex, "solution") for ex in exercises.EXERCISES.values())


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=lambda p: p.name)
def test_the_student_notebooks_hold_placeholders_only(path):
    defined = _defined_in(path)
    assert defined, f"{path.name} has no exercise"
    for name, placeholder in defined.items():
        verdict = exercises.check(name, placeholder)
        assert not verdict and "placeholder" in verdict.message, (name, verdict)


def test_each_exercise_is_in_one_student_notebook():
    where = [name for path in STUDENT_NOTEBOOKS for name in _defined_in(path)]
    assert sorted(where) == sorted(exercises.EXERCISES)


LIBRARY = [  # what stands in for each exercise, and the library's other versions
    ("layer_shape", exercises._layer_shape_reference),
    ("content_loss", nst.content_loss),
    ("optimise", exercises._optimise),
    ("gram_matrix", nst.gram_matrix),
    ("style_layer_loss", nst.style_layer_loss),
    ("style_layer_loss", nst.fast_style_layer_loss),
    ("total_loss", nst.total_loss),
    ("style_loss", nst.style_loss),
    ("style_transfer", exercises._style_transfer),
    ("luminance", nst.color.luminance),
    ("combine_luminance", nst.color.combine_luminance),
    ("masked_gram", exercises._masked_gram),
]


@pytest.mark.parametrize("name, function", LIBRARY, ids=[f"{n}-{f.__name__}" for n, f in LIBRARY])
def test_the_library_passes(name, function):
    assert exercises.check(name, function)


# ------------------------------------------------------ yours, or the library's, said aloud

@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_a_function_that_passes_is_used_and_said_to_be(name, capsys):
    assert exercises.mine_or_library(name, SOLVED[name]) is SOLVED[name]
    assert capsys.readouterr().out == f"{name}: yours (it passes its check).\n"


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_a_placeholder_is_replaced_by_the_library_and_said_to_be(name, capsys):
    ex = exercises.EXERCISES[name]
    stand_in = exercises.mine_or_library(name, lambda *a, **k: None)
    assert stand_in is (ex.fallback or ex.reference)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: yours does not pass its check yet") and ex.library in out


def test_the_fast_path_stands_in_for_eq4():
    assert exercises.mine_or_library("style_layer_loss", None) is nst.fast_style_layer_loss


def test_loss_functions_mixes_yours_and_the_librarys(capsys):
    mine = exercises.loss_functions(content_loss=SOLVED["content_loss"],
                                    total_loss=lambda *a, **k: None)
    assert mine == nst.LossFunctions(content_loss=SOLVED["content_loss"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("content_loss: yours ") and "nst.total_loss" in out[1]


def test_loss_functions_refuses_a_name_it_does_not_have():
    with pytest.raises(TypeError, match="no layer_shape; its fields are content_loss"):
        exercises.loss_functions(layer_shape=SOLVED["layer_shape"])


# ------------------------------------------------------------------ placeholders, errors

@pytest.mark.parametrize("name", list(exercises.EXERCISES))
@pytest.mark.parametrize("stub", [lambda *a, **k: None, lambda *a, **k: NotImplemented])
def test_a_placeholder_is_not_yet_with_a_hint(name, stub):
    verdict = exercises.check(name, stub)
    assert not verdict
    assert verdict.message.startswith("Not yet") and "placeholder" in verdict.message
    assert "Hint:" in verdict.message


def _raises(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("name", ["gram_matrix", "optimise"])
def test_not_implemented_error_is_a_placeholder_too(name):
    verdict = exercises.check(name, _raises)
    assert not verdict and "placeholder" in str(verdict)


def test_an_error_in_the_students_code_is_reported_not_raised():
    verdict = exercises.check("gram_matrix", lambda f: f.no_such_method())
    assert not verdict and "AttributeError" in str(verdict)


@pytest.mark.filterwarnings("ignore:weights='random'")
def test_the_layer_shape_is_measured_on_the_network():
    measured = lambda name, h, w: tuple(  # noqa: E731
        nst.vgg19("random", device="cpu")(torch.zeros(1, 3, h, w), [name])[name].shape[1:])
    assert exercises.check("layer_shape", measured)
    half_up = lambda name, h, w: (64 * 2 ** (int(name[4]) - 1) if int(name[4]) < 5 else 512,  # noqa: E731
                                  -(-h // 2 ** (int(name[4]) - (name[0] == "c"))),
                                  -(-w // 2 ** (int(name[4]) - (name[0] == "c"))))
    verdict = exercises.check("layer_shape", half_up)
    assert not verdict and "rounds down" in str(verdict)


# ----------------------------------------------------- the check's inputs, computed by hand

def test_content_loss_by_hand():
    f, p = torch.full((1, 1, 2, 2), 3.0), torch.ones(1, 1, 2, 2)
    assert exercises.EXERCISES["content_loss"].reference(f, p).item() == 8.0  # 1/2 * 4 * 2^2


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2], [3, 4]]).reshape(1, 2, 2, 1)  # filters (1, 2) and (3, 4)
    torch.testing.assert_close(exercises.EXERCISES["gram_matrix"].reference(f),
                               torch.tensor([[5.0, 11], [11, 25]]))


def test_total_loss_cases_by_hand():
    (args, kwargs), _ = exercises._total_cases()
    assert exercises.EXERCISES["total_loss"].reference(*args, **kwargs).item() == 31.0  # 5*2 + 7*3
    assert SOLVED["total_loss"](*args, **kwargs).item() == 31.0


def test_luminance_of_pure_colours_by_hand():
    (pure,), _ = exercises._luminance_cases()[0]  # red, green / blue, white
    y = torch.tensor([[0.299, 0.587], [0.114, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(nst.color.luminance(pure), y.expand(1, 3, 2, 2))
    torch.testing.assert_close(SOLVED["luminance"](pure), y.expand(1, 3, 2, 2))


@pytest.mark.parametrize("combine", [nst.color.combine_luminance, SOLVED["combine_luminance"]])
def test_combine_luminance_by_hand(combine):
    grey = lambda v: torch.full((1, 3, 1, 1), v)  # noqa: E731
    red = torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)  # Y = 0.299
    torch.testing.assert_close(combine(grey(0.299), red), red)  # its own Y: red again
    torch.testing.assert_close(combine(grey(0.5), grey(0.2)), grey(0.5))  # no colour to keep
    # R, G, B = Y + (terms in I and Q): 0.201 more Y adds 0.201 to each channel, R is clamped
    torch.testing.assert_close(combine(grey(0.5), red), torch.tensor([1.0, 0.201, 0.201])
                               .view(1, 3, 1, 1), atol=1e-4, rtol=0)


def test_the_combine_cases_need_clamping():
    """Otherwise a missing clamp would go unnoticed."""
    for (grey, photo), _ in exercises._combine_cases():
        rgb = _unclamped(grey, photo)
        assert ((rgb < 0) | (rgb > 1)).any()


@pytest.mark.parametrize("masked_gram", [exercises._masked_gram, SOLVED["masked_gram"]])
def test_masked_gram_by_hand(masked_gram):
    f = torch.tensor([[[1.0, 2], [3, 4]], [[0, 1], [1, 0]]]).unsqueeze(0)  # (1, 2, 2, 2)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1  # the left half: on the 2 x 2 maps, the left column
    # masked: filter 0 -> (1, 0, 3, 0), filter 1 -> (0, 0, 1, 0)
    torch.testing.assert_close(masked_gram(f, mask), torch.tensor([[10.0, 3], [3, 1]]))


# ------------------------------------------------------------ the hint table, case by case

def _nm(f):
    return f.shape[1], f.shape[2] * f.shape[3]


def _sq(f, a):
    return ((nst.gram_matrix(f) - a) ** 2).sum()


def _shape(name, h, w, channels=None, pools=None, halve=lambda x, p: x // 2**p):
    """A hand-written layer_shape with one part replaceable, to make one mistake at a time."""
    block = int(name[4])
    pools = pools(name) if pools else block - (not name.startswith("pool"))
    channels = channels(block) if channels else min(64 * 2 ** (block - 1), 512)
    return channels, halve(h, pools), halve(w, pools)


def _y(image, weights=(0.299, 0.587, 0.114)):
    """Y of each pixel, (1, 1, H, W), with the given weights of R, G and B."""
    return sum(w * image[:, i:i + 1] for i, w in enumerate(weights))


def _shrunk(f, mask):
    return F.adaptive_avg_pool2d(mask, f.shape[-2:])


def _masked(f, mask):
    return f * _shrunk(f, mask)


def _loss_of(targets, model, x):
    return targets.losses(model, x, 1.0, 1.0).total


def _loop(*, copy=True, requires_grad=True, optimised="image", zero="first", loss_of=_loss_of,
          through=lambda x: x, record=True, give_back=True, max_iter=lambda steps: steps,
          lr=1.0, returns=lambda x, losses: (x.detach(), losses)):
    """A hand-written loop with one part replaceable, to make one mistake at a time."""
    def optimise(model, targets, start, steps):
        x = start.clone() if copy else start
        x.requires_grad_(requires_grad)
        first = list(model.features[:3].parameters())  # conv1_1, conv1_2: the ones in use
        for p in first if optimised.endswith("network") else []:
            p.requires_grad_(True)
            if optimised == "contiguous network":
                p.data = p.data.contiguous()
        params = {"image": [x], "frozen": list(model.parameters())}.get(optimised, first)
        opt = torch.optim.LBFGS(params, lr=lr, max_iter=max_iter(steps),
                                line_search_fn="strong_wolfe" if lr == 1.0 else None)
        losses = []

        def closure():
            if zero == "first":
                opt.zero_grad()
            loss = loss_of(targets, model, through(x))
            loss.backward()
            if zero == "last":
                opt.zero_grad()
            if record:
                losses.append(loss.item())
            return loss if give_back else None

        opt.step(closure)
        return returns(x, losses)
    return optimise


STYLE = {name: 1 / 5 for name in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")}


def _transfer(*, content_from="photo", style_from="painting", attached=False, in_loop=False,
              start="noise", requires_grad=True, optimised="image", through=lambda x: x,
              weight=None, swap=False, per_position=False, content_layer="conv4_2",
              record=True, max_iter=lambda steps: steps, lr=1.0, clamp=True,
              returns=lambda x, x0, losses: (x, losses)):
    """A hand-written style_transfer with one part replaceable, to make one mistake at a time.
    Written apart from the library's and the solutions' (the targets with .detach(), the
    noise from torch.rand, eq. 5 and 7 inline)."""
    def style_transfer(model, photo, painting, alpha, beta, steps):
        images = {"photo": photo, "painting": painting}

        def targets(x):
            with torch.set_grad_enabled(attached):
                p = model(images.get(content_from, x), [content_layer])[content_layer]
                a = {n: nst.gram_matrix(f) for n, f in model(images.get(style_from, x),
                                                              list(STYLE)).items()}
            return p, a

        x0 = {"noise": lambda: torch.rand(photo.shape), "photo": photo.clone,
              "randn": lambda: torch.randn(photo.shape)}[start]()
        x = x0.clone().requires_grad_(requires_grad)
        first = list(model.features[:1].parameters())
        if optimised == "contiguous network":
            for p in first:
                p.data = p.data.contiguous()
        params = {"image": [x], "network": list(model.parameters())}.get(optimised, first)
        opt = torch.optim.LBFGS(params, lr=lr, max_iter=max_iter(steps),
                                line_search_fn="strong_wolfe" if lr == 1.0 else None)
        fixed = None if in_loop else targets(x)
        losses = []

        def closure():
            opt.zero_grad()
            p, a = targets(x) if in_loop else fixed
            f = model(through(x), [content_layer, *STYLE])
            m = p.shape[-2] * p.shape[-1] if per_position else 1
            content = nst.content_loss(f[content_layer], p) / m
            style = sum((weight or w) * nst.style_layer_loss(f[n], a[n]) for n, w in STYLE.items())
            loss = (beta * content + alpha * style) if swap else (alpha * content + beta * style)
            loss.backward()
            if record:
                losses.append(loss.item())
            return loss

        opt.step(closure)
        image = x.detach().clamp(0, 1) if clamp else x.detach()
        return returns(image, x0, losses)
    return style_transfer


def _luma(weights):
    return lambda im: _y(im, weights).expand(-1, 3, -1, -1)


def _unclamped(grey, photo):
    yiq = nst.color.rgb_to_yiq(photo)
    return nst.color.yiq_to_rgb(torch.cat([grey.mean(1, keepdim=True), yiq[:, 1:]], dim=1))


# (exercise, mistake, a wrong implementation that makes it, fields of the hint's template)
MISTAKES = [
    ("layer_shape", "channels", lambda n, h, w: _shape(n, h, w, channels=lambda b: 64 * b), {}),
    ("layer_shape", "rounding",
     lambda n, h, w: _shape(n, h, w, halve=lambda x, p: -(-x // 2**p)), {}),
    ("layer_shape", "pools",
     lambda n, h, w: _shape(n, h, w, pools=lambda name: int(name[4])),
     {"name": "conv1_1", "pools": 0, "s": "s"}),

    ("content_loss", "one_number", lambda f, p: 0.5 * (f - p) ** 2, {}),
    ("content_loss", "half", lambda f, p: ((f - p) ** 2).sum(), {}),
    ("content_loss", "mean", lambda f, p: 0.5 * ((f - p) ** 2).mean(), {}),
    ("content_loss", "mean", lambda f, p: ((f - p) ** 2).mean(), {}),
    ("content_loss", "norm", lambda f, p: (f - p).norm(), {}),
    ("content_loss", "detached", lambda f, p: (0.5 * ((f - p) ** 2).sum()).item(), {}),

    ("optimise", "returns", _loop(returns=lambda x, losses: x.detach()), {}),
    ("optimise", "no_grad", _loop(requires_grad=False), {}),
    ("optimise", "no_return", _loop(give_back=False), {}),
    ("optimise", "losses_tuple", _loop(loss_of=lambda t, m, x: t.losses(m, x, 1.0, 1.0)), {}),
    ("optimise", "copy", _loop(copy=False), {}),
    ("optimise", "network", _loop(optimised="network"), {}),  # L-BFGS refuses channels-last
    ("optimise", "network", _loop(optimised="network", requires_grad=False), {}),
    ("optimise", "network", _loop(optimised="contiguous network"), {}),  # and changes it
    ("optimise", "targets", _loop(loss_of=lambda t, m, x: ((x - 0.5) ** 2).sum()), {}),
    ("optimise", "zero_grad_late", _loop(zero="last"), {}),
    ("optimise", "zero_grad", _loop(zero=None), {}),
    ("optimise", "zero_grad", _loop(zero=None, through=lambda x: x.clamp(0, 1)), {}),
    ("optimise", "parameters", _loop(optimised="frozen"), {}),
    ("optimise", "parameters", _loop(returns=lambda x, losses: (_START.clone(), losses)), {}),
    ("optimise", "record", _loop(record=False), {}),
    ("optimise", "record", _loop(returns=lambda x, losses: (x.detach(), losses[-1:])), {}),
    ("optimise", "budget", _loop(max_iter=lambda steps: 20), {"evaluations": 24, "steps": 8}),
    ("optimise", "budget", _loop(max_iter=lambda steps: 1), {"evaluations": 2, "steps": 8}),
    ("optimise", "no_progress", _loop(lr=1e-3), {}),

    ("gram_matrix", "positions",
     lambda f: f.reshape(f.shape[1], -1).T @ f.reshape(f.shape[1], -1), {}),
    ("gram_matrix", "batch", lambda f: f.flatten(2) @ f.flatten(2).transpose(1, 2), {}),
    ("gram_matrix", "shape", lambda f: f @ f.transpose(2, 3), {}),
    ("gram_matrix", "divided_by_M", lambda f: nst.gram_matrix(f) / _nm(f)[1], {}),
    ("gram_matrix", "divided_by_NM", lambda f: nst.gram_matrix(f) / (_nm(f)[0] * _nm(f)[1]), {}),
    ("gram_matrix", "divided_by_N", lambda f: nst.gram_matrix(f) / _nm(f)[0], {}),
    ("gram_matrix", "not_symmetric",
     lambda f: f.reshape(f.shape[1], -1) @ f.reshape(-1, f.shape[1]), {}),
    ("gram_matrix", "mixed", lambda f: nst.gram_matrix(f.permute(0, 2, 3, 1).reshape(f.shape)), {}),
    ("gram_matrix", "detached", lambda f: nst.gram_matrix(f).detach(), {}),

    ("style_layer_loss", "one_number",
     lambda f, a: (nst.gram_matrix(f) - a) ** 2 / (4 * _nm(f)[0] ** 2 * _nm(f)[1] ** 2), {}),
    ("style_layer_loss", "no_4", lambda f, a: _sq(f, a) / (_nm(f)[0] ** 2 * _nm(f)[1] ** 2), {}),
    ("style_layer_loss", "NM", lambda f, a: _sq(f, a) / (_nm(f)[0] * _nm(f)[1]), {}),
    ("style_layer_loss", "4NM", lambda f, a: _sq(f, a) / (4 * _nm(f)[0] * _nm(f)[1]), {}),
    ("style_layer_loss", "no_division", lambda f, a: _sq(f, a), {}),
    ("style_layer_loss", "M_not_squared",
     lambda f, a: _sq(f, a) / (4 * _nm(f)[0] ** 2 * _nm(f)[1]), {}),
    ("style_layer_loss", "N_not_squared",
     lambda f, a: _sq(f, a) / (4 * _nm(f)[0] * _nm(f)[1] ** 2), {}),
    ("style_layer_loss", "4_squared",
     lambda f, a: _sq(f, a) / (4 * _nm(f)[0] * _nm(f)[1]) ** 2, {}),
    ("style_layer_loss", "precedence",
     lambda f, a: _sq(f, a) / 4 * _nm(f)[0] ** 2 * _nm(f)[1] ** 2, {}),
    ("style_layer_loss", "N_squared_twice",  # a mean over the entries on top of eq. 4
     lambda f, a: ((nst.gram_matrix(f) - a) ** 2).mean() / (4 * _nm(f)[0] ** 2 * _nm(f)[1] ** 2),
     {}),
    ("style_layer_loss", "N_squared_twice",  # M taken as features.numel()
     lambda f, a: _sq(f, a) / (4 * _nm(f)[0] ** 2 * f.numel() ** 2), {}),
    ("style_layer_loss", "formula",
     lambda f, a: (nst.gram_matrix(f) - a).abs().sum() / (4 * _nm(f)[0] ** 2 * _nm(f)[1] ** 2),
     {}),
    ("style_layer_loss", "detached",
     lambda f, a: (_sq(f, a) / (4 * _nm(f)[0] ** 2 * _nm(f)[1] ** 2)).item(), {}),

    ("total_loss", "swapped", lambda c, s, *, alpha, beta: alpha * s + beta * c, {}),
    ("total_loss", "beta_missing", lambda c, s, *, alpha, beta: alpha * c + s, {}),
    ("total_loss", "alpha_missing", lambda c, s, *, alpha, beta: c + beta * s, {}),
    ("total_loss", "ratio", lambda c, s, *, alpha, beta: alpha / beta * c + s, {}),
    ("total_loss", "mean", lambda c, s, *, alpha, beta: (alpha * c + beta * s) / 2, {}),
    ("total_loss", "normalised",
     lambda c, s, *, alpha, beta: (alpha * c + beta * s) / (alpha + beta), {}),
    ("total_loss", "keywords", lambda c, s, a, b: a * c + b * s, {}),
    ("total_loss", "detached", lambda c, s, *, alpha, beta: (alpha * c + beta * s).item(), {}),

    ("style_loss", "no_weights",
     lambda f, a, w: sum(nst.style_layer_loss(f[n], a[n]) for n in w), {}),
    ("style_loss", "mean",
     lambda f, a, w: sum(nst.style_layer_loss(f[n], a[n]) for n in w) / len(w), {}),
    ("style_loss", "all_layers",
     lambda f, a, w: sum(w.get(n, 0) * nst.style_layer_loss(f[n], a[n]) for n in f), {}),
    ("style_loss", "one_number",
     lambda f, a, w: torch.stack([w[n] * nst.style_layer_loss(f[n], a[n]) for n in w]), {}),
    ("style_loss", "detached",
     lambda f, a, w: sum(w[n] * nst.style_layer_loss(f[n], a[n]) for n in w).detach(), {}),

    ("style_transfer", "returns", _transfer(returns=lambda x, x0, losses: x), {}),
    ("style_transfer", "network", _transfer(optimised="network"), {}),  # L-BFGS refuses it
    ("style_transfer", "network", _transfer(optimised="contiguous network"), {}),  # changes it
    ("style_transfer", "no_grad", _transfer(requires_grad=False), {}),
    ("style_transfer", "detached", _transfer(attached=True), {}),
    ("style_transfer", "targets_in_loop", _transfer(in_loop=True), {}),
    ("style_transfer", "clamped_in_graph", _transfer(through=lambda x: x.clamp(0, 1)), {}),
    ("style_transfer", "start_photo", _transfer(start="photo"), {}),
    ("style_transfer", "start_noise", _transfer(start="randn"), {}),
    ("style_transfer", "record", _transfer(record=False), {}),
    ("style_transfer", "record", _transfer(returns=lambda x, x0, losses: (x, losses[-1:])), {}),
    ("style_transfer", "targets_from_x", _transfer(content_from="x", style_from="x"), {}),
    ("style_transfer", "swapped_images",
     _transfer(content_from="painting", style_from="photo"), {}),
    ("style_transfer", "content_from_painting", _transfer(content_from="painting"), {}),
    ("style_transfer", "style_from_photo", _transfer(style_from="photo"), {}),
    ("style_transfer", "weights", _transfer(weight=1.0), {}),
    ("style_transfer", "alpha_beta", _transfer(swap=True), {}),
    ("style_transfer", "per_position", _transfer(per_position=True), {}),
    ("style_transfer", "formula", _transfer(content_layer="conv5_2"), None),  # quotes its numbers
    ("style_transfer", "budget", _transfer(max_iter=lambda steps: 1), None),
    ("style_transfer", "unchanged", _transfer(returns=lambda x, x0, losses: (x0, losses)), {}),
    ("style_transfer", "not_clamped", _transfer(clamp=False), {}),
    ("style_transfer", "no_progress", _transfer(lr=1e-4), {}),

    ("luminance", "one_channel", lambda im: _y(im), {}),
    ("luminance", "mean", lambda im: im.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1), {}),
    ("luminance", "bgr", _luma((0.114, 0.587, 0.299)), {}),
    ("luminance", "rec709", _luma((0.2126, 0.7152, 0.0722)), {}),

    ("combine_luminance", "photo_luminance", lambda grey, photo: photo.clamp(0, 1), {}),
    ("combine_luminance", "swapped", lambda grey, photo: _luma((0.299, 0.587, 0.114))(photo), {}),
    ("combine_luminance", "grey_only", lambda grey, photo: grey, {}),
    ("combine_luminance", "not_clamped", _unclamped, {}),

    ("masked_gram", "not_resized", lambda f, mask: nst.gram_matrix(f * mask), {}),
    ("masked_gram", "no_mask", lambda f, mask: nst.gram_matrix(f), {}),
    ("masked_gram", "inverted", lambda f, mask: nst.gram_matrix(f * (1 - _shrunk(f, mask))), {}),
    ("masked_gram", "normalised",
     lambda f, mask: nst.gram_matrix(_masked(f, mask)) / _shrunk(f, mask).sum(), {}),
    ("masked_gram", "normalised",
     lambda f, mask: nst.gram_matrix(_masked(f, mask)) / _nm(f)[1], {}),
    ("masked_gram", "positions",
     lambda f, mask: _masked(f, mask).reshape(f.shape[1], -1).T
     @ _masked(f, mask).reshape(f.shape[1], -1), {}),
    ("masked_gram", "detached", lambda f, mask: nst.gram_matrix(_masked(f, mask)).detach(), {}),
]
_START = exercises._loop_problem()[3]  # the image the loop check starts from


@pytest.mark.parametrize("name, mistake, wrong, fields", MISTAKES,
                         ids=[f"{row[0]}-{row[1]}" for row in MISTAKES])
def test_each_usual_mistake_gets_its_own_hint(name, mistake, wrong, fields):
    verdict = exercises.check(name, wrong)
    assert not verdict and verdict.message.startswith("Not yet")
    first_line = verdict.message.splitlines()[0]  # "<call> = <value> ... <hint>"
    template = exercises.EXERCISES[name].mistakes[mistake]
    if fields is None:  # a hint that quotes the run's own numbers: any numbers
        pattern = "".join(re.escape(text) + ("\\S+" if field is not None else "")
                          for text, field, _, _ in string.Formatter().parse(template))
        assert re.search(" " + pattern + "$", first_line), first_line
        return
    assert first_line.endswith(" " + template.format(**fields)), first_line


def test_every_listed_mistake_has_a_wrong_implementation_above():
    listed = {(name, key) for name, ex in exercises.EXERCISES.items() for key in ex.mistakes}
    assert listed == {(name, key) for name, key, _, _ in MISTAKES}


@pytest.mark.parametrize("case", range(2))
def test_no_two_style_mistakes_give_the_same_factor(case):
    """Otherwise the first one listed would hide the other (N = 4 looks like a missing 4)."""
    (f, _), _ = exercises.EXERCISES["style_layer_loss"].cases()[case]
    table = exercises._style_factors(*_nm(f))
    by_value = set(exercises.EXERCISES["style_layer_loss"].mistakes) - {
        "one_number", "formula", "detached"}
    assert {key for _, key in table} == by_value  # every mistake told by its factor is listed
    factors = [factor for factor, _ in table]
    for i, a in enumerate(factors):
        assert not any(exercises._near(a, b) for b in factors[i + 1:] + [1.0]), a


def test_the_transfer_checks_mistakes_each_give_their_own_loss():
    """At the check's white noise, each mistake that changes the first loss changes it by
    more than the check's tolerance, and not to another mistake's value."""
    original, _, photo, painting = exercises._transfer_problem()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        start = torch.rand(photo.shape)
    guesses = exercises._loss_guesses(exercises._terms(original, start, photo, painting),
                                      **exercises._TRANSFER_WEIGHTS)
    values = list(guesses.values())
    for i, a in enumerate(values):
        assert all(abs(a - b) > 1e-2 * abs(a) for b in values[i + 1:]), guesses


def test_the_transfer_check_leaves_the_callers_random_numbers_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert exercises.check("style_transfer", SOLVED["style_transfer"])
    torch.testing.assert_close(torch.rand(3), expected)


def test_the_loop_check_leaves_the_shared_network_alone():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shared = nst.vgg19("random", device="cpu")
    before = [p.clone() for p in shared.features[:3].parameters()]
    assert not exercises.check("optimise", _loop(optimised="network"))
    assert all(torch.equal(a, b) for a, b in zip(before, shared.features[:3].parameters()))


CORRECT = {  # written differently from the library, each passes
    "layer_shape": _shape,
    "content_loss": lambda f, p: ((f - p) ** 2).sum() / 2,
    "optimise": _loop(lr=1.0, through=lambda x: x.clamp(0, 1)),
    "gram_matrix": lambda f: torch.einsum("nk,mk->nm", f[0].flatten(1), f[0].flatten(1)),
    "style_layer_loss":
        lambda f, a: ((nst.gram_matrix(f) - a) ** 2).sum() / 4 / _nm(f)[0] ** 2 / _nm(f)[1] ** 2,
    "total_loss": lambda content, style, **w: w["beta"] * style + w["alpha"] * content,
    "style_loss": lambda f, a, w: torch.stack([w[n] * nst.style_layer_loss(f[n], a[n])
                                               for n in sorted(w)]).sum(),
    "style_transfer": _transfer(),
    "luminance": lambda im: torch.einsum("c,bchw->bhw", im.new_tensor([0.299, 0.587, 0.114]),
                                         im).unsqueeze(1).repeat(1, 3, 1, 1),
    "combine_luminance": lambda grey, photo: nst.color.yiq_to_rgb(torch.cat(
        [grey[:, :1], nst.color.rgb_to_yiq(photo)[:, 1:]], dim=1)).clamp(0, 1),
    "masked_gram": lambda f, mask: torch.einsum(
        "nk,mk->nm", *(2 * [(f * F.interpolate(mask, size=f.shape[-2:], mode="nearest"))[0]
                            .flatten(1)])),
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_a_correct_hand_written_answer_passes(name):
    assert set(CORRECT) == set(exercises.EXERCISES)
    verdict = exercises.check(name, CORRECT[name])
    assert verdict and verdict.message.startswith("Correct"), verdict


def test_a_check_does_not_let_the_student_change_the_reference_inputs():
    def in_place(f, p):
        f.data.zero_()
        return nst.content_loss(f, p)

    assert not exercises.check("content_loss", in_place)
    assert exercises.check("content_loss", nst.content_loss)


def test_an_unknown_exercise_names_the_known_ones():
    with pytest.raises(KeyError, match="gram_matrix"):
        exercises.check("gram", nst.gram_matrix)


@pytest.mark.parametrize("odd", [lambda *a: "text", lambda *a: [1, 2], lambda *a: float("nan"),
                                 lambda *a: {"a": 1}, lambda *a: (1,)])
def test_odd_answers_get_a_verdict(odd):
    for name in exercises.EXERCISES:
        verdict = exercises.check(name, odd)
        assert not verdict and verdict.message.startswith("Not yet")


# ----------------------------------------------------------- two styles in two regions

@pytest.mark.filterwarnings("ignore:weights='random'")
def test_two_styles_paints_each_region_with_its_style():
    """Red where the mask is 1, blue where it is 0, on a grey photo (an untrained network
    still sees colours: its first layer mixes them linearly)."""
    model = nst.vgg19("random", device="cpu")
    grey, red, blue = (torch.tensor(c).view(1, 3, 1, 1).expand(1, 3, 32, 32)
                       for c in ([0.5, 0.5, 0.5], [0.9, 0.1, 0.1], [0.1, 0.1, 0.9]))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1
    config = nst.Config(style_layers=("conv1_1",), alpha=1.0, beta=1e4)
    image, losses = exercises.two_styles(grey, (red, blue), mask, SOLVED["masked_gram"],
                                         model=model, steps=30, config=config)
    assert image.shape == (1, 3, 32, 32) and losses[-1] < 0.1 * losses[0]
    left, right = image[..., :16].mean(dim=(0, 2, 3)), image[..., 16:].mean(dim=(0, 2, 3))
    assert left[0] > left[2] + 0.1 and right[2] > right[0] + 0.1, (left, right)


def test_two_styles_needs_two_regions():
    with pytest.raises(ValueError, match="two regions"):
        exercises.two_styles(torch.rand(1, 3, 16, 16), (None, None), torch.ones(1, 1, 16, 16),
                             SOLVED["masked_gram"], model=None, steps=1)
