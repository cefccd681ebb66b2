"""Staffing formulas: Erlang C (callers wait forever) and Erlang A (callers may hang up).

Pure functions, no I/O. Units: arrival rate per second, handle time and patience in seconds,
service-level targets in percent (80 means 80 %), results as fractions 0..1 unless named `_pct`.

Erlang C is the M/M/N queue: Poisson arrivals (rate λ), N agents, exponential handle times
(mean AHT), unlimited patience. With traffic A = λ·AHT (in Erlangs):

- probability of waiting  C(N, A) = N·B / (N − A·(1 − B)), where B = Erlang B(N, A);
- service level           SL(T) = 1 − C·exp(−(N − A)·T / AHT);
- average speed of answer ASA = C·AHT / (N − A).

Erlang B comes from the recursion B(0) = 1, B(n) = A·B(n−1) / (n + A·B(n−1)): every term stays in
[0, 1], so there is no factorial to overflow at N = 500 and no cancellation.

Erlang A (Palm's M/M/N+M) adds exponential patience with mean `patience_s` (abandonment rate
θ = 1/patience). Erlang C overstates the agents a city needs when residents do hang up: those who
would wait longest leave, so the queue is shorter for everybody else. How we compute it:

1. The number in the system is a birth–death chain: births λ; deaths min(k, N)·μ + max(k − N, 0)·θ.
   Arrivals see its stationary law (PASTA). Let π_N be the probability of exactly N in the system.
   Those who find a free agent (k < N) weigh (1/B − 1)·π_N, from the same Erlang B recursion
   (done in logarithms: 1/B reaches e^650 at N = 500 with light traffic).
2. An arrival who finds j callers queued ahead reaches an agent after j + 1 steps of the queue
   ahead, at rates N·μ + i·θ (i = j … 0): servers finishing, callers ahead hanging up. Mixing
   over j with the stationary weights π_(N+j)/π_N = Π λ/(N·μ + i·θ) gives, in units of π_N, the
   density of this "virtual wait" V (the wait of a caller who would never hang up):

       f(v) = a · exp(−a·v + y·(1 − e^(−θ·v))),   a = N·μ, y = λ/θ,

   (sum the Laplace transforms Π (a + iθ)/(a + iθ + s) with those weights: the series is the
   incomplete gamma function, which is this integral after u = y·e^(−θv)).
3. The caller's own patience P is Exp(θ), independent of V. Answered within T ⇔ V ≤ T and V < P;
   the service-level denominator (DESIGN.md: answered + abandoned after T) is everyone except
   those who abandon within T, i.e. 1 − P(P ≤ min(V, T)). Hence

       SL(T) = (I + ∫₀ᵀ f(v)·e^(−θv) dv) / (I + ∫₀ᵀ f(v)·e^(−θv) dv + e^(−θT) · ∫ₜ^∞ f(v) dv)

   with I = 1/B − 1 the mass of callers answered at once.

The integrals are done numerically. log f is concave, so each integrand has one peak that we find
by bisection on its derivative; we integrate only where it is within e^(−60) of that peak, cut
into panels over which it changes by at most a factor e^4, with 16-point Gauss–Legendre on each.
Everything is carried in logarithms, so λ of thousands per hour, N up to several hundred and
patience from seconds to days neither overflow nor lose the small terms. As patience grows the
result tends to Erlang C (the tests check it); with finite patience fewer agents are needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# Beyond this many orders of e below its peak, an integrand contributes less than 1e-26 of it.
_SPAN = 60.0
# Largest change of log f across one quadrature panel: e^4 variation is integrated by 16-point
# Gauss–Legendre to about 1e-16 (its error term is ~4^32/32!).
_PANEL_LOG_STEP = 4.0
_GL_POINTS = 16
# Safety stop for the staffing searches; no city queue comes near it.
_MAX_AGENTS = 1_000_000


def _gauss_legendre(n: int) -> tuple[list[float], list[float]]:
    """Nodes and weights on [-1, 1], by Newton's method on the Legendre polynomial P_n."""
    nodes: list[float] = []
    weights: list[float] = []
    for i in range(1, n + 1):
        x = math.cos(math.pi * (i - 0.25) / (n + 0.5))
        for _ in range(100):
            p0, p1 = 1.0, x
            for k in range(2, n + 1):
                p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
            dp = n * (x * p1 - p0) / (x * x - 1.0)
            dx = p1 / dp
            x -= dx
            if abs(dx) < 1e-16:
                break
        p0, p1 = 1.0, x
        for k in range(2, n + 1):
            p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
        dp = n * (x * p1 - p0) / (x * x - 1.0)
        nodes.append(x)
        weights.append(2.0 / ((1.0 - x * x) * dp * dp))
    return nodes, weights


