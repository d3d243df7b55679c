"""Day 3.4 -- speculative decoding: greedy verification (``verify_greedy``), the sampling
rule (``speculative_accept``) and ``speculative_generate`` with a draft model, two caches
and rewinds.

Oracles: the verification and the sampling rule written out in numpy; the output
distribution of the sampling rule computed exactly (p itself, and what each catalogued
mistake turns it into) and compared with the learner's draws by a chi-square test; the
target generating greedily on its own (``greedy_alone`` over week 2's ``OracleQwen2``, an
mlx_lm Qwen2 with the course's call surface); and mlx_lm's own speculative decoding
(``speculative_generate_step``) on mlx_lm models.

Isolation: ``speculative_generate`` runs with the checks' models and caches
(``speculative_oracle``: the caches remember the token id of every position they hold,
and every call is logged with what the cache held), never the learner's model or cache,
so these checks judge the decoding loop alone. Drafts: the target itself (always agrees),
its first layer only (a smaller model that sometimes agrees), and scripted drafts that
agree at each position with a fixed probability (0 for never).

The target's texts end with EOS at one position only (``EosOnceRule``: ordinary tokens
follow it), so a loop that goes on after an accepted EOS produces more text instead of
more EOS tokens; each run has call limits far above what a correct loop needs, so a loop
that lost its place is stopped and diagnosed from its call log. The call logs are judged
by ``walk``: at the start of every round both caches must hold exactly the accepted
tokens at the offsets the calls are given, each round makes one target call over the
newest token and its proposals, and the next round starts after the accepted proposals
and the target's own token. Time: about 3 s for the day on the answer key, a third of it
importing ``mlx_lm.generate`` (which imports transformers) for its speculative decoding.

Statistics (spec-sampling-distribution): 20 000 draws per case with fixed seeds, a
chi-square goodness-of-fit test at ALPHA = 1e-5 (a correct rule fails by chance about once
in 100 000 seeds; the catalogued mistakes are off by hundreds of standard deviations).
The draws are the checks' own (token from q, u, u_resample), so the learner's rule is a
pure function of them; exact token-by-token agreement is only asked in spec-accept-rule,
on uniforms kept clear of the rule's boundaries.
"""

from __future__ import annotations

import inspect
import math

import mlx.core as mx
import numpy as np

from ..harness import CheckFailed, check, measure, merge_evidence
from ..week1.tiny_tokenizer import CharTokenizer
from ..week2.serving_oracle import (
    EOS,
    VOCAB,
    OracleQwen2,
    RunawayError,
    greedy_alone,
    tiny_model,
)
from .speculative_oracle import NO_EOS, EosOnceRule, ScriptedDraft, SpecModel

VERIFY = "speculative.verify_greedy"
ACCEPT = "speculative.speculative_accept"
GENERATE = "speculative.speculative_generate"


# --------------------------------------------------------------------------- task 1


def verify_oracle(draft, picks, *, shift=0, all_matches=False):
    """(n, next) from the target's greedy picks (one per row); ``shift=1`` compares d_i
    with the row after its own (spec-verify-misaligned), ``all_matches`` counts every
    agreeing proposal, not only the leading run (spec-accept-after-rejection)."""
    if all_matches:
        n = sum(int(d == t) for d, t in zip(draft, picks))
    else:
        n = 0
        while n < len(draft) and n + shift < len(picks) and draft[n] == picks[n + shift]:
            n += 1
    return np.array([n, picks[n]], dtype=np.float64)


# (k, how the proposals relate to the target's picks t_0..t_k): "x" is a token the target
# did not pick there.
VERIFY_CASES = [
    (4, "t0 t1 t2 t3"),     # all accepted: the bonus token t4
    (4, "x t1 t2 t3"),      # rejected at once, later ones agree
    (4, "t0 t1 x t3"),      # rejected in the middle
    (4, "t1 t2 t3 t4"),     # every proposal is the pick of the row after it
    (3, "t0 t1 x"),         # rejected at the last proposal
    (1, "t0"),              # one proposal, accepted
]


@check("spec-verify-greedy", 1,
       "verify_greedy: accepted proposals and the target's next token",
       symbols=(VERIFY,))
