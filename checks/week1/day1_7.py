"""Day 1.7 -- sampling: ``make_sampler(temp, top_p, top_k)`` returns ``sample(logprobs)``.

Statistical checks, made deterministic with fixed seeds (``mx.random.seed``, and numpy's and
Python's in case the learner draws with those). Each check draws thousands of tokens in one
call, as a batch (N, V) of identical rows, when a cheap probe shows the sampler handles a
batch of differing rows; a sampler written for one row, as the book's is, is called row by
row instead (fewer draws, same tests).

* Distributions are compared with a chi-square goodness-of-fit test (numpy only; the critical
  value comes from the Wilson-Hilferty approximation, slightly conservative for small df) at
  ALPHA = 1e-5: a correct sampler
  fails by chance about once in 100 000 seeds, while every mistake below is off by hundreds
  of standard deviations with these sample sizes.
* Supports (which tokens can come out at all) are compared as sets. Every token a rule keeps
  has renormalized probability >= 0.08 here, so with >= 300 draws a kept token that never
  appears is impossible in practice (0.92**300 ~ 1e-11).

The logits are designed so that each mistake predicts a different outcome (see the comments
at each design); tokens are placed at permuted vocabulary positions, so that a sampler that
confuses sorted positions with token ids fails too.

Top-p: the nucleus is the smallest set of most likely tokens whose probability reaches top_p
(it includes the token that crosses top_p). The book's variant that keeps tokens while the
running sum, including the token itself, is below top_p (always keeping the most likely one)
drops that crossing token; it is accepted as well.
"""

from __future__ import annotations

import math
import random

import numpy as np

from ..harness import CheckFailed, LearnerError, check

SYMBOLS = ("make_sampler",)
SEED = 1234
ALPHA = 1e-5
Z_ALPHA = 4.264890793922602  # the standard normal quantile of 1 - ALPHA
N_BATCH = 4000   # draws in one batched call
N_ROWS = 300     # draws when the sampler must be called one row at a time


def chi2_critical(df: int) -> float:
    """Upper ALPHA critical value of chi-square with ``df`` degrees of freedom
    (Wilson-Hilferty: (X/df)**(1/3) is close to normal with mean 1 - 2/(9 df))."""
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + Z_ALPHA * math.sqrt(c)) ** 3


def chi2_test(counts: np.ndarray, probs: np.ndarray) -> dict:
    """Goodness of fit of ``counts`` to ``probs``. A count where the probability is 0 fails
    outright; cells with an expected count below 5 are pooled."""
    n = counts.sum()
    if np.any(counts[probs <= 0] > 0):
        return {"fits": False, "chi2": float("inf"), "critical": None,
                "impossible_tokens": [int(i) for i in np.nonzero((probs <= 0) & (counts > 0))[0]]}
    keep = probs > 0
    c, p = counts[keep].astype(np.float64), probs[keep] / probs[keep].sum()
    exp = n * p
    small = exp < 5
    if small.any():
        c = np.append(c[~small], c[small].sum())
        exp = np.append(exp[~small], exp[small].sum())
        if exp[-1] == 0:
            c, exp = c[:-1], exp[:-1]
    df = len(c) - 1
    if df <= 0:  # a single possible outcome: the impossible-token test above decides
        return {"fits": True, "chi2": 0.0, "critical": 0.0, "df": 0}
    stat = float(((c - exp) ** 2 / exp).sum())
    crit = chi2_critical(df)
    return {"fits": stat <= crit, "chi2": round(stat, 2), "critical": round(crit, 2), "df": df}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _logprobs(sorted_logits, perm) -> np.ndarray:
    """Vocabulary-order log-probabilities: token ``perm[r]`` has the r-th largest logit."""
    v = len(sorted_logits)
    out = np.empty(v)
    out[np.asarray(perm)] = np.asarray(sorted_logits, dtype=np.float64)
    return out - np.log(np.exp(out - out.max()).sum()) - out.max()