_GL_NODES, _GL_WEIGHTS = _gauss_legendre(_GL_POINTS)


# --- Erlang B and C --------------------------------------------------------------------------


def _check(rate_per_s: float, aht_s: float) -> None:
    if rate_per_s < 0 or aht_s < 0 or math.isnan(rate_per_s) or math.isnan(aht_s):
        raise ValueError("arrival rate and handle time must be >= 0")


def _check_target(target_pct: float) -> None:
    # 100 % can never be promised: with any traffic some caller finds every agent busy.
    if not 0 < target_pct < 100:
        raise ValueError("service-level target must be between 0 and 100 percent (exclusive)")


def erlang_b(servers: int, traffic: float) -> float:
    """Blocking probability of N servers offered A Erlangs (iterative recursion, stable)."""
    if servers < 0:
        raise ValueError("servers must be >= 0")
    b = 1.0
    for n in range(1, servers + 1):
        b = traffic * b / (n + traffic * b)
    return b


def erlang_c(servers: int, traffic: float) -> float:
    """Probability that an arrival waits (all N agents busy); 1.0 when the queue is unstable."""
    if traffic <= 0:
        return 0.0
    if servers <= traffic:
        return 1.0
    b = erlang_b(servers, traffic)
    return servers * b / (servers - traffic * (1.0 - b))


def service_level_erlang_c(
    rate_per_s: float, aht_s: float, servers: int, threshold_s: float
) -> float:
    """Fraction answered within `threshold_s` (including at once) with N agents, Erlang C."""
    _check(rate_per_s, aht_s)
    traffic = rate_per_s * aht_s
    if traffic == 0:
        return 1.0
    if servers <= traffic:
        return 0.0
    c = erlang_c(servers, traffic)
    return 1.0 - c * math.exp(-(servers - traffic) * threshold_s / aht_s)


def asa_erlang_c(rate_per_s: float, aht_s: float, servers: int) -> float:
    """Average speed of answer in seconds (mean wait of all callers), Erlang C; inf if unstable."""
    _check(rate_per_s, aht_s)
    traffic = rate_per_s * aht_s
    if traffic == 0:
        return 0.0
    if servers <= traffic:
        return math.inf
    return erlang_c(servers, traffic) * aht_s / (servers - traffic)


def agents_needed_erlang_c(
    rate_per_s: float, aht_s: float, target_pct: float, threshold_s: float
) -> int:
    """Fewest agents whose Erlang C service level within `threshold_s` reaches `target_pct`.

    0 when there is no traffic. Starts at the first stable N (> A) and walks up, carrying the
    Erlang B recursion along so the whole search costs O(N).
    """
    _check(rate_per_s, aht_s)
    _check_target(target_pct)
    traffic = rate_per_s * aht_s
    if traffic == 0:
        return 0
    target = target_pct / 100.0
    b = 1.0
    n = 0
    while n < _MAX_AGENTS:
        n += 1
        b = traffic * b / (n + traffic * b)
        if n <= traffic:
            continue
        c = n * b / (n - traffic * (1.0 - b))
        sl = 1.0 - c * math.exp(-(n - traffic) * threshold_s / aht_s)
        if sl >= target:
            return n
    raise ValueError("no staffing reaches the target")  # pragma: no cover - needs absurd input


# --- Erlang A ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErlangA:
    """Steady-state figures of M/M/N+M for one staffing level."""

    p_wait: float  # probability an arrival finds every agent busy
    p_abandon: float  # probability an arrival hangs up before being answered
    service_level: float  # answered within T / (answered + abandoned after T)


def _log_add(x: float, y: float) -> float:
    """log(e^x + e^y) without overflow."""
    if x == -math.inf:
        return y
    if y == -math.inf:
        return x
    hi, lo = (x, y) if x >= y else (y, x)
    return hi + math.log1p(math.exp(lo - hi))