def spec_verify_greedy(ctx):
    verify = ctx.symbol(VERIFY)
    rng = np.random.default_rng(3401)
    V = 11
    evs = []
    for k, pattern in VERIFY_CASES:
        picks = [int(t) for t in rng.permutation(V)[:k + 1]]  # distinct picks per row
        logits = rng.normal(0.0, 1.0, (k + 1, V)).astype(np.float32)
        logits[np.arange(k + 1), picks] = 6.0
        draft = []
        for i, w in enumerate(pattern.split()):
            if w == "x":
                draft.append(next(t for t in range(V) if t not in picks))
            else:
                draft.append(picks[int(w[1:])])
        case = (f"k = {k}, the target's greedy picks per row {picks}, proposals {draft}")
        got = ctx.call(verify, list(draft), mx.array(logits))
        try:
            got_arr = np.array([int(got[0]), int(got[1])], dtype=np.float64)
        except (TypeError, IndexError, ValueError):
            raise CheckFailed(f"[{case}] verify_greedy returned {got!r}; expected a pair "
                              "(n accepted, next token).", {"case": case}) from None
        want = verify_oracle(draft, picks)
        evs.append(ctx.expect_close(
            got_arr, want, what="(accepted, next token)", case=case, rtol=0, atol=0,
            candidates={
                "spec-verify-misaligned": lambda d=draft, p=picks: verify_oracle(d, p, shift=1),
                "spec-accept-after-rejection": lambda d=draft, p=picks: verify_oracle(
                    d, p, all_matches=True)}))
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 2


def accept_oracle(p, q, x, u, u2, *, rule="ratio", resample="residual"):
    """The rule in numpy, row by row: (accepted, out). ``rule="p>=q"`` accepts exactly
    where p(x) >= q(x) (spec-accept-if-p-ge-q); ``resample="p"`` redraws from p itself
    (spec-resample-from-p)."""
    acc, out = [], []
    for pi, qi, xi, ui, u2i in zip(p, q, x, u, u2):
        a = (pi[xi] >= qi[xi]) if rule == "p>=q" else (ui < pi[xi] / qi[xi])
        r = np.maximum(pi - qi, 0.0) if resample == "residual" else pi.copy()
        cdf = np.cumsum(r / r.sum()) if r.sum() > 0 else np.ones_like(r)
        acc.append(bool(a))
        out.append(int(xi) if a else int(min(np.searchsorted(cdf, u2i, side="right"),
                                             len(pi) - 1)))
    return np.array(acc), np.array(out)


# One hand-made distribution pair: each row separates one mistake from the right rule.
P6 = np.array([0.30, 0.25, 0.20, 0.15, 0.06, 0.04])
Q6 = np.array([0.10, 0.40, 0.10, 0.30, 0.05, 0.05])
# (proposal, u, u_resample)
HAND_ROWS = [(1, 0.30, 0.50), (1, 0.90, 0.80), (0, 0.99, 0.10), (3, 0.70, 0.97),
             (3, 0.20, 0.10), (5, 0.85, 0.40)]


def _random_rows(rng, n, V):
    """Random p, q and draws, each uniform kept 1e-3 away from the value the rule compares
    it with, so conventions at the boundary (< or <=) cannot matter."""
    p = rng.dirichlet(np.ones(V), size=n)
    q = rng.dirichlet(np.ones(V), size=n)
    x = np.array([rng.choice(V, p=qi) for qi in q])
    u, u2 = rng.random(n), rng.random(n)
    for i in range(n):
        ratio = p[i, x[i]] / q[i, x[i]]
        while abs(u[i] - ratio) < 1e-3:
            u[i] = rng.random()
        r = np.maximum(p[i] - q[i], 0)
        cdf = np.cumsum(r / r.sum())
        while np.min(np.abs(cdf - u2[i])) < 1e-3:
            u2[i] = rng.random()
    return p, q, x, u, u2


def _run_accept(ctx, fn, p, q, x, u, u2, case):
    f32 = mx.float32
    got = ctx.call(fn, mx.array(p, dtype=f32), mx.array(q, dtype=f32),
                   mx.array(x, dtype=mx.int32), mx.array(u, dtype=f32), mx.array(u2, dtype=f32))
    try:
        acc, out = got
        acc = np.array(acc).reshape(-1).astype(bool)
        out = np.array(out).reshape(-1).astype(np.int64)
    except (TypeError, ValueError):
        raise CheckFailed(f"[{case}] speculative_accept returned {type(got).__name__}; "
                          "expected a pair (accepted (N,) bool, out (N,) int32).",
                          {"case": case}) from None
    if acc.shape != (len(x),) or out.shape != (len(x),):
        raise CheckFailed(f"[{case}] speculative_accept returned {acc.size} accepted flags and "
                          f"{out.size} tokens for {len(x)} positions.", {"case": case})
    return acc, out


