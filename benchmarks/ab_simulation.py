"""A/B testing, proven by simulation with known truth (one command, seeded).

    A/A     no effect: each test's false-positive rate must sit within alpha's binomial band
    A/B     a known effect at the designed sample size: detected at about the designed power
    CUPED   the same A/B on watch time with a pre-period covariate: narrower intervals
    SRM     a broken split (a logging bug drops 2%, 5% or 10% of treatment users): how often
            the chi-square alarm fires; a correct split alarms at about its 0.001 level
    IPS     off-policy value of a new exploration policy from epsilon-greedy logs, against the
            value measured by running it

Users are assigned by `serving.online.experiments.Assigner` (hashing), outcomes drawn per user:
engagement ~ Bernoulli(0.30), 7-day return ~ Bernoulli(0.60), watch time = 0.8 x pre-period
watch time + noise (pre-period ~ Gamma(2, 600 s)).

    python benchmarks/ab_simulation.py [--runs 1000]
"""

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

from monitoring.abtest import (compare_means, compare_proportions, cuped,  # noqa: E402
                               sample_ratio_check, sample_size_means, sample_size_proportions)
from monitoring.off_policy import off_policy_value  # noqa: E402
from serving.online.experiments import Assigner, Experiment  # noqa: E402
from serving.online.exploration import epsilon_greedy_slot  # noqa: E402

ALPHA = 0.05
BASE_ENGAGEMENT, ENGAGEMENT_EFFECT = 0.30, 0.02
BASE_RETURN = 0.60
WATCH_EFFECT = 30.0  # seconds


