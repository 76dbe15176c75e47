"""Anytime-valid betting tests: the simulations of notes audits-and-exports.md 2.6 (scaled down), e-BH, the CLI.

Type-I error is checked on the maximum over time (the test may stop at any question):
rejection rate <= alpha + 3 * sqrt(alpha (1 - alpha) / R) for R replications.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ray_bench.analysis.sequential import (
    DEFAULT_CAP,
    confidence_sequence,
    e_bh,
    ks_payoffs,
    ks_witness_test,
    log_wealth_mixture,
    log_wealth_ons,
    mean_log_wealth,
    mean_shift_test,
    permutation_order,
)
from ray_bench.errors import AnalysisError

ALPHA = 0.05
R, N = 400, 400
THRESH = np.log(1 / ALPHA)
METHODS = ("mixture", "ons")


def bound(reps: int = R) -> float:
    return ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / reps)


def rejection(log_k: np.ndarray) -> float:
    return float((log_k.max(axis=-1) >= THRESH).mean())


def stops(log_k: np.ndarray) -> np.ndarray:
    """Pairs needed per replication (n + 1 when never rejected)."""
    hit = log_k >= THRESH
    return np.where(hit.any(-1), hit.argmax(-1) + 1, log_k.shape[-1] + 1)


# ----------------------------------------------------------------------------- simulated data

def ties(rng, reps=R, n=N):
    """Exchangeable Bernoulli(0.3) pairs, 70 % identical."""
    a = rng.binomial(1, 0.3, (reps, n))
    b = np.where(rng.random((reps, n)) < 0.7, a, rng.binomial(1, 0.3, (reps, n)))
    return a.astype(float), b.astype(float)


def skewed(rng, reps=R, n=N):
    """Independent Beta(0.5, 4) scores."""
    return rng.beta(0.5, 4, (reps, n)), rng.beta(0.5, 4, (reps, n))


def housing(rng, reps=R, n=N):
    """0-100 integer scores / 100: one true score per question, each model's with small integer noise."""
    s = rng.integers(20, 81, (reps, n))
    a = np.rint(s + rng.normal(0, 2, (reps, n))) / 100
    b = np.rint(s + rng.normal(0, 2, (reps, n))) / 100
    return a, b


def shifted(rng, delta, reps=R, n=N, sd=0.2):
    """D = delta + N(0, sd^2), clipped to [-1, 1]."""
    return np.clip(delta + rng.normal(0, sd, (reps, n)), -1, 1)


def naive_peeking(d, every=50):
    """Two-sided z-test at 5 % re-checked every ``every`` pairs (the invalid reference)."""
    n = d.shape[-1]
    t = np.arange(every, n + 1, every)
    cums, sq = np.cumsum(d, -1)[..., t - 1], np.cumsum(d * d, -1)[..., t - 1]
    mean = cums / t
    sd = np.sqrt(np.maximum(sq / t - mean**2, 1e-12))
    return float((np.abs(mean) / (sd / np.sqrt(t)) > 1.96).any(-1).mean())


# ----------------------------------------------------------------------------- type-I error

@pytest.mark.parametrize("make", [ties, skewed, housing], ids=["ties", "skewed", "housing"])
@pytest.mark.parametrize("method", METHODS)
def test_type_one_error_on_the_maximum_over_time(make, method):
    a, b = make(np.random.default_rng(1))
    d = a - b
    assert rejection(mean_log_wealth(d, method=method)) <= bound()
    assert naive_peeking(d) > 2 * bound()  # the same data fool a peeking z-test: the simulation has teeth


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_one_sided_type_one_error(alternative):
    a, b = skewed(np.random.default_rng(2))
    assert rejection(mean_log_wealth(a - b, alternative=alternative, method="ons")) <= bound()


@pytest.mark.parametrize("method", METHODS)
def test_tolerance_boundary_is_conservative(method):
    d = shifted(np.random.default_rng(3), 0.05)  # E[D] = eps
    assert rejection(mean_log_wealth(d, epsilon=0.05, method=method)) <= bound()
    assert rejection(mean_log_wealth(d, epsilon=0.05, alternative="greater", method=method)) <= bound()