def _flat(acc, out):
    return np.concatenate([acc.astype(np.float64), out.astype(np.float64)])


@check("spec-accept-rule", 2,
       "speculative_accept: which proposals are kept, and the replacement drawn for the others",
       symbols=(ACCEPT,))
def spec_accept_rule(ctx):
    fn = ctx.symbol(ACCEPT)
    rng = np.random.default_rng(3402)
    n = len(HAND_ROWS)
    hand = (np.tile(P6, (n, 1)), np.tile(Q6, (n, 1)), np.array([r[0] for r in HAND_ROWS]),
            np.array([r[1] for r in HAND_ROWS]), np.array([r[2] for r in HAND_ROWS]))
    cases = [(f"p = {P6.tolist()}, q = {Q6.tolist()}, (proposal, u, u_resample) per row "
              f"{HAND_ROWS}", hand),
             ("64 positions, random p and q over 9 tokens", _random_rows(rng, 64, 9))]
    evs = []
    for case, (p, q, x, u, u2) in cases:
        acc, out = _run_accept(ctx, fn, p, q, x, u, u2, case)
        want = _flat(*accept_oracle(p, q, x, u, u2))
        evs.append(ctx.expect_close(
            _flat(acc, out), want, what="(accepted flags, then output tokens)", case=case,
            rtol=0, atol=0, candidates={
                "spec-accept-if-p-ge-q": _flat(*accept_oracle(p, q, x, u, u2, rule="p>=q")),
                "spec-resample-from-p": _flat(*accept_oracle(p, q, x, u, u2, resample="p"))}))
    return merge_evidence(evs)


ALPHA_Z = 4.264890793922602  # the standard normal quantile of 1 - 1e-5
N_DRAWS = 20000


def chi2_fit(counts: np.ndarray, probs: np.ndarray) -> dict:
    """Chi-square goodness of fit at ALPHA = 1e-5 (Wilson-Hilferty critical value); a count
    where the probability is 0 fails outright."""
    n = counts.sum()
    if np.any(counts[probs <= 1e-12] > 0):
        return {"fits": False, "chi2": float("inf")}
    keep = probs > 1e-12
    exp = n * probs[keep] / probs[keep].sum()
    stat = float(((counts[keep] - exp) ** 2 / exp).sum())
    df = max(int(keep.sum()) - 1, 1)
    c = 2.0 / (9.0 * df)
    crit = df * (1.0 - c + ALPHA_Z * math.sqrt(c)) ** 3
    return {"fits": stat <= crit, "chi2": round(stat, 1), "critical": round(crit, 1), "df": df}


def output_distribution(p, q, *, rule="ratio", resample="residual"):
    """The exact distribution of the rule's output when the proposal is drawn from q."""
    if rule == "ratio":
        kept = np.minimum(p, q)
    else:  # accepted exactly where p >= q
        kept = np.where(p >= q, q, 0.0)
    rejected = 1.0 - kept.sum()
    r = np.maximum(p - q, 0.0) if resample == "residual" else p
    return kept + rejected * r / r.sum()


# (p, q): a draft too sure of token 0 and blind to token 3; a draft close to the target.
DIST_CASES = [
    (np.array([0.10, 0.30, 0.25, 0.20, 0.15]), np.array([0.45, 0.30, 0.10, 0.0001, 0.1499])),
    (np.array([0.40, 0.30, 0.20, 0.10]), np.array([0.30, 0.35, 0.15, 0.20])),
]


@check("spec-sampling-distribution", 2,
       "speculative_accept draws its tokens from the target's distribution, whatever the draft's",
       symbols=(ACCEPT,))
