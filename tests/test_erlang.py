"""Erlang C and Erlang A against independent computations.

- Erlang B/C against the textbook factorial formulas in exact rational arithmetic (Fraction).
- The classic worked example: 100 calls in 30 minutes, AHT 180 s (10 Erlangs), 80 % in 20 s:
  P(wait) 0.6821 / 0.4494 / 0.2853 / 0.1741 for 11..14 agents, so 14 agents are needed.
- Erlang C and Erlang A service levels against seeded simulations of the queue itself.
- Erlang A against a brute force: the birth–death chain truncated far out, and the waiting time
  of a tagged arrival by uniformisation of its own absorbing chain.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from fractions import Fraction

import pytest

from router.erlang import (
    agents_needed_erlang_a,
    agents_needed_erlang_c,
    asa_erlang_c,
    erlang_a,
    erlang_b,
    erlang_c,
    service_level_erlang_a,
    service_level_erlang_c,
)

# --- independent references ----------------------------------------------------------------


def exact_erlang_b(n: int, a: int | Fraction) -> Fraction:
    a = Fraction(a)
    terms = [a**k / math.factorial(k) for k in range(n + 1)]
    return terms[-1] / sum(terms)


def exact_erlang_c(n: int, a: int | Fraction) -> Fraction:
    a = Fraction(a)
    top = a**n / math.factorial(n) * Fraction(n) / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


def simulate(
    rate: float, aht: float, n: int, threshold: float, patience: float, customers: int, seed: int
) -> float:
    """Service level of a FCFS queue with N servers, simulated customer by customer.

    FCFS makes this exact without an event list: a customer would start at the earliest time a
    server is free from those ahead who were served; one whose patience runs out first leaves
    without taking a server. SL = answered within T / (answered + abandoned after T).
    """
    rng = random.Random(seed)
    free = [0.0] * n
    t = 0.0
    within = answered = abandoned_after = 0
    warmup = customers // 10
    for i in range(customers):
        t += rng.expovariate(rate)
        start = max(t, free[0])
        wait = start - t
        pat = rng.expovariate(1 / patience) if math.isfinite(patience) else math.inf
        if wait > pat:
            if i >= warmup and pat > threshold:
                abandoned_after += 1
            continue
        heapq.heapreplace(free, start + rng.expovariate(1 / aht))
        if i >= warmup:
            answered += 1
            within += wait <= threshold
    return within / (answered + abandoned_after)


def brute_force_erlang_a(
    rate: float, aht: float, patience: float, n: int, threshold: float, extra: int = 400
) -> tuple[float, float, float]:
    """(P(wait), P(abandon), SL) from the truncated chain and uniformisation."""
    mu, theta = 1 / aht, 1 / patience
    size = n + extra
    weights = [1.0]
    for k in range(1, size + 1):
        weights.append(weights[-1] * rate / (min(k, n) * mu + max(k - n, 0) * theta))
    total = sum(weights)
    pi = [w / total for w in weights]
    p_wait = sum(pi[n:])
    # Little's law for the abandonment stream: λ·P(ab) = θ·E[number waiting]
    p_abandon = theta * sum((k - n) * pi[k] for k in range(n, size + 1)) / rate
    # tagged arrival: state i = callers ahead of it; it leaves by service or its own patience
    m = size - n + 1
    state = [pi[n + i] for i in range(m)]
    big = n * mu + m * theta
    q = big * threshold
    served = sum(pi[:n])  # answered at once
    served_by = abandoned_by = 0.0
    acc_served = acc_abandoned = cum = 0.0
    weight = math.exp(-q)
    k = 0
    while True:
        acc_served += weight * served_by
        acc_abandoned += weight * abandoned_by
        cum += weight
        if cum > 1 - 1e-15 and k > q:
            break
        nxt = [0.0] * m
        for i, x in enumerate(state):
            down, leave = (n * mu + i * theta) / big, theta / big
            if i == 0:
                served_by += x * down
            else:
                nxt[i - 1] += x * down
            abandoned_by += x * leave
            nxt[i] += x * (1 - down - leave)
        state = nxt
        k += 1
        weight *= q / k
    sl = (served + acc_served) / (1 - acc_abandoned)
    return p_wait, p_abandon, sl


# --- Erlang B and C ------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "a"), [(1, 1), (2, 1), (5, 3), (12, 10), (40, 30), (120, 100)])
def test_erlang_b_and_c_match_the_factorial_formulas(n: int, a: int) -> None:
    assert erlang_b(n, a) == pytest.approx(float(exact_erlang_b(n, a)), rel=1e-12)
    if n > a:
        assert erlang_c(n, a) == pytest.approx(float(exact_erlang_c(n, a)), rel=1e-12)
    else:  # no steady state: every caller waits
        assert erlang_c(n, a) == 1.0


def test_erlang_b_small_values_by_hand() -> None:
    assert erlang_b(0, 3.0) == 1.0
    assert erlang_b(1, 1.0) == pytest.approx(0.5)  # A / (1 + A)
    assert erlang_b(2, 1.0) == pytest.approx(0.2)  # (1/2) / (1 + 1 + 1/2)


def test_textbook_example_100_calls_in_30_minutes() -> None:
    rate, aht = 100 / 1800, 180.0  # 10 Erlangs
    expected_pw = {11: 0.6821, 12: 0.4494, 13: 0.2853, 14: 0.1741}
    expected_sl = {11: 0.3896, 12: 0.6402, 13: 0.7956, 14: 0.8884}
    for n, pw in expected_pw.items():
        assert erlang_c(n, 10.0) == pytest.approx(pw, abs=5e-5)
        sl = service_level_erlang_c(rate, aht, n, 20)
        assert sl == pytest.approx(expected_sl[n], abs=5e-5)
        exact = 1 - float(exact_erlang_c(n, 10)) * math.exp(-(n - 10) * 20 / aht)
        assert sl == pytest.approx(exact, rel=1e-12)
    assert asa_erlang_c(rate, aht, 13) == pytest.approx(0.2853 * 180 / 3, rel=1e-3)
    assert agents_needed_erlang_c(rate, aht, 80, 20) == 14
    assert agents_needed_erlang_c(rate, aht, 79, 20) == 13


def test_erlang_c_service_level_matches_a_simulation() -> None:
    rate, aht, n, threshold = 1 / 30, 120.0, 6, 20.0  # 4 Erlangs on 6 agents
    simulated = simulate(rate, aht, n, threshold, math.inf, 200_000, seed=7)
    assert service_level_erlang_c(rate, aht, n, threshold) == pytest.approx(simulated, abs=0.01)


def test_unstable_and_empty_queues() -> None:
    assert erlang_c(10, 10.0) == 1.0
    assert service_level_erlang_c(1 / 18, 180, 10, 20) == 0.0  # A = N: waits grow forever
    assert asa_erlang_c(1 / 18, 180, 10) == math.inf
    assert service_level_erlang_c(0.0, 180, 1, 20) == 1.0
    assert agents_needed_erlang_c(0.0, 180, 80, 20) == 0
    assert agents_needed_erlang_a(0.0, 180, 60, 80, 20) == 0
    with pytest.raises(ValueError):
        agents_needed_erlang_c(1.0, 180, 100, 20)
    with pytest.raises(ValueError):
        agents_needed_erlang_c(-1.0, 180, 80, 20)
    with pytest.raises(ValueError):
        erlang_a(1.0, 180, 0, 10, 20)


def test_staffing_is_minimal_and_stable_at_city_scale() -> None:
    # 9000 calls an hour at 3 minutes: 450 Erlangs, about 460 agents
    rate, aht = 9000 / 3600, 180.0
    started = time.perf_counter()
    n = agents_needed_erlang_c(rate, aht, 90, 15)
    assert service_level_erlang_c(rate, aht, n, 15) >= 0.90
    assert service_level_erlang_c(rate, aht, n - 1, 15) < 0.90
    assert 450 < n < 500
    # very light traffic on many agents: 1/B is about e^1500, no overflow anywhere
    assert erlang_c(500, 0.5) == 0.0 or erlang_c(500, 0.5) < 1e-300
    assert service_level_erlang_a(0.5 / 180, 180, 60, 500, 15) == pytest.approx(1.0)
    m = agents_needed_erlang_a(rate, aht, 90, 90, 15)
    assert service_level_erlang_a(rate, aht, 90, m, 15) >= 0.90
    assert service_level_erlang_a(rate, aht, 90, m - 1, 15) < 0.90
    assert m < n
    assert time.perf_counter() - started < 5.0


# --- Erlang A ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "aht", "patience", "n", "threshold"),
    [
        (100 / 1800, 180, 60, 11, 20),  # the textbook traffic with impatient callers
        (100 / 1800, 180, 120, 9, 20),  # under-staffed: abandonment keeps the queue finite
        (0.5, 60, 30, 25, 10),
        (2.0, 30, 20, 50, 5),
        (0.2, 300, 600, 55, 60),  # A = 60 on 55 agents: overloaded
    ],
)
def test_erlang_a_matches_the_brute_force_chain(
    rate: float, aht: float, patience: float, n: int, threshold: float
) -> None:
    p_wait, p_abandon, sl = brute_force_erlang_a(rate, aht, patience, n, threshold)
    got = erlang_a(rate, aht, patience, n, threshold)
    assert got.p_wait == pytest.approx(p_wait, rel=1e-9)
    assert got.p_abandon == pytest.approx(p_abandon, rel=1e-7)
    assert got.service_level == pytest.approx(sl, rel=1e-9)
    assert service_level_erlang_a(rate, aht, patience, n, threshold) == got.service_level


def test_erlang_a_service_level_matches_a_simulation() -> None:
    rate, aht, patience, n, threshold = 1 / 20, 120.0, 90.0, 6, 20.0  # 6 Erlangs on 6 agents
    simulated = simulate(rate, aht, n, threshold, patience, 200_000, seed=11)
    got = service_level_erlang_a(rate, aht, patience, n, threshold)
    assert got == pytest.approx(simulated, abs=0.01)
    # Erlang C says this queue never settles: patience is what keeps it working
    assert service_level_erlang_c(rate, aht, n, threshold) == 0.0


def test_erlang_a_tends_to_erlang_c_as_patience_grows() -> None:
    rate, aht, n, threshold = 100 / 1800, 180.0, 13, 20.0
    c_sl = service_level_erlang_c(rate, aht, n, threshold)
    gaps = []
    for patience in (1e3, 1e5, 1e7):
        a = erlang_a(rate, aht, patience, n, threshold)
        gaps.append(abs(a.service_level - c_sl))
        assert a.p_abandon < 0.02
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-5
    assert erlang_a(rate, aht, 1e7, n, threshold).p_wait == pytest.approx(
        erlang_c(n, 10.0), rel=1e-4
    )
    inf = erlang_a(rate, aht, math.inf, n, threshold)
    assert (inf.service_level, inf.p_abandon) == (c_sl, 0.0)
    assert agents_needed_erlang_a(rate, aht, 1e8, 80, 20) == agents_needed_erlang_c(
        rate, aht, 80, 20
    )


def test_erlang_a_needs_fewer_agents_with_impatient_callers() -> None:
    rate, aht = 300 / 3600, 240.0  # 20 Erlangs
    c = agents_needed_erlang_c(rate, aht, 80, 20)
    needs = [agents_needed_erlang_a(rate, aht, p, 80, 20) for p in (30, 120, 600, 3600)]
    assert needs == sorted(needs)  # more patience, more agents
    assert needs[0] < c
    assert all(x <= c for x in needs)
    for patience, n in zip((30, 120, 600, 3600), needs, strict=True):
        assert service_level_erlang_a(rate, aht, patience, n, 20) >= 0.80
        assert service_level_erlang_a(rate, aht, patience, n - 1, 20) < 0.80


def test_erlang_a_grows_with_agents_and_overload_follows_the_fluid_limit() -> None:
    rate, aht, patience = 1.0, 100.0, 60.0  # 100 Erlangs
    levels = [service_level_erlang_a(rate, aht, patience, n, 20) for n in range(60, 131, 10)]
    assert levels == sorted(levels)
    # 10 agents for 100 Erlangs: they serve 0.1 calls/s of 1, so 90 % hang up
    heavy = erlang_a(rate, aht, patience, 10, 20)
    assert heavy.p_abandon == pytest.approx(0.9, abs=1e-3)
    assert heavy.p_wait == pytest.approx(1.0, abs=1e-9)
    assert erlang_a(rate, aht, patience, 0, 20) == erlang_a(rate, aht, patience, 0, 20)
    assert erlang_a(rate, aht, patience, 0, 20).service_level == 0.0