def _log_immediate(servers: int, traffic: float) -> float:
    """log(1/B − 1) = log(Σ_{k<N} π_k / π_N): mass answered at once, in units of π_N.

    1/B follows r_n = 1 + (n/A)·r_(n−1), kept as a logarithm because it can exceed 1e300.
    """
    log_r = 0.0
    log_a = math.log(traffic)
    for n in range(1, servers + 1):
        log_r = _log_add(0.0, math.log(n) - log_a + log_r)
    # log(r − 1) = log r + log(1 − 1/r); expm1 keeps precision when r is close to 1
    return log_r + math.log(-math.expm1(-log_r))


def _bisect(fn: Callable[[float], float], lo: float, hi: float) -> float:
    """A root of a function that is >= 0 at lo and < 0 at hi (monotone between them)."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if fn(mid) >= 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _beyond(fn: Callable[[float], float], start: float) -> float:
    """A point right of `start` where fn < 0 (fn decreasing there), by doubling steps."""
    step = 1.0
    for _ in range(2000):
        if fn(start + step) < 0:
            return start + step
        step *= 2.0
    raise ValueError("integrand does not decay")  # pragma: no cover - log f is concave


def _panels(g: Callable[[float], float], lo: float, hi: float, peak: float) -> float:
    """∫ exp(g − peak) over [lo, hi] where g is monotone: panels of bounded log-variation."""
    total = 0.0
    x = lo
    width = hi - lo
    while x < hi:
        width = min(width, hi - x)
        gx = g(x)
        while width > 1e-12 * max(1.0, abs(x)) and abs(g(x + width) - gx) > _PANEL_LOG_STEP:
            width *= 0.5
        half = 0.5 * width
        mid = x + half
        total += half * sum(
            w * math.exp(g(mid + half * t) - peak)
            for t, w in zip(_GL_NODES, _GL_WEIGHTS, strict=True)
        )
        x += width
        width *= 2.0
    return total


def _log_integral(
    g: Callable[[float], float], dg: Callable[[float], float], lo: float, hi: float
) -> float:
    """log ∫_lo^hi exp(g(v)) dv for a concave g (hi may be inf); -inf for an empty range."""
    if hi <= lo:
        return -math.inf
    # the peak of a concave function: where its derivative changes sign
    if dg(lo) <= 0:
        mode = lo
    elif math.isfinite(hi) and dg(hi) >= 0:
        mode = hi
    else:
        right = _beyond(dg, lo) if not math.isfinite(hi) else hi
        mode = _bisect(dg, lo, min(right, hi))
    peak = g(mode)
    cut = peak - _SPAN

    def above(v: float) -> float:
        return g(v) - cut

    left = lo if g(lo) >= cut else _bisect(lambda v: -above(v), lo, mode)
    if math.isfinite(hi) and g(hi) >= cut:
        right = hi
    else:
        far = _beyond(above, mode)
        right = _bisect(above, mode, far if not math.isfinite(hi) else min(far, hi))
    total = _panels(g, left, mode, peak) + _panels(g, mode, right, peak)
    return peak + math.log(total) if total > 0 else -math.inf


class _ErlangAModel:
    """The log-density of the virtual wait and the immediate-answer mass, for one N."""

    def __init__(self, rate_per_s: float, aht_s: float, patience_s: float, servers: int):
        self.lam = rate_per_s
        self.a = servers / aht_s  # N·μ: service completions per second with every agent busy
        self.theta = 1.0 / patience_s
        self.y = self.lam / self.theta
        self.log_a = math.log(self.a)
        self.log_imm = _log_immediate(servers, rate_per_s * aht_s)

    # log f(v) and its derivative
    def g(self, v: float) -> float:
        return self.log_a - self.a * v + self.y * -math.expm1(-self.theta * v)

    def dg(self, v: float) -> float:
        return -self.a + self.lam * math.exp(-self.theta * v)

    # log (f(v)·e^(−θv)): the waiting callers who are still there when an agent takes them
    def g_served(self, v: float) -> float:
        return self.g(v) - self.theta * v

    def dg_served(self, v: float) -> float:
        return self.dg(v) - self.theta

    def log_served_within(self, t: float) -> float:
        return _log_integral(self.g_served, self.dg_served, 0.0, t)

    def log_waiting_beyond(self, t: float) -> float:
        return _log_integral(self.g, self.dg, t, math.inf)

    def service_level(self, threshold_s: float) -> float:
        num = _log_add(self.log_imm, self.log_served_within(threshold_s))
        rest = -self.theta * threshold_s + self.log_waiting_beyond(threshold_s)
        return math.exp(num - _log_add(num, rest))


def _check_erlang_a(rate_per_s: float, aht_s: float, patience_s: float) -> None:
    _check(rate_per_s, aht_s)
    if not patience_s > 0:
        raise ValueError("patience must be > 0 seconds (math.inf for callers who never leave)")


def erlang_a(
    rate_per_s: float, aht_s: float, patience_s: float, servers: int, threshold_s: float
) -> ErlangA:
    """P(wait), P(abandon) and service level within `threshold_s` for M/M/N+M.

    `patience_s` = math.inf gives Erlang C (nobody abandons). With N = 0 nobody is answered.
    """
    _check_erlang_a(rate_per_s, aht_s, patience_s)
    if rate_per_s == 0 or aht_s == 0:
        return ErlangA(0.0, 0.0, 1.0)
    if servers <= 0:
        return ErlangA(1.0, 1.0 if math.isfinite(patience_s) else 0.0, 0.0)
    if not math.isfinite(patience_s):
        traffic = rate_per_s * aht_s
        return ErlangA(
            erlang_c(servers, traffic),
            0.0,
            service_level_erlang_c(rate_per_s, aht_s, servers, threshold_s),
        )
    m = _ErlangAModel(rate_per_s, aht_s, patience_s, servers)
    log_wait = m.log_waiting_beyond(0.0)
    log_all = _log_add(m.log_imm, log_wait)
    log_served_waiting = m.log_served_within(math.inf)
    # those who waited minus those of them served: computed as a difference of logs; when θ is
    # tiny it loses relative (not absolute) precision, which is what a percentage needs
    p_wait = math.exp(log_wait - log_all)
    p_abandon = p_wait * max(0.0, -math.expm1(log_served_waiting - log_wait))
    return ErlangA(p_wait, p_abandon, m.service_level(threshold_s))


def service_level_erlang_a(
    rate_per_s: float, aht_s: float, patience_s: float, servers: int, threshold_s: float
) -> float:
    """Service level within `threshold_s` for M/M/N+M (see the module docstring)."""
    _check_erlang_a(rate_per_s, aht_s, patience_s)
    if rate_per_s == 0 or aht_s == 0:
        return 1.0
    if servers <= 0:
        return 0.0
    if not math.isfinite(patience_s):
        return service_level_erlang_c(rate_per_s, aht_s, servers, threshold_s)
    return _ErlangAModel(rate_per_s, aht_s, patience_s, servers).service_level(threshold_s)


def agents_needed_erlang_a(
    rate_per_s: float, aht_s: float, patience_s: float, target_pct: float, threshold_s: float
) -> int:
    """Fewest agents whose Erlang A service level within `threshold_s` reaches `target_pct`.

    The service level grows with N, so this is a binary search between 1 and the Erlang C answer
    (abandonment only helps those who stay, so Erlang C is an upper bound; checked, and widened
    if rounding ever says otherwise).
    """
    _check_erlang_a(rate_per_s, aht_s, patience_s)
    _check_target(target_pct)
    if rate_per_s == 0 or aht_s == 0:
        return 0
    if not math.isfinite(patience_s):
        return agents_needed_erlang_c(rate_per_s, aht_s, target_pct, threshold_s)
    target = target_pct / 100.0

    def meets(n: int) -> bool:
        return service_level_erlang_a(rate_per_s, aht_s, patience_s, n, threshold_s) >= target

    hi = agents_needed_erlang_c(rate_per_s, aht_s, target_pct, threshold_s)
    while not meets(hi):
        if hi >= _MAX_AGENTS:  # pragma: no cover - needs absurd input
            raise ValueError("no staffing reaches the target")
        hi *= 2
    lo = 0  # invariant: lo does not meet the target (N = 0 answers nobody), hi does
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid
    return hi