def spec_sampling_distribution(ctx):
    fn = ctx.symbol(ACCEPT)
    rng = np.random.default_rng(3403)
    evs = []
    for p, q in DIST_CASES:
        V = len(p)
        x = rng.choice(V, size=N_DRAWS, p=q / q.sum())
        u, u2 = rng.random(N_DRAWS), rng.random(N_DRAWS)
        case = f"p = {p.tolist()}, q = {q.tolist()}, {N_DRAWS} proposals drawn from q"
        acc, out = _run_accept(ctx, fn, np.tile(p, (N_DRAWS, 1)), np.tile(q, (N_DRAWS, 1)),
                               x, u, u2, case)
        if out.min() < 0 or out.max() >= V:
            raise CheckFailed(f"[{case}] speculative_accept returned token {int(out.max())}, "
                              f"outside the vocabulary [0, {V}).", {"case": case})
        counts = np.bincount(out, minlength=V).astype(np.float64)
        fit = chi2_fit(counts, p)
        ev = {"case": case, "frequencies": np.round(counts / N_DRAWS, 4).tolist(),
              "target_p": p.tolist(), "accepted_fraction": round(float(acc.mean()), 4),
              "expected_accepted_fraction": round(float(np.minimum(p, q).sum()), 4), **fit}
        if not fit["fits"]:
            mistakes = {
                "spec-accept-if-p-ge-q": output_distribution(p, q, rule="p>=q"),
                "spec-resample-from-p": output_distribution(p, q, resample="p")}
            fits = [pit for pit, dist in mistakes.items()
                    if not np.allclose(dist, p, atol=0.01) and chi2_fit(counts, dist)["fits"]]
            raise CheckFailed(
                f"[{case}] the tokens speculative_accept returns are not distributed as p: "
                f"frequencies {ev['frequencies']} against p = {p.tolist()} (chi-square "
                f"{fit['chi2']} > {fit.get('critical')}; a correct rule exceeds it once in "
                "100 000 runs).", ev, pitfall=fits[0] if len(fits) == 1 else None)
        evs.append(ev)
    return {"cases": len(evs), "accepted_fraction": [e["accepted_fraction"] for e in evs],
            "chi2": [e["chi2"] for e in evs]}


# --------------------------------------------------------------------------- task 3


def _tok():
    return CharTokenizer(VOCAB)


# The target's end: EOS exactly once, at a length that depends on the text, well past the
# proposals of several rounds (serving_oracle.EosRule's idea, with nothing but ordinary
# tokens after EOS, so text kept past an accepted EOS shows).
RULE = EosOnceRule(early=20, late=30)


def _drafts(m):
    """name -> a fresh draft. The first layer only ("shallow") accepts about half to
    three quarters of its proposals on these prompts."""
    return {
        "the target itself (always agrees)": lambda: SpecModel(m, "draft", eos_rule=RULE),
        "the target's first layer only (sometimes agrees)":
            lambda: SpecModel(m, "draft", layers=1, eos_rule=RULE),
        "a draft that never agrees": lambda: ScriptedDraft(m, 0.0, 11, eos_rule=RULE),
        "a draft agreeing at 70% of positions": lambda: ScriptedDraft(m, 0.7, 12, eos_rule=RULE),
    }


# (prompt, draft name, proposal_length, max_tokens); prompts whose greedy texts have no
# near ties. 'Spec' with the first layer as draft accepts EOS among its proposals.
TEXT_SCENARIOS = [
    ("hello", "the target itself (always agrees)", 4, None),
    ("Spec", "the target's first layer only (sometimes agrees)", 4, None),
    ("draft7", "a draft that never agrees", 3, None),
    ("abc", "a draft agreeing at 70% of positions", 2, None),
    ("zq", "the target's first layer only (sometimes agrees)", 1, None),
    ("hello", "the target itself (always agrees)", 4, 7),
    ("abc", "a draft agreeing at 70% of positions", 3, 11),
]


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _generate(ctx, fn, draft, target, prompt, k, max_tokens=None, stats=None):
    tok = _tok()
    kwargs = {}
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    if stats is not None and _accepts(fn, "stats"):
        kwargs["stats"] = stats
    text = ctx.call(fn, draft, target, tok, tok, prompt, k, **kwargs)
    if not isinstance(text, str):
        raise CheckFailed(f"speculative_generate returned {type(text).__name__}, expected the "
                          "generated text (a str).", {"type": type(text).__name__})
    return text