def _from_probs(sorted_probs, perm) -> np.ndarray:
    return _logprobs(np.log(np.asarray(sorted_probs, dtype=np.float64)), perm)


# --------------------------------------------------------------------------- drawing


def _seed():
    import mlx.core as mx

    mx.random.seed(SEED)
    np.random.seed(SEED)
    random.seed(SEED)


def _ids(out, n: int, v: int, case: str) -> np.ndarray | None:
    """Token ids from a sampler's output, or None if it does not hold n ids."""
    import mlx.core as mx

    if out is None:
        raise CheckFailed(f"[{case}] sample(logprobs) returned None, expected an mx.array of "
                          "token ids.", {"case": case})
    if isinstance(out, mx.array):
        a = np.array(out)
    else:
        try:
            a = np.asarray(out)
        except Exception:
            return None
    if a.size != n:
        return None
    if not (np.issubdtype(a.dtype, np.integer) or np.all(np.mod(a, 1) == 0)):
        raise CheckFailed(f"[{case}] sample(logprobs) returned non-integer values "
                          f"({a.dtype}), expected token ids.", {"case": case})
    a = a.reshape(-1).astype(np.int64)
    if a.min() < 0 or a.max() >= v:
        bad = int(a[(a < 0) | (a >= v)][0])
        raise CheckFailed(f"[{case}] sample(logprobs) returned token id {bad}, outside the "
                          f"vocabulary [0, {v}).", {"case": case, "token": bad})
    return a


PROBE_ROWS, PROBE_V = 4, 256


def handles_batches(ctx, sample) -> bool:
    """Whether ``sample`` treats each row of a batch on its own, tried cheaply on a few rows
    that disagree. The course's generation loop only ever passes one row, so a sampler
    written for (1, V) is correct by the course's contract; it is then drawn from row by
    row (a batch-of-one sampler can cost O(N^2 V) on an (N, V) batch, or mix the rows)."""
    import mlx.core as mx

    # Row i ranks the tokens in its own rotation: its top token sits at PROBE_V/4 * i and
    # towers over the rest (gap 1000, still huge after any temperature the checks use), so
    # any correct sampler, greedy or not, returns exactly that token for every row, while one
    # that shares a mask or an ordering across rows does not.
    shift = PROBE_V // PROBE_ROWS
    ranks = np.arange(PROBE_V, dtype=np.float32)
    rows = [np.roll(np.where(ranks == 0, 0.0, -1000.0 - ranks), shift * i)
            for i in range(PROBE_ROWS)]
    want = [shift * i for i in range(PROBE_ROWS)]
    _seed()
    try:
        out = ctx.call(sample, mx.array(np.stack(rows).astype(np.float32)))
        got = np.asarray(out).reshape(-1)
    except LearnerError:
        return False
    except (TypeError, ValueError):
        return False
    return got.size == PROBE_ROWS and [int(g) for g in got] == want


def draw(ctx, sample, logprobs: np.ndarray, case: str) -> tuple[np.ndarray, str]:
    """Token counts from sampling ``logprobs`` (V,) many times: one call on an (N, V) batch of
    identical rows when the sampler handles batches, otherwise N_ROWS calls on (1, V)."""
    import mlx.core as mx

    v = logprobs.shape[-1]
    row = mx.array(logprobs.astype(np.float32))
    ids = None
    if handles_batches(ctx, sample):
        _seed()
        try:
            ids = _ids(ctx.call(sample, mx.tile(row[None], (N_BATCH, 1))), N_BATCH, v, case)
        except LearnerError:
            ids = None
    mode = f"one call on a ({N_BATCH}, {v}) batch"
    if ids is None:
        _seed()
        one = row[None]
        got = []
        for _ in range(N_ROWS):
            r = _ids(ctx.call(sample, one), 1, v, case)
            if r is None:
                raise CheckFailed(
                    f"[{case}] sample(logprobs) on logprobs of shape (1, {v}) should return one "
                    "token id (shape (1,)).", {"case": case})
            got.append(int(r[0]))
        ids = np.array(got)
        mode = f"{N_ROWS} calls on (1, {v})"
    return np.bincount(ids, minlength=v), mode