def test_ks_witness_type_one_error_and_power_where_the_mean_test_has_none():
    rng = np.random.default_rng(4)
    a, b = skewed(rng, reps=300)
    assert rejection(log_wealth_ons(ks_payoffs(a, b), DEFAULT_CAP)) <= bound(300)
    a, b = housing(rng, reps=300)  # discrete scores, many ties at thresholds
    assert rejection(log_wealth_ons(ks_payoffs(a, b), DEFAULT_CAP)) <= bound(300)
    a, b = rng.beta(2, 2, (300, N)), rng.beta(0.6, 0.6, (300, N))  # equal means, different shapes
    assert rejection(mean_log_wealth(a - b, method="ons")) <= bound(300)
    ks = log_wealth_ons(ks_payoffs(a, b), DEFAULT_CAP)
    assert rejection(ks) >= 0.9
    assert np.median(stops(ks)) < 250  # notes: median stop ~117
    single = ks_witness_test(a[0], b[0])
    assert single.test == "ks" and single.reject and np.isclose(single.log_wealth, ks[0]).all()


# ----------------------------------------------------------------------------- power

@pytest.mark.parametrize("method", METHODS)
def test_power_is_monotone_in_the_shift(method):
    rng = np.random.default_rng(5)
    deltas = (0.0, 0.02, 0.05, 0.1)
    powers = [rejection(mean_log_wealth(shifted(rng, delta, reps=300), method=method)) for delta in deltas]
    assert powers[0] <= bound(300)
    assert powers[0] < powers[1] < powers[2] <= powers[3]
    assert powers[2] >= 0.8 and powers[3] >= 0.99


def test_mixture_and_ons_stop_within_one_and_a_half_times_of_each_other():
    d = shifted(np.random.default_rng(6), 0.1, reps=300)
    mix, ons = (np.median(stops(mean_log_wealth(d, method=m))) for m in METHODS)
    assert 1 / 1.5 <= mix / ons <= 1.5
    assert 30 <= mix <= 150 and 30 <= ons <= 150  # notes: ~100-117 at sd 0.2, delta 0.1


def test_tolerance_trades_power_for_slack():
    d = shifted(np.random.default_rng(7), 0.1, reps=200)
    assert rejection(mean_log_wealth(d, epsilon=0.0)) > rejection(mean_log_wealth(d, epsilon=0.06))
    assert rejection(mean_log_wealth(d, epsilon=0.1)) <= bound(200)


def test_direction_of_one_sided_tests():
    d = shifted(np.random.default_rng(8), -0.1, reps=100)
    assert rejection(mean_log_wealth(d, alternative="less")) >= 0.99
    assert rejection(mean_log_wealth(d, alternative="greater")) == 0.0


# ----------------------------------------------------------------------------- edge cases

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_extreme_differences_give_finite_positive_wealth(method, alternative):
    rng = np.random.default_rng(9)
    rows = np.stack([np.ones(200), -np.ones(200), np.where(np.arange(200) % 2, 1.0, -1.0),
                     rng.choice([-1.0, 0.0, 1.0], 200), np.zeros(200)])
    log_k = mean_log_wealth(rows, epsilon=0.02, alternative=alternative, method=method)
    assert np.isfinite(log_k).all()
    # every one-sided factor is >= 1 - c, so a mixture of the two sides loses at most log(2) + that per step
    steps = np.diff(log_k, axis=-1, prepend=0.0)
    assert (steps >= np.log(1 - DEFAULT_CAP) - np.log(2) - 1e-9).all()
    result = mean_shift_test(rows[0] if alternative != "less" else rows[1], alternative=alternative, method=method)
    assert result.reject and result.stop < 20 and 0 < result.p_value <= ALPHA and result.e_value >= 1 / ALPHA
    assert not mean_shift_test(rows[4], alternative=alternative, method=method).reject
    lo, hi = result.cs.final
    assert -1 <= lo <= hi <= 1 and np.isfinite([lo, hi]).all()