def run_scenario(ctx, fn, target, draft, prompt, k, C, case, max_tokens=None, stats=None):
    """The learner's loop on one scenario, with call limits far above what a correct loop
    needs (a loop that lost its place may never see EOS): (text, facts, problems)."""
    n = len(C)
    target.call_limit = (k + 2) * n + 10  # one-by-one checking is slow, not endless
    draft.call_limit = (k + 2) * n + 10
    try:
        text = _generate(ctx, fn, draft, target, prompt, k, max_tokens, stats)
    except RunawayError as exc:
        facts, problems = walk(target, draft, C, k)
        raise CheckFailed(
            f"[{case}] speculative_generate did not finish: {exc.message} A correct loop "
            f"needs at most {n} target calls here." + (" " + problems[0][0] if problems
                                                       else ""),
            {"case": case, **facts}, pitfall=_first_pitfall(problems)) from None
    mine = _tok().text_to_tokens(text)
    R = None
    if mine is not None:
        R = _tok().encode(prompt) + mine + ([EOS] if max_tokens is None else [])
    facts, problems = walk(target, draft, C, k, R)
    return text, facts, problems


def _committed(prompt_ids, want_ids, ended_by_eos=True):
    return list(prompt_ids) + list(want_ids) + ([EOS] if ended_by_eos else [])


def one_off(held, C) -> bool:
    """Whether ``held`` is the accepted sequence's start with exactly one position dropped
    or one extra position kept (a rewind off by one, wherever the position went missing)."""
    n = len(held)
    for j in range(n + 1):
        if held[:j] == C[:j] and held[j:] == C[j + 1:n + 1]:
            return True  # C[j] dropped
    return any(held[:j] + held[j + 1:] == C[:n - 1] for j in range(n))