def _make(ctx, temp, top_p, top_k):
    make_sampler = ctx.symbol("make_sampler")
    sample = ctx.call(make_sampler, temp, top_p, top_k)
    if not callable(sample):
        raise CheckFailed(f"make_sampler({temp}, {top_p}, {top_k}) returned "
                          f"{type(sample).__name__}, expected a function sample(logprobs).",
                          {"returned": type(sample).__name__})
    return sample


def _support(counts: np.ndarray) -> set[int]:
    return {int(i) for i in np.nonzero(counts)[0]}


def _ranked(logprobs: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-logprobs, kind="stable")]


def _restricted(logprobs: np.ndarray, kept, temp: float = 1.0) -> np.ndarray:
    p = np.zeros_like(logprobs)
    kept = sorted(kept)
    p[kept] = _softmax(logprobs[kept] / temp)
    return p


# --------------------------------------------------------------------------- checks


@check("sampler-greedy", 1, "temp 0 picks the most likely token of every row",
       symbols=SYMBOLS)
def sampler_greedy(ctx):
    import mlx.core as mx

    key = mx.random.key(17)
    cases = [
        ((0.0, None, None), (5, 11), mx.float32),
        ((0.0, None, None), (2, 3, 11), mx.float16),
        ((0, 0.5, 3), (4, 9), mx.float32),    # filters given but temp 0: still argmax
    ]
    n = 0
    for (temp, top_p, top_k), shape, dtype in cases:
        key, sub = mx.random.split(key)
        logits = mx.random.normal(shape, key=sub) * 3.0
        logprobs = (logits - mx.logsumexp(logits, axis=-1, keepdims=True)).astype(dtype)
        case = (f"make_sampler({temp}, {top_p}, {top_k}), logprobs {tuple(shape)} "
                f"{str(dtype).split('.')[-1]}")
        sample = _make(ctx, temp, top_p, top_k)
        _seed()
        got = ctx.call(sample, logprobs)
        want = np.argmax(np.array(logprobs.astype(mx.float32)), axis=-1)
        if got is None:
            raise CheckFailed(f"[{case}] sample returned None, expected token ids.",
                              {"case": case})
        g = np.asarray(np.array(got) if isinstance(got, mx.array) else got)
        if g.shape != want.shape:
            raise CheckFailed(f"[{case}] sample returned shape {g.shape}, expected "
                              f"{want.shape} (one token id per row).",
                              {"case": case, "shape": list(g.shape),
                               "expected_shape": list(want.shape)})
        if not np.array_equal(g.astype(np.int64), want):
            raise CheckFailed(f"[{case}] with temp 0 every row must give its argmax: got "
                              f"{g.reshape(-1).tolist()}, expected {want.reshape(-1).tolist()}.",
                              {"case": case, "got": g.tolist(), "expected": want.tolist()})
        n += want.size
    return {"cases": len(cases), "rows": n}


# Temperature: 6 tokens, logits spread over 2.8 nats. softmax(l / T), softmax(l * T) and
# softmax(l) are far apart for T = 0.5 and T = 2 (and l * 0.5 is NOT l / 0.5).
TEMP_LOGITS = _logprobs([1.6, 0.8, 0.4, 0.0, -0.4, -1.2], [2, 0, 5, 3, 1, 4])


@check("sampler-temperature", 1, "sampling at a temperature: how often each token is drawn",
       symbols=SYMBOLS)