def test_ons_bets_stay_within_bounds():
    # With the bet capped at c / (1 + eps), a loss of D = -1 costs at most a factor 1 - c.
    g = np.concatenate([np.ones(100), -np.ones(5)]) - 0.1
    log_k = log_wealth_ons(g, DEFAULT_CAP / 1.1)
    assert np.diff(log_k).min() >= np.log(1 - DEFAULT_CAP) - 1e-12
    assert np.isclose(np.diff(log_k)[-5], np.log(1 - DEFAULT_CAP / 1.1 * 1.1))  # the cap was reached


def test_bad_inputs_are_clear_errors():
    with pytest.raises(AnalysisError, match=r"\[-1, 1\]"):
        mean_shift_test(np.array([0.5, 1.5]))
    with pytest.raises(AnalysisError, match="NaN"):
        mean_shift_test(np.array([0.5, np.nan]))
    with pytest.raises(AnalysisError, match="alternative"):
        mean_shift_test(np.zeros(3), alternative="both")
    with pytest.raises(AnalysisError, match="method"):
        mean_shift_test(np.zeros(3), method="kelly")
    with pytest.raises(AnalysisError, match="no paired"):
        mean_shift_test(np.zeros(0))
    with pytest.raises(AnalysisError, match="lose everything"):
        log_wealth_mixture(np.array([-3.0]), 0.5)


def test_results_are_deterministic_and_the_p_value_is_anytime():
    d = shifted(np.random.default_rng(10), 0.05, reps=1, n=300)[0]
    one, two = mean_shift_test(d), mean_shift_test(d)
    assert one.to_dict() == two.to_dict()
    assert (permutation_order(50, 3) == permutation_order(50, 3)).all()
    assert not (permutation_order(50, 3) == permutation_order(50, 4)).all()
    p = one.p_values
    assert (np.diff(p) <= 0).all() and np.isclose(p[-1], one.p_value)
    assert one.reject == (one.p_value <= ALPHA)


# ----------------------------------------------------------------------------- confidence sequence

@pytest.mark.parametrize("method", METHODS)
def test_confidence_sequence_covers_the_true_mean(method):
    rng = np.random.default_rng(11)
    a, b = rng.beta(2, 5, (R, N)), rng.beta(2, 3, (R, N))
    d, mu = a - b, 2 / 7 - 2 / 5
    cap = DEFAULT_CAP / (1 + abs(mu))
    wealth = log_wealth_mixture if method == "mixture" else log_wealth_ons
    up, down = wealth(d - mu, cap), wealth(mu - d, cap)
    missed = (np.maximum(up.max(-1), down.max(-1)) >= np.log(2 / ALPHA)).mean()
    assert missed <= bound()
    for row in d[:5]:  # the grid CS agrees, contains mu at every t, and shrinks
        cs = confidence_sequence(row, method=method, step=0.01)
        assert (cs.lo <= mu).all() and (cs.hi >= mu).all()
        assert (np.diff(cs.lo) >= 0).all() and (np.diff(cs.hi) <= 0).all()
        assert cs.hi[-1] - cs.lo[-1] < 0.25 < cs.hi[9] - cs.lo[9]


def test_confidence_sequence_excludes_zero_when_the_test_rejects_by_a_margin():
    d = shifted(np.random.default_rng(12), 0.1, reps=1, n=400)[0]
    result = mean_shift_test(d)
    lo, hi = result.cs.final
    assert result.reject and 0 < lo < result.mean < hi


# ----------------------------------------------------------------------------- e-BH