def walk(target, draft, C, k, R=None):
    """What the two logs show, judged against the committed sequence C (prompt, the
    target's greedy tokens, then EOS when it ended there). Returns (facts, problems):
    problems are (message, pitfall or None) in the order they happened. The caches are
    judged against ``R``, the sequence the learner's own text commits (C when the run gave
    no text): a cache that follows a wrong text is the text's problem, not a rewind's."""
    R = C if R is None else R
    events = sorted(target.log + draft.log, key=lambda e: e["t"])
    problems: list[tuple[str, str | None]] = []
    draft_rewound = any(sum(c.rewinds) for caches in draft.made for c in caches)
    rounds = []
    tcalls = [e for e in events if e["role"] == "target"]
    if not tcalls:
        return {"verify_calls": 0}, [("the target model was never called.", None)]
    since_target = []  # draft calls since the last target call
    last_target = None
    draft_next = None  # where the draft's next call must start within a round
    for e in events:
        if e["role"] != "target":
            fresh = not since_target
            since_target.append(e)
            if last_target is None:
                continue  # the draft's prefill: any prefix of the prompt is fine
            held, o, fed = e["held"], e["offset"], e["ids"]
            if C and C[-1] == EOS and len(held) >= len(C) and held[:len(C)] == C:
                continue  # the text has ended: what the draft sees now changes nothing
            if fresh:
                ok_held = held == R[:len(held)]
                if not ok_held or o != len(held) or any(x != len(held) for x in e["offsets"]):
                    if not ok_held and not draft_rewound:
                        pit = "spec-draft-not-rewound"
                        why = "it still holds proposals the target rejected (it is never rewound)"
                    elif (not ok_held and one_off(held, R)) or (
                            ok_held and abs(o - len(held)) == 1):
                        pit = "spec-rewind-off-by-one"
                        why = ("it holds one position too many or too few for the offset the "
                               "call is given")
                    else:
                        pit, why = None, "it does not hold exactly the accepted tokens"
                    problems.append((
                        f"At the start of a round the draft is called at offset {o} with "
                        f"tokens {fed}, but its cache holds {len(held)} positions "
                        f"(tokens {held[-6:]} at the end; the accepted sequence there is "
                        f"{R[max(0, len(held) - 6):len(held)]}): {why}.", pit))
                elif fed != R[o:o + len(fed)] and o + len(fed) <= len(R):
                    # fed from one position further on: the cache lost an accepted token
                    skipped = fed == R[o + 1:o + 1 + len(fed)]
                    problems.append((
                        f"At the start of a round the draft is fed {fed} at offset {o}; the "
                        f"accepted tokens there are {R[o:o + len(fed)]}"
                        + (": the token at that position is never fed to it." if skipped
                           else "."), "spec-rewind-off-by-one" if skipped else None))
            elif draft_next is not None and o != draft_next:
                problems.append((f"Within a round the draft is called at offset {o}, but its "
                                 f"previous call ended at position {draft_next}.",
                                 "spec-rewind-off-by-one" if abs(o - draft_next) == 1
                                 else None))
            draft_next = o + len(fed)
            continue
        # a target call
        held, o, fed = e["held"], e["offset"], e["ids"]
        if last_target is None:
            last_target = e
            since_target = []
            continue
        if C and C[-1] == EOS and o >= len(C) and held[:len(C)] == C:
            problems.append((
                f"The target is called at offset {o}, after EOS was accepted at position "
                f"{len(C) - 1}: generation went on past the end of the text.",
                "spec-eos-in-draft-ignored"))
            break
        if not since_target and rounds and rounds[-1].get("one_by_one"):
            # The round's proposals are being checked one target call at a time: this
            # call continues the same round.
            r = rounds[-1]
            r["fed"] = r["fed"] + fed
            r["proposed"] = len(r["fed"]) - 1
            proposals = r["fed"][1:]
            n = 0
            while (n < len(proposals) and r["offset"] + 1 + n < len(C)
                   and proposals[n] == C[r["offset"] + 1 + n]):
                n += 1
            r["accepted"] = n
            last_target = e
            continue
        one_by_one = bool(since_target) and len(fed) == 1 and k > 0
        if one_by_one and not any(p == "spec-verify-one-by-one" for _, p in problems):
            problems.append(("The draft proposed, but the target's next call feeds only the "
                             "newest token: the proposals are checked one target call at a "
                             "time, instead of all in one call.", "spec-verify-one-by-one"))
        ok_held = held == R[:len(held)]
        if not ok_held or o != len(held) or any(x != len(held) for x in e["offsets"]):
            if ok_held and abs(o - len(held)) == 1 or (not ok_held and one_off(held, R)):
                pit = "spec-rewind-off-by-one"
            else:
                pit = None
            problems.append((
                f"The target is called at offset {o} with tokens {fed}, but its cache holds "
                f"{len(held)} positions (ending {held[-6:]}; the accepted sequence there is "
                f"{R[max(0, len(held) - 6):len(held)]}).", pit))
        proposals = fed[1:]
        if len(proposals) > k:
            problems.append((f"A round checks {len(proposals)} proposals; proposal_length is "
                             f"{k}.", None))
        n = 0
        while n < len(proposals) and o + 1 + n < len(C) and proposals[n] == C[o + 1 + n]:
            n += 1
        rounds.append({"offset": o, "fed": fed, "accepted": n, "proposed": len(proposals),
                       "one_by_one": one_by_one})
        last_target = e
        since_target = []
        draft_next = None
    # Each round must move on by the last token, the accepted proposals and the target's
    # own next token (its correction, or the bonus when every proposal was accepted).
    for a, b in zip(rounds, rounds[1:]):
        want = a["offset"] + 1 + a["accepted"]
        if (b["offset"] != want and b["fed"] and b["offset"] < len(C)
                and b["fed"][0] == C[b["offset"]]):
            all_in = a["accepted"] == a["proposed"] > 0
            pit = ("spec-no-bonus-token" if all_in and b["offset"] == want - 1 else None)
            problems.append((
                f"A round at offset {a['offset']} fed {a['fed']}: {a['accepted']} of its "
                f"{a['proposed']} proposals agree with the target, so the next round should "
                f"start at offset {want}; it starts at {b['offset']}.", pit))
            break
    proposed = sum(r["proposed"] for r in rounds)
    accepted = sum(r["accepted"] for r in rounds)
    facts = {"target_calls": len(tcalls), "draft_calls": len(draft.log),
             "verify_calls": len(rounds), "proposed": proposed, "accepted": accepted,
             "acceptance_rate": round(accepted / proposed, 3) if proposed else None}
    return facts, problems


def _greedy(m, prompt_ids, rule=RULE):
    return greedy_alone(OracleQwen2(m, eos_rule=rule), prompt_ids, 10**6)


def _first_pitfall(problems):
    return next((p for _, p in problems if p), None)


@check("spec-greedy-text", 3,
       "speculative_generate gives exactly the target's own greedy text, with any draft",
       symbols=(GENERATE,))