def sampler_temperature(ctx):
    lp = TEMP_LOGITS
    evidence = []
    drawn = []
    for temp in (0.5, 2.0):
        case = f"make_sampler({temp}, None, None), V={len(lp)}"
        sample = _make(ctx, temp, None, None)
        counts, mode = draw(ctx, sample, lp, case)
        drawn.append((temp, counts))
        right = chi2_test(counts, _softmax(lp / temp))
        if right["fits"]:
            evidence.append({"case": case, "draws": mode, **right})
            continue
        ev = {"case": case, "draws": mode, "counts": counts.tolist(),
              "expected_probs": np.round(_softmax(lp / temp), 4).tolist(), **right}
        if temp == 0.5:  # decide with both temperatures in view: they tell the mistakes apart
            sample2 = _make(ctx, 2.0, None, None)
            drawn.append((2.0, draw(ctx, sample2, lp, case.replace("0.5", "2.0"))[0]))
        pit = _temperature_mistake(lp, drawn)
        if pit is not None:
            raise CheckFailed(f"[{case}] " + TEMP_WORDS[pit].format(t=temp) + (
                f" (chi-square against softmax(logprobs / {temp}) {right['chi2']} > "
                f"{right['critical']})."), ev, pitfall=pit)
        if len(_support(counts)) == 1:
            raise CheckFailed(f"[{case}] every draw gave token {int(np.argmax(counts))}: "
                              "the sampler is not random.", ev)
        raise CheckFailed(
            f"[{case}] the token frequencies do not fit softmax(logprobs / {temp}): "
            f"chi-square {right['chi2']} > {right['critical']} (df {right['df']}).", ev)
    return {"cases": evidence}


# How sampling with temperature T goes wrong, as the distribution each mistake draws from
# (several forms of one mistake are listed together).
TEMP_MISTAKES = {
    "sampler-temp-multiplied": lambda lp, t: [_softmax(lp * t)],
    "sampler-temp-ignored": lambda lp, t: [_softmax(lp)],
    # mx.random.categorical takes logits; handed probabilities it draws from softmax(p).
    "sampler-categorical-gets-probs": lambda lp, t: [
        _softmax(np.exp(lp) / t), _softmax(np.exp(lp / t)), _softmax(_softmax(lp / t))],
}
TEMP_WORDS = {
    "sampler-temp-multiplied": "the token frequencies fit softmax(logprobs * {t}), not "
                               "softmax(logprobs / {t})",
    "sampler-temp-ignored": "the token frequencies fit temperature 1: the temperature is not "
                            "applied",
    "sampler-categorical-gets-probs": "the token frequencies fit a draw whose logits are "
                                      "probabilities (values between 0 and 1), which makes "
                                      "every token almost equally likely",
}
# A mistake is named only if it explains the draws of every temperature and is at least
# e**8 times likelier than the right distribution and every other mistake.
DECISIVE = 8.0


def _loglik(counts: np.ndarray, probs: np.ndarray) -> float:
    if np.any(counts[probs <= 0] > 0):
        return -np.inf
    keep = counts > 0
    return float(np.sum(counts[keep] * np.log(probs[keep])))


def _temperature_mistake(lp: np.ndarray, drawn) -> str | None:
    """The temperature mistake the token counts of all temperatures point to, if one does
    decisively (see ``DECISIVE``)."""
    scores = {"right": sum(_loglik(c, _softmax(lp / t)) for t, c in drawn)}
    fits = set()
    for pit, model in TEMP_MISTAKES.items():
        for i in range(len(model(lp, 1.0))):
            ll = sum(_loglik(c, model(lp, t)[i]) for t, c in drawn)
            if ll > scores.get(pit, -np.inf):
                scores[pit] = ll
                if all(chi2_test(c, model(lp, t)[i])["fits"] for t, c in drawn):
                    fits.add(pit)
                else:
                    fits.discard(pit)
    best = max(scores, key=scores.get)
    if best not in fits:
        return None
    rival = max(v for k, v in scores.items() if k != best)
    return best if scores[best] - rival >= DECISIVE else None


