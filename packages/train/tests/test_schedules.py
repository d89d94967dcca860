import math

import pytest

from lungtk.train.schedules import Schedule


def test_warmup_then_poly():
    s = Schedule("poly", total=110, warmup_steps=10, warmup_factor=0.1, poly_exponent=0.9)
    assert s.factor(0) == pytest.approx(0.1)
    assert s.factor(5) == pytest.approx(0.55)
    assert s.factor(10) == pytest.approx(1.0)
    assert s.factor(60) == pytest.approx(0.5**0.9)
    assert s.factor(110) == pytest.approx(0.0)


def test_cosine_step_constant():
    assert Schedule("cosine", total=100).factor(50) == pytest.approx(0.5)
    assert Schedule("cosine", total=100).factor(100) == pytest.approx(0.0, abs=1e-12)
    step = Schedule("step", total=100, step_size=30, gamma=0.1)
    assert [step.factor(t) for t in (0, 29, 30, 61)] == pytest.approx([1, 1, 0.1, 0.01])
    assert Schedule("constant", total=10).factor(9) == 1.0


def test_plateau_lowers_the_lr_and_its_state_round_trips():
    s = Schedule("plateau", total=100, gamma=0.5, plateau_patience=2)
    for value in (0.3, 0.4, 0.4, 0.39):
        s.observe(value, maximize=True)
    assert s.factor(50) == 0.5
    s.observe(math.nan, maximize=True)  # ignored
    other = Schedule("plateau", total=100, gamma=0.5, plateau_patience=2)
    other.load_state_dict(s.state_dict())
    assert other.factor(0) == 0.5 and other.plateau_best == 0.4