def spec_greedy_text(ctx):
    fn = ctx.symbol(GENERATE)
    tok = _tok()
    m = tiny_model()
    drafts = _drafts(m)
    notes = []
    for prompt, dname, k, max_tokens in TEXT_SCENARIOS:
        ids = tok.encode(prompt)
        want_ids = _greedy(m, ids)
        want = tok.decode(want_ids[:max_tokens])
        target = SpecModel(m, "target", eos_rule=RULE)
        draft = drafts[dname]()
        case = f"prompt {prompt!r}, {dname}, proposal_length={k}" + (
            f", max_tokens={max_tokens}" if max_tokens else "")
        got, facts, problems = run_scenario(ctx, fn, target, draft, prompt, k,
                                            _committed(ids, want_ids), case,
                                            max_tokens=max_tokens)
        if got != want:
            pit = _first_pitfall(problems)
            if pit is None and got.startswith(want) and len(got) > len(want) and any(
                    EOS in e["ids"][1:] for e in target.log):
                pit = "spec-eos-in-draft-ignored"
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                      min(len(got), len(want)))
            raise CheckFailed(
                f"[{case}] the text differs from what the target generates greedily on its "
                f"own: got {got!r}, expected {want!r} (first difference at character {at})."
                + (" " + problems[0][0] if problems else ""),
                {"case": case, "got": got, "expected": want, **facts}, pitfall=pit)
        notes.append({"case": case, **facts, "tokens": len(want_ids[:max_tokens])})
    notes.append(_mlx_lm_part(ctx, fn, m))
    return {"cases": len(notes), "runs": notes}


MLX_LM_PROMPT, MLX_LM_K, MLX_LM_MAX = "rewind", 3, 24


def _mlx_lm_part(ctx, fn, m):
    """mlx_lm's own speculative decoding on mlx_lm models (a target and a separate random
    one-layer draft): the same tokens, up to max_tokens or EOS."""
    from ..harness import import_mlx_lm
    from ..week1.tiny_models import tiny_qwen2

    case = (f"prompt {MLX_LM_PROMPT!r}, a separate random one-layer Qwen2 as draft, "
            f"proposal_length={MLX_LM_K}, max_tokens={MLX_LM_MAX}, against mlx_lm's "
            "speculative_generate_step")
    gen = import_mlx_lm("mlx_lm.generate")
    small = tiny_qwen2(seed=5, tie_word_embeddings=False, quantize=True, vocab=VOCAB,
                       hidden=64, intermediate=128, layers=1, heads=4, kv_heads=2,
                       group_size=64, embed_scale=0.7)
    tok = _tok()
    ids = tok.encode(MLX_LM_PROMPT)
    ref = [int(t) for t, _, _ in gen.speculative_generate_step(
        mx.array(ids), m, small, num_draft_tokens=MLX_LM_K, max_tokens=MLX_LM_MAX)]
    if EOS in ref:
        ref = ref[:ref.index(EOS)]
    want = tok.decode(ref)
    target, draft = SpecModel(m, "target"), SpecModel(small, "draft")
    got, facts, problems = run_scenario(ctx, fn, target, draft, MLX_LM_PROMPT, MLX_LM_K,
                                        list(ids) + ref + [EOS], case, max_tokens=MLX_LM_MAX)
    if got != want:
        raise CheckFailed(f"[{case}] got {got!r}, mlx_lm's speculative decoding gives {want!r}."
                          + (" " + problems[0][0] if problems else ""),
                          {"case": case, "got": got, "expected": want, **facts},
                          pitfall=_first_pitfall(problems))
    return {"case": case, **facts}


# (prompt, draft name, proposal_length, max_tokens)
REWIND_SCENARIOS = [
    ("Spec", "the target's first layer only (sometimes agrees)", 4, None),
    ("abc", "a draft agreeing at 70% of positions", 3, None),
    ("hello", "the target itself (always agrees)", 4, None),
]


@check("spec-cache-rewind", 3,
       "both caches hold exactly the accepted tokens at the start of every round",
       symbols=(GENERATE,))
def spec_cache_rewind(ctx):
    fn = ctx.symbol(GENERATE)
    tok = _tok()
    m = tiny_model()
    drafts = _drafts(m)
    runs = []
    for prompt, dname, k, _ in REWIND_SCENARIOS:
        ids = tok.encode(prompt)
        want_ids = _greedy(m, ids)
        target, draft = SpecModel(m, "target", eos_rule=RULE), drafts[dname]()
        case = f"prompt {prompt!r}, {dname}, proposal_length={k}"
        _, facts, problems = run_scenario(ctx, fn, target, draft, prompt, k,
                                          _committed(ids, want_ids), case)
        rewinds = [e for e in problems if e[1] in (None, "spec-rewind-off-by-one",
                                                   "spec-draft-not-rewound")
                   and ("cache holds" in e[0] or "offset" in e[0])]
        if rewinds:
            msg, pit = rewinds[0]
            raise CheckFailed(f"[{case}] {msg}", {"case": case, **facts}, pitfall=pit)
        runs.append({"case": case, **facts})
    return {"cases": len(runs), "runs": runs}