# Top-k: 9 tokens whose logits fall slowly, so the k-th and (k+1)-th most likely tokens both
# keep >= 8% of the mass after renormalization: keeping k-1 (one missing) or k+1 (one extra)
# shows at once. Run at temp 1 so that only the filter is under test.
TOPK_LOGITS = _logprobs([1.0, 0.8, 0.6, 0.45, 0.3, 0.15, 0.0, -0.3, -0.6],
                        [4, 7, 1, 8, 0, 3, 6, 2, 5])


@check("sampler-top-k", 1, "top-k keeps exactly the k most likely tokens",
       symbols=SYMBOLS)
def sampler_top_k(ctx):
    lp = TOPK_LOGITS
    ranked = _ranked(lp)
    evidence = []
    for k in (3, 6):
        case = f"make_sampler(1.0, None, {k}), V={len(lp)}"
        sample = _make(ctx, 1.0, None, k)
        counts, mode = draw(ctx, sample, lp, case)
        got = _support(counts)
        want = set(ranked[:k])
        ev = {"case": case, "draws": mode, "counts": counts.tolist(),
              "top_k_tokens": ranked[:k], "sampled_tokens": sorted(got)}
        if got != want:
            outside = sorted(got - want)
            missing = sorted(want - got)
            if got == set(ranked[:k - 1]) or got == set(ranked[:k + 1]):
                kept = len(got)
                raise CheckFailed(
                    f"[{case}] {kept} different tokens came out, the {kept} most likely: top-k "
                    f"with k={k} must keep exactly {k}.", ev, pitfall="sampler-topk-wrong-count")
            if got in (set(ranked[-k:]), set(ranked[k:])):
                which = "least likely" if got == set(ranked[-k:]) else "all but the most likely"
                raise CheckFailed(
                    f"[{case}] the tokens that came out, {sorted(got)}, are the {len(got)} "
                    f"{which}: the filter keeps the wrong side of the cut.", ev,
                    pitfall="sampler-topk-inverted")
            _filter_mistake(case, got, counts, lp, range(k - 1, k + 2), ev,
                            lambda: [(lp, draw(ctx, _make(ctx, 1.0, None, kk), lp, case)[0])
                                     for kk in (3, 6)])
            if outside:
                raise CheckFailed(
                    f"[{case}] token(s) {outside} came out but are not among the {k} most "
                    f"likely {ranked[:k]}.", ev)
            raise CheckFailed(
                f"[{case}] token(s) {missing} are among the {k} most likely but never came "
                f"out in {counts.sum()} draws.", ev)
        fit = chi2_test(counts, _restricted(lp, want))
        ev.update(fit)
        if not fit["fits"]:
            raise CheckFailed(
                f"[{case}] the right {k} tokens come out, but not in proportion to their "
                f"probabilities (chi-square {fit['chi2']} > {fit['critical']}).", ev)
        evidence.append({"case": case, "draws": mode, **fit})
    return {"cases": evidence}


# Top-p. Case "spread": sorted probabilities with running sums .30 .52 .70 .82 .90 .95 .98 1;
# top_p = 0.6 -> the nucleus is 3 tokens (the 3rd crosses 0.6); the book's variant keeps 2;
# one-too-many keeps 4; sorting the wrong way keeps the least likely tokens (the 0.02 one
# comes out, which no correct rule allows). Case "peaked": p_max = 0.55 > top_p = 0.4 -> only
# the most likely token may come out (both conventions); a rule that can drop it keeps
# nothing and the draw lands elsewhere (mx.random.categorical on an all -inf row gives
# token 0 for a batch, a uniform draw for a single row); one-too-many keeps 2. Token 0 is a
# middling token in both designs, never the top or the least likely.
TOPP_CASES = (
    ("spread", 0.6, _from_probs([0.30, 0.22, 0.18, 0.12, 0.08, 0.05, 0.03, 0.02],
                                [3, 6, 1, 7, 0, 5, 2, 4])),
    ("peaked", 0.4, _from_probs([0.55, 0.15, 0.10, 0.08, 0.06, 0.03, 0.02, 0.01],
                                [5, 2, 7, 0, 1, 6, 4, 3])),
)