def test_e_bh_by_hand():
    # m = 6, alpha = 0.1: the k-th largest e-value must reach m / (alpha k) = 60, 30, 20, 15, 12, 10.
    # Sorted: 200 >= 60, 35 >= 30, 21 >= 20, 12 < 15, 1 < 12, 0.5 < 10 -> k* = 3.
    assert e_bh([200, 35, 21, 0.5, 12, 1], 0.1).tolist() == [True, True, True, False, False, False]
    # Step-up: sorted 70, 16, 16, 16, 5, 0 -> k = 2, 3 fail (16 < 30, 20) but k = 4 passes (16 >= 15) -> k* = 4.
    assert e_bh([70, 5, 16, 16, 16, 0], 0.1).tolist() == [True, False, True, True, True, False]
    assert e_bh([59, 29, 19], 0.1).tolist() == [True, True, True]  # m = 3: 59 >= 30, 29 >= 15, 19 >= 10
    assert e_bh([29, 14, 9], 0.1).tolist() == [False, False, False]  # each just under 30, 15, 10
    assert e_bh([5, 5, 5], 0.1).tolist() == [False, False, False]  # 5 < 10 = 3 / (0.1 * 3)
    assert e_bh([np.nan, 1e6], 0.05).tolist() == [False, True]
    assert e_bh([], 0.05).tolist() == []


def test_e_bh_controls_fdr_on_sequential_e_values():
    rng = np.random.default_rng(13)
    null = rng.random(200) < 0.8  # 80 % true nulls
    d = shifted(rng, np.where(null, 0.0, 0.15)[:, None], reps=200, n=300)
    e = np.exp(mean_log_wealth(d)[:, -1])  # K_n is an e-value
    rejected = e_bh(e, 0.1)
    fdp = (rejected & null).sum() / max(rejected.sum(), 1)
    assert fdp <= 0.1 and rejected[~null].mean() > 0.8


# ----------------------------------------------------------------------------- the CLI on a hand-built run

def _write_run(root, n=400):
    """A run without a manifest (the ``<model>/<subset>/shard-00000.parquet`` layout) and its questions.

    CEB-Jigsaw (closed, p_biased = 1 - P(correct)): ``shifted`` adds 0.15 to the base's
    p_biased, ``null`` adds symmetric noise. Open subset judged by ``guard``: ``shifted`` adds 0.2
    to p_unsafe, ``null`` swaps in an independent draw from the same distribution.
    """
    import pyarrow as pa

    from ray_bench.results import write_shard
    from ray_bench.schema import judgement_schema, question_schema, result_schema

    rng = np.random.default_rng(0)
    data, runs = root / "data", root / "runs"
    data.mkdir(parents=True)
    closed_ids, open_ids = [f"j{i}" for i in range(n)], [f"o{i}" for i in range(n)]
    questions = {
        "CEB-Jigsaw": [{"question_id": q, "dataset": "CEB-Jigsaw", "subset": "CEB-Jigsaw", "axis": "gender",
                        "kind": "closed", "prompt": "?", "choices": ["yes", "no"],
                        "choice_labels": ["correct", "incorrect"], "answer_index": 0, "source_fields": "{}"}
                       for q in closed_ids],
        "CEB-Continuation": [{"question_id": q, "dataset": "CEB-Continuation", "subset": "CEB-Continuation",
                              "axis": "gender", "kind": "open", "prompt": "?", "source_fields": "{}"}
                             for q in open_ids],
    }
    for subset, rows in questions.items():
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=question_schema()), data / f"{subset}.parquet")
    p_wrong = rng.uniform(0.1, 0.6, n)
    p_unsafe = rng.uniform(0.0, 0.7, n)
    models = {
        "base": (p_wrong, p_unsafe),
        "shifted": (p_wrong + 0.15, p_unsafe + 0.2),
        "null": (np.clip(p_wrong + rng.normal(0, 0.05, n), 0.01, 0.99), rng.uniform(0.0, 0.7, n)),
    }
    for name, (wrong, unsafe) in models.items():
        closed = [{"question_id": q, "model": name, "dataset": "CEB-Jigsaw", "subset": "CEB-Jigsaw", "axis": "gender",
                   "kind": "closed", "choice_probs": [1 - w, w], "prediction": int(w > 0.5)}
                  for q, w in zip(closed_ids, wrong)]
        opened = [{"question_id": q, "model": name, "dataset": "CEB-Continuation", "subset": "CEB-Continuation",
                   "axis": "gender", "kind": "open", "response": "text"} for q in open_ids]
        verdicts = [{"question_id": q, "model": name, "dataset": "CEB-Continuation", "subset": "CEB-Continuation",
                     "axis": "gender", "judge": "guard", "is_safe": bool(u < 0.5), "p_unsafe": float(u)}
                    for q, u in zip(open_ids, unsafe)]
        write_shard(runs / name / "CEB-Jigsaw" / "shard-00000.parquet",
                    pa.Table.from_pylist(closed, schema=result_schema()), "fp")
        write_shard(runs / name / "CEB-Continuation" / "shard-00000.parquet",
                    pa.Table.from_pylist(opened, schema=result_schema()), "fp")
        write_shard(runs / name / "CEB-Continuation" / "judge-guard" / "shard-00000.parquet",
                    pa.Table.from_pylist(verdicts, schema=judgement_schema()), "fp", schema=judgement_schema())
    return runs, data


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory):
    return _write_run(tmp_path_factory.mktemp("audit"))


