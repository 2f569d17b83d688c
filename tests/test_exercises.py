"""nst_lib.exercises: solutions pass, stubs and the usual mistakes get a verdict, never an error."""

import pytest
import torch

import nst_lib as nst
from nst_lib import exercises

LIBRARY = {  # the library functions each check compares with
    "content_loss": nst.content_loss,
    "gram_matrix": nst.gram_matrix,
    "style_layer_loss": nst.style_layer_loss,
    "style_loss": nst.style_loss,
}


def _solution(name):
    namespace = {"nst": nst, "torch": torch}
    exec(exercises.EXERCISES[name].solution, namespace)
    return namespace[name]


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_the_printed_solution_passes(name, capsys):
    verdict = exercises.check(name, _solution(name))
    assert verdict and repr(verdict).startswith("Correct")
    exercises.solution(name)
    assert f"def {name}(" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(LIBRARY))
def test_the_library_passes(name):
    assert exercises.check(name, LIBRARY[name])


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
@pytest.mark.parametrize("stub", [lambda *a, **k: None, lambda *a, **k: NotImplemented])
def test_a_placeholder_is_not_yet_with_a_hint(name, stub):
    verdict = exercises.check(name, stub)
    assert not verdict
    assert verdict.message.startswith("Not yet") and "placeholder" in verdict.message
    assert "Hint:" in verdict.message


def _raises(*args, **kwargs):
    raise NotImplementedError


def test_not_implemented_error_is_a_placeholder_too():
    verdict = exercises.check("gram_matrix", _raises)
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


def _weighted(f, g, w, names=None, weight=None):
    names = w if names is None else names(f, g, w)
    return sum((weight or (lambda n: w[n]))(n) * nst.style_layer_loss(f[n], g[n]) for n in names)


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

    ("style_loss", "one_number",
     lambda f, g, w: torch.stack([w[n] * nst.style_layer_loss(f[n], g[n]) for n in w]), {}),
    ("style_loss", "unweighted", lambda f, g, w: _weighted(f, g, w, weight=lambda n: 1.0), {}),
    ("style_loss", "mean", lambda f, g, w: _weighted(f, g, w, weight=lambda n: 1 / len(w)), {}),
    ("style_loss", "all_layers",
     lambda f, g, w: _weighted(f, g, w, names=lambda f, g, w: g, weight=lambda n: w.get(n, 1.0)),
     {}),
    ("style_loss", "formula", lambda f, g, w: _weighted(f, g, w, weight=lambda n: w[n] ** 2), {}),
]


@pytest.mark.parametrize("name, mistake, wrong, fields", MISTAKES,
                         ids=[f"{row[0]}-{row[1]}" for row in MISTAKES])
def test_each_usual_mistake_gets_its_own_hint(name, mistake, wrong, fields):
    verdict = exercises.check(name, wrong)
    assert not verdict and verdict.message.startswith("Not yet")
    first_line = verdict.message.splitlines()[0]  # "<call> = <value> ... <hint>"
    expected = exercises.EXERCISES[name].mistakes[mistake].format(**fields)
    assert first_line.endswith(" " + expected), first_line


def test_every_listed_mistake_has_a_wrong_implementation_above():
    listed = {(name, key) for name, ex in exercises.EXERCISES.items() for key in ex.mistakes}
    assert listed == {(name, key) for name, key, _, _ in MISTAKES}


@pytest.mark.parametrize("case", range(2))
def test_no_two_style_mistakes_give_the_same_factor(case):
    """Otherwise the first one listed would hide the other (N = 4 looks like a missing 4)."""
    (f, _), _ = exercises.EXERCISES["style_layer_loss"].cases()[case]
    table = exercises._style_factors(*_nm(f))
    by_value = set(exercises.EXERCISES["style_layer_loss"].mistakes) - {"one_number", "formula"}
    assert {key for _, key in table} == by_value  # every mistake told by its factor is listed
    factors = [factor for factor, _ in table]
    for i, a in enumerate(factors):
        assert not any(exercises._near(a, b) for b in factors[i + 1:] + [1.0]), a


CORRECT = {  # written differently from the library, each passes
    "layer_shape": _shape,
    "content_loss": lambda f, p: ((f - p) ** 2).sum() / 2,
    "gram_matrix": lambda f: torch.einsum("nk,mk->nm", f[0].flatten(1), f[0].flatten(1)),
    "style_layer_loss":
        lambda f, a: ((nst.gram_matrix(f) - a) ** 2).sum() / 4 / _nm(f)[0] ** 2 / _nm(f)[1] ** 2,
    "style_loss": lambda f, g, w: _weighted(f, g, w),
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_a_correct_hand_written_answer_passes(name):
    assert set(CORRECT) == set(exercises.EXERCISES)
    verdict = exercises.check(name, CORRECT[name])
    assert verdict and verdict.message.startswith("Correct")


def test_a_key_error_in_eq5_is_reported():
    wrong = lambda f, g, w: sum(nst.style_layer_loss(f[n], g[n]) for n in f)  # noqa: E731
    verdict = exercises.check("style_loss", wrong)
    assert not verdict and "KeyError" in str(verdict)


def test_a_check_does_not_let_the_student_change_the_reference_inputs():
    def in_place(f, p):
        f.zero_()
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