def _nucleus(lp: np.ndarray, top_p: float) -> int:
    """Size of the smallest most-likely prefix whose probability reaches top_p."""
    csum = np.cumsum(np.sort(np.exp(lp))[::-1])
    return int(np.searchsorted(csum, top_p) + 1)


@check("sampler-top-p", 1, "top-p keeps the nucleus, always including the top token",
       symbols=SYMBOLS)
def sampler_top_p(ctx):
    results = []
    for name, top_p, lp in TOPP_CASES:
        case = f"make_sampler(1.0, {top_p}, None), {name} probabilities, V={len(lp)}"
        sample = _make(ctx, 1.0, top_p, None)
        counts, mode = draw(ctx, sample, lp, case)
        results.append((name, top_p, lp, case, counts, mode))

    # Diagnose with all cases in view: sorting the wrong way also loses the top token, so the
    # tail evidence of the spread case decides first.
    for name, top_p, lp, case, counts, mode in results:
        ranked = _ranked(lp)
        got = _support(counts)
        # Only where p_max < top_p: when nothing is kept (p_max > top_p and the top token
        # dropped), mx.random.categorical's draw from an all -inf row is arbitrary.
        # Sorted the wrong way, the kept set is the tail (the most likely token is left out);
        # a filter that keeps everything is a different mistake.
        # The kept set must be a run at the unlikely end of the ranking: a draw that lets
        # every token out (probabilities handed to the draw as logits, say) is not this.
        tail = any(got == set(ranked[-j:]) for j in range(1, len(lp)))
        if (tail and ranked[-1] in got and 1 < _nucleus(lp, top_p) < len(lp) - 1
                and counts[ranked[0]] < 0.5 * np.exp(lp[ranked[0]]) * counts.sum()):
            raise CheckFailed(
                f"[{case}] the least likely token ({ranked[-1]}, p={np.exp(lp[ranked[-1]]):.2f})"
                f" came out although it is far outside the nucleus {ranked[:_nucleus(lp, top_p)]}"
                ": the kept tokens are taken from the wrong end.",
                _ev(case, mode, counts, lp, top_p), pitfall="sampler-topp-keeps-tail")
    for name, top_p, lp, case, counts, mode in results:
        m = _nucleus(lp, top_p)
        _filter_mistake(case, _support(counts), counts, lp, range(m - 1, m + 2),
                        _ev(case, mode, counts, lp, top_p),
                        lambda: [(r[2], r[4]) for r in results])
    # Dropping the top token shows when p_max > top_p: nothing is left to keep, and the draw
    # from an all -inf row lands anywhere. Any accepted rule (or the off-by-one one) gives
    # the top token at least p_top / P(top m+1 tokens) of the draws; well under half of that
    # means it is being dropped. It is that mistake, not a broken filter, when the cases
    # where the top token is fine keep a plausible set.
    def top_share_ok(lp, top_p, counts):
        ranked, m = _ranked(lp), _nucleus(lp, top_p)
        p = np.exp(lp)
        floor = 0.5 * p[ranked[0]] / p[ranked[:m + 1]].sum()
        return counts[ranked[0]] / counts.sum() >= floor, floor

    fine = [(lp, top_p, counts) for name, top_p, lp, case, counts, mode in results
            if top_share_ok(lp, top_p, counts)[0]]
    plausible = bool(fine) and all(_support(counts) in _sets(lp, top_p)
                                   for lp, top_p, counts in fine)
    for name, top_p, lp, case, counts, mode in results:
        ranked = _ranked(lp)
        ok, floor = top_share_ok(lp, top_p, counts)
        if not ok:
            share = counts[ranked[0]] / counts.sum()
            raise CheckFailed(
                f"[{case}] the most likely token ({ranked[0]}, p={np.exp(lp[ranked[0]]):.2f}) "
                f"came out in {share:.0%} of {counts.sum()} draws (at least {2 * floor:.0%} "
                f"expected): top-p must always keep it, even when its probability alone "
                f"exceeds top_p={top_p}.",
                _ev(case, mode, counts, lp, top_p),
                pitfall="sampler-topp-drops-top-token" if plausible else None)
    evidence = []
    for name, top_p, lp, case, counts, mode in results:
        ranked = _ranked(lp)
        m = _nucleus(lp, top_p)
        got = _support(counts)
        accepted = {"nucleus": ranked[:m], "book": ranked[:max(m - 1, 1)]}
        ev = _ev(case, mode, counts, lp, top_p)
        match = next((conv for conv, kept in accepted.items() if got == set(kept)), None)
        if match is None:
            if got == set(ranked[:m + 1]):
                raise CheckFailed(
                    f"[{case}] {m + 1} tokens came out: one more than the nucleus "
                    f"{ranked[:m]} (the smallest set of most likely tokens reaching "
                    f"{top_p}).", ev, pitfall="sampler-topp-off-by-one")
            outside = sorted(got - set(ranked[:m]))
            if outside:
                raise CheckFailed(
                    f"[{case}] token(s) {outside} came out but are outside the nucleus "
                    f"{ranked[:m]}.", ev)
            raise CheckFailed(
                f"[{case}] token(s) {sorted(set(ranked[:max(m - 1, 1)]) - got)} are in the "
                f"nucleus {ranked[:m]} but never came out.", ev)
        fit = chi2_test(counts, _restricted(lp, accepted[match]))
        ev.update(fit)
        if not fit["fits"]:
            raise CheckFailed(
                f"[{case}] the right tokens come out, but not in proportion to their "
                f"probabilities (chi-square {fit['chi2']} > {fit['critical']}).", ev)
        evidence.append({"case": case, "draws": mode, "convention": match, **fit})
    return {"cases": evidence}