# (prompt, draft name, proposal_length)
COUNT_SCENARIOS = [
    ("hello", "the target itself (always agrees)", 4),
    ("abc", "a draft agreeing at 70% of positions", 3),
    ("draft7", "a draft that never agrees", 2),
]


@check("spec-one-target-call", 3,
       "one target call per round, and each round moves on by exactly what it accepted",
       symbols=(GENERATE,))
def spec_one_target_call(ctx):
    fn = ctx.symbol(GENERATE)
    tok = _tok()
    m = tiny_model()
    drafts = _drafts(m)
    runs = []
    for prompt, dname, k in COUNT_SCENARIOS:
        ids = tok.encode(prompt)
        want_ids = _greedy(m, ids)
        target, draft = SpecModel(m, "target", eos_rule=RULE), drafts[dname]()
        case = f"prompt {prompt!r}, {dname}, proposal_length={k}"
        stats: dict = {}
        _, facts, problems = run_scenario(ctx, fn, target, draft, prompt, k,
                                          _committed(ids, want_ids), case, stats=stats)
        counting = [p for p in problems if p[1] in ("spec-verify-one-by-one",
                                                    "spec-no-bonus-token")
                    or "next round should" in p[0] or "proposals; proposal_length" in p[0]]
        if counting:
            msg, pit = counting[0]
            raise CheckFailed(f"[{case}] {msg}", {"case": case, **facts}, pitfall=pit)
        plain = len(want_ids) + 1  # plain decoding: the prefill, then one call per token
        facts.update({"plain_decoding_target_calls": plain,
                      "target_call_ratio": round(plain / facts["target_calls"], 2),
                      "tokens": len(want_ids)})
        if stats:
            mine = {key: facts[key] for key in ("target_calls", "proposed", "accepted")}
            theirs = {key: stats.get(key) for key in mine}
            rate = stats.get("acceptance_rate")
            want_rate = facts["accepted"] / facts["proposed"] if facts["proposed"] else 0.0
            if rate is not None and not (isinstance(rate, (int, float))
                                         and abs(float(rate) - want_rate) < 1e-6):
                mine["acceptance_rate"] = round(want_rate, 4)
                theirs["acceptance_rate"] = rate
            if theirs != mine:
                raise CheckFailed(
                    f"[{case}] the stats report {theirs}; the models saw {mine} (target calls "
                    "include the prefill; proposals are the draft tokens the target checked; "
                    "the acceptance rate is accepted over proposed).",
                    {"case": case, **facts, "stats": stats})
            facts["stats_reported"] = True
        runs.append({"case": case, **facts})
    return {"cases": len(runs), "runs": runs}


# --------------------------------------------------------------------------- predict


MEASURE_AGREE, MEASURE_K, MEASURE_SEED, MEASURE_TOKENS = 0.8, 4, 11, 300


@measure("tokens-per-target-call", unit="tokens per target call")
def measure_tokens_per_target_call(ctx):
    """The learner's speculative_generate with a draft that agrees with the target at each
    position with probability 0.8, proposal_length 4, for 300 tokens: generated tokens
    after the prefill's first one, per target call after the prefill."""
    fn = ctx.symbol(GENERATE)
    m = tiny_model()
    target = SpecModel(m, "target", eos_rule=NO_EOS)
    draft = ScriptedDraft(m, MEASURE_AGREE, MEASURE_SEED, eos_rule=NO_EOS)
    target.call_limit = 2 * MEASURE_TOKENS + 10  # a loop that never stops is reported
    draft.call_limit = (MEASURE_K + 2) * MEASURE_TOKENS + 10
    text = _generate(ctx, fn, draft, target, "hello", MEASURE_K, max_tokens=MEASURE_TOKENS)
    calls = len(target.log) - 1
    if calls <= 0:
        raise ValueError("the target was called only for the prefill")
    return (len(text) - 1) / calls


__all__ = ["walk", "verify_oracle", "accept_oracle", "output_distribution"]
