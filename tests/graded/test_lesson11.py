"""Lesson 11: Welch's t-test, the noise check of every ablation row (11.1)."""
import math

import numpy as np
import pytest
import torch

from minitorch_attn.grading.checks import GradingFailure, expect_values


def torch_welch(a, b):
    """(t, df, p) of Welch's test, computed here with torch in float64; p integrates the t density."""
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    va, vb = a.var() / len(a), b.var() / len(b)  # torch.var divides by n - 1
    gap = (a.mean() - b.mean()).item()
    if (va + vb).item() == 0:
        return (math.copysign(math.inf, gap) if gap else 0.0), math.inf, (0.0 if gap else 1.0)
    t = gap / torch.sqrt(va + vb).item()
    df = ((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))).item()
    x = torch.linspace(0.0, abs(t), 400_001, dtype=torch.float64)
    nu = torch.tensor(df, dtype=torch.float64)
    density = torch.exp(torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2) - 0.5 * torch.log(nu * math.pi)
                        - (nu + 1) / 2 * torch.log1p(x * x / nu))
    return t, df, max(0.0, 1.0 - 2.0 * torch.trapezoid(density, x).item())


def expect_number(actual, expected, name, case, *, rel=1e-9, absolute=0.0):
    if isinstance(actual, (bool, np.bool_)) or not isinstance(actual, (int, float, np.integer, np.floating)):
        raise GradingFailure(f"{case}: {name} is a {type(actual).__name__}, expected a number")
    actual = float(actual)
    if math.isinf(expected) or math.isinf(actual):
        if actual != expected:
            raise GradingFailure(f"{case}: {name} is {actual}, expected {expected}")
        return
    if not math.isclose(actual, expected, rel_tol=rel, abs_tol=absolute):
        raise GradingFailure(f"{case}: {name} is {actual:.10g}, expected {expected:.10g}")


def welch_cases():
    rng = np.random.default_rng(111)
    # Three seeds a side (the lessons' case), unequal sizes (where Student's pooled t and n_a + n_b - 2
    # degrees of freedom differ from Welch's), unequal spreads, a negative gap, large and tiny p.
    for size_a, size_b, spread_a, spread_b, shift in [(3, 3, 0.4, 0.4, 0.5), (3, 3, 0.2, 1.1, -0.8),
                                                      (2, 5, 1.0, 0.3, 1.5), (6, 3, 0.5, 2.0, 0.1),
                                                      (4, 7, 0.05, 0.08, 0.3), (5, 2, 3.0, 0.5, -0.2)]:
        a = 20 + shift + spread_a * rng.standard_normal(size_a)
        b = 20 + spread_b * rng.standard_normal(size_b)
        yield a.tolist(), b.tolist()


# -- run in the student's process ----------------------------------------------
def welch(a, b):
    from minitorch_attn.experiments.report import welch_t_test

    return welch_t_test(a, b)


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("11.1", points=2)
def test_welch_statistic_and_degrees_of_freedom(student):
    for a, b in welch_cases():
        case = f"a = {np.round(a, 3).tolist()}, b = {np.round(b, 3).tolist()}"
        t, df, _ = expect_values(student(welch, a, b), ("t", "df", "p"), "welch_t_test")
        expected_t, expected_df, _ = torch_welch(a, b)
        expect_number(t, expected_t, "t", case)
        expect_number(df, expected_df, "df (Welch-Satterthwaite)", case)


@pytest.mark.exercise("11.1", points=1)
def test_welch_two_sided_p_value(student):
    # Two values a side with equal spread give df = 2 exactly, where P(|T| > t) = 1 - t / sqrt(2 + t²).
    for a, b in [([0.0, 2.0], [1.5, 3.5]), ([1.0, 3.0], [-4.0, -2.0])]:
        case = f"a = {a}, b = {b}"
        t, df, p = expect_values(student(welch, a, b), ("t", "df", "p"), "welch_t_test")
        expect_number(df, 2.0, "df", case)
        expect_number(p, 1 - abs(t) / math.sqrt(2 + t * t), "p (two-sided)", case, rel=1e-7)
    for a, b in welch_cases():
        case = f"a = {np.round(a, 3).tolist()}, b = {np.round(b, 3).tolist()}"
        _, _, p = expect_values(student(welch, a, b), ("t", "df", "p"), "welch_t_test")
        expect_number(p, torch_welch(a, b)[2], "p (two-sided)", case, rel=1e-6, absolute=1e-9)


@pytest.mark.exercise("11.1", points=1)
def test_welch_without_spread(student):
    # Identical seeds on both sides: no noise to compare with. Different means: t = ±inf, p = 0; equal: t = 0, p = 1.
    for a, b, expected in [([21.0, 21.0, 21.0], [20.5, 20.5], (math.inf, math.inf, 0.0)),
                           ([20.0, 20.0], [20.5, 20.5, 20.5], (-math.inf, math.inf, 0.0)),
                           ([20.0, 20.0, 20.0], [20.0, 20.0], (0.0, math.inf, 1.0))]:
        case = f"a = {a}, b = {b}"
        result = expect_values(student(welch, a, b), ("t", "df", "p"), "welch_t_test")
        for name, actual, wanted in zip(("t", "df", "p"), result, expected):
            expect_number(actual, wanted, name, case)