def _filter_mistake(case, got: set[int], counts, lp, sizes, ev, all_counts) -> None:
    """Fail naming a filter mistake that shows in which tokens came out: positions in the
    sorted order taken for token ids (the kept tokens are ids 0 .. j-1 for a plausible
    count j, not the j most likely), or a filter with no effect at all (in every case of
    the check, ``all_counts`` as (logprobs, counts) pairs, every token comes out as often as
    without the filter). Two or more kept tokens are needed: a row with nothing kept draws
    token 0 in a batch."""
    ranked = _ranked(lp)
    for j in sizes:
        if j >= 2 and got == set(range(j)) and got != set(ranked[:j]):
            raise CheckFailed(
                f"[{case}] the tokens that came out are ids {sorted(got)}, the first {j} ids "
                f"of the vocabulary, not the {j} most likely tokens {ranked[:j]}.", ev,
                pitfall="sampler-sorted-positions")
    if got == set(range(len(lp))) and all(
            _support(c) == set(range(len(p))) and chi2_test(c, _softmax(p))["fits"]
            for p, c in all_counts()):
        raise CheckFailed(
            f"[{case}] every one of the {len(lp)} tokens came out, as often as with no filter "
            "at all (in every case of this check): the filter has no effect.", ev,
            pitfall="sampler-filter-no-effect")


def _sets(lp: np.ndarray, top_p: float) -> list[set[int]]:
    """Supports of the accepted conventions and of the off-by-one mistake."""
    ranked, m = _ranked(lp), _nucleus(lp, top_p)
    return [set(ranked[:m]), set(ranked[:max(m - 1, 1)]), set(ranked[:m + 1])]


def _ev(case, mode, counts, lp, top_p) -> dict:
    ranked = _ranked(lp)
    return {"case": case, "draws": mode, "top_p": top_p, "counts": counts.tolist(),
            "tokens_by_probability": ranked,
            "probabilities": np.round(np.exp(lp), 3).tolist(),
            "nucleus": ranked[:_nucleus(lp, top_p)]}