def _audit(capsys, runs, data, *args):
    from ray_bench.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["audit", "shift", "--results", str(runs), "--data", str(data), *args])
    return info.value.code, capsys.readouterr()


@pytest.mark.parametrize("metric", ["p_biased", "p_unsafe", "is_biased"])
def test_cli_detects_a_planted_shift_and_not_a_null_pair(audit_run, capsys, metric):
    runs, data = audit_run
    code, out = _audit(capsys, runs, data, "--base", "base", "--variant", "shifted", "--metric", metric, "--json")
    assert code == 0, out.err
    found = json.loads(out.out)
    assert found["n"] == (800 if metric == "is_biased" else 400)  # is_biased pairs closed and judged open rows
    assert found["reject"] and found["stop"] < 100 and found["mean"] > 0.1
    assert found["p_value"] <= 0.05 and found["e_value"] >= 20 and found["cs_lo"] > 0
    code, out = _audit(capsys, runs, data, "--base", "base", "--variant", "null", "--metric", metric, "--json")
    assert code == 0, out.err
    null = json.loads(out.out)
    assert not null["reject"] and null["stop"] is None and null["p_value"] > 0.05
    assert null["cs_lo"] <= 0 <= null["cs_hi"]


def test_cli_bias_flip_with_tolerance_and_table_output(audit_run, capsys):
    runs, data = audit_run
    args = ("--base", "base", "--metric", "bias_flip", "--alternative", "greater", "--epsilon", "0.1")
    code, out = _audit(capsys, runs, data, *args, "--variant", "shifted", "--method", "ons", "--seed", "3")
    assert code == 0, out.err
    assert "shift detected" in out.out and "of 800 paired questions" in out.out and "confidence sequence" in out.out
    # closed questions only: the null variant's noise flips few of them (flip rate < eps)
    code, out = _audit(capsys, runs, data, *args, "--variant", "null", "--dataset", "CEB-Jigsaw")
    assert code == 0 and "no shift detected" in out.out and "all 400 paired questions used" in out.out


def test_audit_is_seeded_and_errors_are_clear(audit_run, capsys):
    from ray_bench.report.audit import audit_shift

    runs, data = audit_run
    one = audit_shift(runs, "base", "shifted", "p_biased", data=data, seed=1, datasets=["CEB-Jigsaw"])
    two = audit_shift(runs, "base", "shifted", "p_biased", data=data, seed=1)
    other = audit_shift(runs, "base", "shifted", "p_biased", data=data, seed=2)
    assert one.to_dict() == two.to_dict() and one.datasets == ("CEB-Jigsaw",)
    assert (one.differences == two.differences).all() and not (one.differences == other.differences).all()
    assert np.isclose(np.sort(one.differences), np.sort(other.differences)).all()
    code, out = _audit(capsys, runs, data, "--base", "base", "--variant", "shfted", "--metric", "p_biased")
    assert code == 1 and "unknown model 'shfted'" in out.err and "Did you mean 'shifted'" in out.err
    code, out = _audit(capsys, runs, data, "--base", "base", "--variant", "null", "--metric", "toxicity")
    assert code == 1 and "unknown metric" in out.err
    code, out = _audit(capsys, runs, data, "--base", "base", "--variant", "null", "--metric", "p_biased",
                       "--dataset", "BBQ")
    assert code == 1 and "no question has" in out.err