def _users(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    pre = rng.gamma(2.0, 600.0, n)
    return pre, 0.8 * pre + rng.normal(0.0, 400.0, n)


def one_run(rng: np.random.Generator, n: int, effect: bool) -> dict[str, bool]:
    lift = ENGAGEMENT_EFFECT if effect else 0.0
    engaged = (rng.binomial(n, BASE_ENGAGEMENT), rng.binomial(n, BASE_ENGAGEMENT + lift))
    returned = (rng.binomial(n, BASE_RETURN), rng.binomial(n, BASE_RETURN))
    (pre_c, watch_c), (pre_t, watch_t) = _users(rng, n), _users(rng, n)
    if effect:
        watch_t = watch_t + WATCH_EFFECT
    adjusted_c, adjusted_t, _ = cuped((watch_c, watch_t), (pre_c, pre_t))
    raw = compare_means("watch", watch_c, watch_t, ALPHA)
    adjusted = compare_means("watch", adjusted_c, adjusted_t, ALPHA)
    return {"engagement": compare_proportions("engaged", engaged, (n, n), ALPHA).significant,
            "retention": compare_proportions("returned", returned, (n, n), ALPHA).significant,
            "watch_welch": raw.significant, "watch_cuped": adjusted.significant,
            "width_ratio": (adjusted.ci_high - adjusted.ci_low) / (raw.ci_high - raw.ci_low)}


def band(rate: float, runs: int) -> tuple[float, float]:
    """A 99% binomial band around `rate` for `runs` trials."""
    sd = (rate * (1 - rate) / runs) ** 0.5
    return rate - 2.576 * sd, rate + 2.576 * sd


def srm(runs: int, users: int, drops: tuple[float, ...], rng: np.random.Generator
        ) -> dict[str, float]:
    """Share of runs in which the SRM check alarms when a share `drop` of the treatment
    users' logs is lost (0 = a correct split), for each drop."""
    alarms = dict.fromkeys(drops, 0)
    for run in range(runs):
        assigner = Assigner([Experiment(f"srm-{run}")])
        arms = [assigner.assign(f"u{run}-{i}")[f"srm-{run}"] for i in range(users)]
        control = arms.count("control")
        for drop in drops:
            treatment = int(rng.binomial(arms.count("treatment"), 1.0 - drop))
            alarms[drop] += sample_ratio_check([control, treatment], [1, 1]).mismatch
    return {f"drop_{drop:g}": count / runs for drop, count in alarms.items()}


def ips_check(rng: np.random.Generator, runs: int) -> dict[str, float]:
    rates = np.array([0.30, 0.10, 0.20, 0.05, 0.15])
    titles = [f"t{i}" for i in range(len(rates))]
    target = np.array([0.1, 0.4, 0.3, 0.1, 0.1])
    estimates, snips = [], []
    for _ in range(runs):
        logs = [epsilon_greedy_slot("t0", titles, 0.5, rng) for _ in range(1000)]
        chosen = np.array([titles.index(s.title_id) for s in logs])
        rewards = rng.random(len(chosen)) < rates[chosen]
        estimate = off_policy_value(rewards, np.array([s.propensity for s in logs]),
                                    target[chosen])
        estimates.append(estimate.ips)
        snips.append(estimate.snips)
    # The target policy run for real, as many impressions.
    online = rng.random((runs, 1000)) < rates[rng.choice(len(rates), (runs, 1000), p=target)]
    return {"true_value": float(target @ rates), "ips_mean": float(np.mean(estimates)),
            "ips_sd": float(np.std(estimates)), "snips_mean": float(np.mean(snips)),
            "snips_sd": float(np.std(snips)), "online_mean": float(online.mean()),
            "online_sd": float(online.mean(axis=1).std())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    n = sample_size_proportions(BASE_ENGAGEMENT, ENGAGEMENT_EFFECT, ALPHA, 0.8)
    aa = [one_run(rng, n, effect=False) for _ in range(args.runs)]
    ab = [one_run(rng, n, effect=True) for _ in range(args.runs)]
    rate = lambda runs, key: float(np.mean([r[key] for r in runs]))  # noqa: E731
    watch_power_n = sample_size_means(std=float(np.std(_users(rng, 100_000)[1])),
                                      minimum_effect=WATCH_EFFECT)
    figures = {
        "users_per_arm": n,
        "a_a_false_positive_rate": {key: rate(aa, key) for key in
                                    ("engagement", "retention", "watch_welch", "watch_cuped")},
        "a_a_band_99": band(ALPHA, args.runs),
        "a_b_detection_rate": {key: rate(ab, key) for key in
                               ("engagement", "watch_welch", "watch_cuped")},
        "designed_power": 0.8,
        "a_b_power_band_99": band(0.8, args.runs),
        "watch_users_per_arm_for_80_percent_without_cuped": watch_power_n,
        "cuped_ci_width_ratio_median": float(np.median([r["width_ratio"] for r in ab])),
        "srm_alarm_rate_20k_users": srm(200, 20_000, (0.0, 0.02, 0.05, 0.1), rng),
        "off_policy": ips_check(rng, 300),
        "seconds": round(time.perf_counter() - started, 1),
    }
    checks = {
        "a_a_within_band": all(band(ALPHA, args.runs)[0] <= v <= band(ALPHA, args.runs)[1]
                               for v in figures["a_a_false_positive_rate"].values()),
        "engagement_power_within_band": (band(0.8, args.runs)[0]
                                         <= figures["a_b_detection_rate"]["engagement"]
                                         <= band(0.8, args.runs)[1]),
        "srm_alarms_on_10pct_drop": figures["srm_alarm_rate_20k_users"]["drop_0.1"] >= 0.95,
        "srm_quiet_on_correct_split": figures["srm_alarm_rate_20k_users"]["drop_0"] <= 0.02,
        "ips_within_3_standard_errors": abs(figures["off_policy"]["ips_mean"]
                                            - figures["off_policy"]["true_value"])
        <= 3 * figures["off_policy"]["ips_sd"] / np.sqrt(300),
    }
    figures["checks"] = checks
    path = write_result(
        "ab_simulation",
        {"runs": args.runs, "seed": args.seed, "alpha": ALPHA,
         "baseline_engagement": BASE_ENGAGEMENT, "engagement_effect": ENGAGEMENT_EFFECT,
         "watch_effect_seconds": WATCH_EFFECT},
        figures,
        {"designed": {"alpha": ALPHA, "power": 0.8}},
        {"a_a_fpr_over_alpha": figures["a_a_false_positive_rate"]["engagement"] / ALPHA,
         "engagement_detection_over_design": figures["a_b_detection_rate"]["engagement"] / 0.8,
         "cuped_ci_width_ratio": figures["cuped_ci_width_ratio_median"],
         "ips_over_true_value": figures["off_policy"]["ips_mean"]
         / figures["off_policy"]["true_value"]})
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(f"wrote {path} ({RESULTS})")


if __name__ == "__main__":
    main()
