"""Fourteen simulated days of monitoring: a control run without drift, and a run with drift.

    python benchmarks/monitor_simulation.py [--users 2000 --titles 300 --days 14 --drift-day 7]

Each run generates the days with the seeded generator (the drift run shifts tastes and launches
titles on `--drift-day`; its earlier days are byte-identical to the control run's), ingests them
with Beam, cuts one span per day, trains the first models with the TFX pipeline on the first
`--first-window` spans, then monitors every later span with `monitoring.monitor_span` and, when
the monitor decides to retrain, runs the TFX pipeline again on the rolling window of the last
`window_spans` spans, warm-starting the towers and the ranker from the last blessed models
(`--cold-retrain`: from scratch); the Evaluator blesses a candidate only when it is no worse
than the champion on the same eval split. Figures: the trigger span, the AUC
before the shift, at the shift and after the retrain, the share of the lost AUC recovered, and
false triggers in the control run. Writes benchmarks/results/monitor_simulation.json, the
decisions logs and the per-span HTML reports under the work directory.
"""

import argparse
import dataclasses
import json
import pathlib
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import recs  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
from common import write_result  # noqa: E402

import numpy as np  # noqa: E402

from monitoring import RETRAIN, MonitorConfig  # noqa: E402
from monitoring.drift import span_statistics  # noqa: E402
from monitoring.monitor import ServedModel, monitor_span  # noqa: E402
from recs.contract import components as C  # noqa: E402
from recs.contract.layout import RunLayout, day_partition  # noqa: E402
from recs.contract.models import RANKER, newest_version_dir  # noqa: E402
from monitoring.outcomes import read_records  # noqa: E402
from recs import features as F  # noqa: E402
from recs.data.synthetic import GeneratorConfig, generate  # noqa: E402
from tfx_pipeline import PipelineConfig, rolling_window, run_local  # noqa: E402
from transforms.ingestion import IngestionConfig, run_ingestion  # noqa: E402

BEAM = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@dataclasses.dataclass
class Run:
    layout: RunLayout
    spans: list[str]
    catalogue: str
    min_auc: float
    warm_start: bool
    trainings: int = 0

    def window_dir(self, first: int, last: int) -> pathlib.Path:
        """The spans first..last as one pipeline input (`tfx_pipeline.rolling_window`)."""
        last_day = pathlib.Path(self.spans[last]).parent.name[len(day_partition("")):]
        return pathlib.Path(rolling_window(str(self.layout.examples_dir),
                                           str(self.layout.windows), last - first + 1,
                                           last_day))

    def train(self, first: int, last: int) -> tuple[str, float]:
        """Runs the TFX pipeline on spans first..last; returns the pushed ranker and seconds.

        The Evaluator blesses a ranker at the monitor's AUC floor that is no worse than the
        champion; with `warm_start` the Trainers start from the last blessed models.
        """
        self.trainings += 1
        window = self.window_dir(first, last)
        config = PipelineConfig(pipeline_root=str(self.layout.pipeline_root),
                                examples_dir=str(window), catalogue_path=self.catalogue,
                                serving_base_dir=str(self.layout.serving),
                                metadata_path=str(self.layout.metadata),
                                min_ranker_auc=self.min_auc, warm_start=self.warm_start)
        started = time.perf_counter()
        run_local(config)
        return newest_version_dir(str(self.layout.serving), RANKER), (
            time.perf_counter() - started)

    def last_ranker_run(self) -> dict:
        """The newest RankerTrainer run's metrics.json: held-out AUC and the warm start."""
        runs = (self.layout.pipeline_root / C.RANKER_TRAINER / C.MODEL_RUN).iterdir()
        newest = max(runs, key=lambda path: int(path.name))
        return json.loads((newest / C.METRICS_FILE).read_text())


def known_titles(globs: list[str]) -> tuple[bytes, ...]:
    titles: set[bytes] = set()
    for pattern in globs:
        titles |= set(read_records(pattern)[F.TITLE_ID].tolist())
    return tuple(sorted(titles))


def simulate(name: str, generator: GeneratorConfig, root: pathlib.Path, first_window: int,
             config: MonitorConfig, warm_start: bool) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    layout = RunLayout(root)
    layout.monitoring.mkdir(parents=True)  # `monitor_span` appends to its decisions log.
    data = generate(generator, layout.raw)
    report = run_ingestion(IngestionConfig(
        events_glob=str(data.events_dir / "*" / "*.jsonl"), users_path=str(data.users_path),
        titles_path=str(data.titles_path), output_dir=str(layout.ingested)), BEAM)
    spans = [str(layout.examples_dir / day_partition(day) / "*.tfrecord.gz")
             for day in report.records_per_span]
    run = Run(layout=layout, spans=spans, catalogue=str(data.titles_path),
              min_auc=config.min_auc, warm_start=warm_start)
    statistics = {}

    def stats(span: int):
        if span not in statistics:
            statistics[span] = span_statistics(spans[span], BEAM)
        return statistics[span]

    ranker, seconds = run.train(0, first_window - 1)
    window = (0, first_window - 1)
    reference = span_statistics(str(run.window_dir(*window) / "*" / "*.tfrecord.gz"), BEAM)
    model = ServedModel(ranker_dir=ranker, baseline_auc=None,
                        known_titles=known_titles(spans[window[0]:window[1] + 1]))
    model_aucs: list[float] = []
    timeline = []
    train_seconds = [seconds]
    for span in range(first_window, generator.days):
        decision, quality = monitor_span(
            span, spans[span], model, reference, stats(span), config,
            decisions_log=str(layout.decisions_log), report_dir=str(layout.monitoring_reports))
        timeline.append({"span": span, "action": decision.action,
                         "reasons": list(decision.reasons), "auc": quality["auc"],
                         "ece": quality["ece"], "model": pathlib.Path(model.ranker_dir).name,
                         "drifted": [m.feature for m in decision.signals.drift
                                     if m.kind == "drift" and m.exceeded],
                         "unseen_title_share": decision.signals.unseen_title_share})
        print(name, json.dumps(timeline[-1]), flush=True)
        model_aucs.append(quality["auc"])
        if model.baseline_auc is None and len(model_aucs) >= config.baseline_spans:
            model = dataclasses.replace(model, baseline_auc=float(np.mean(model_aucs)))
        if decision.action == RETRAIN:
            window = (max(0, span - config.window_spans + 1), span)
            ranker, seconds = run.train(*window)
            train_seconds.append(seconds)
            # A new version only when the Evaluator blessed the candidate and the Pusher pushed.
            timeline[-1]["pushed"] = ranker != model.ranker_dir
            trained = run.last_ranker_run()
            timeline[-1]["candidate_eval_auc"] = trained["metrics"]["auc"]
            timeline[-1]["warm_started_from"] = trained["warm_start"]["base_model"]
            print(name, "retrained on spans", window, json.dumps(timeline[-1]), flush=True)
            if timeline[-1]["pushed"]:
                reference = span_statistics(str(run.window_dir(*window) / "*" / "*.tfrecord.gz"),
                                            BEAM)
                model = ServedModel(ranker_dir=ranker, baseline_auc=None, pushed_span=span,
                                    known_titles=known_titles(spans[window[0]:window[1] + 1]))
                model_aucs = []
    return {"timeline": timeline, "ingestion": dataclasses.asdict(report),
            "trainings": run.trainings, "train_seconds": train_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--titles", type=int, default=300)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--drift-day", type=int, default=7)
    parser.add_argument("--new-titles", type=int, default=40)
    parser.add_argument("--first-window", type=int, default=5)
    parser.add_argument("--window-spans", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cold-retrain", action="store_true",
                        help="retrain from scratch instead of warm-starting from the last "
                             "blessed models")
    parser.add_argument("--workdir", type=pathlib.Path,
                        default=pathlib.Path("monitor_simulation_output"))
    parser.add_argument("--name", default="monitor_simulation")
    args = parser.parse_args()
    config = MonitorConfig(min_auc=0.55, window_spans=args.window_spans)
    base = GeneratorConfig(num_users=args.users, num_titles=args.titles, days=args.days,
                           seed=args.seed)
    started = time.perf_counter()
    warm = not args.cold_retrain
    control = simulate("control", base, args.workdir / "control", args.first_window, config,
                       warm)
    drifted = simulate("drift", dataclasses.replace(base, drift_day=args.drift_day,
                                                    drift_new_titles=args.new_titles),
                       args.workdir / "drift", args.first_window, config, warm)

    def auc(run: dict, span: int) -> float:
        return next(e["auc"] for e in run["timeline"] if e["span"] == span)

    timeline = drifted["timeline"]
    triggers = [e["span"] for e in timeline if e["action"] == RETRAIN]
    trigger = next((s for s in triggers if s >= args.drift_day), None)
    before = float(np.mean([auc(drifted, s) for s in range(args.first_window, args.drift_day)]))
    at_shift = auc(drifted, args.drift_day)
    after = {f"auc_span_{s}": auc(drifted, s) for s in range(args.drift_day + 1,
                                                             min(args.days,
                                                                 args.drift_day + 3))}
    best_after = max(after.values()) if after else at_shift
    lost = before - at_shift
    recovered = (best_after - at_shift) / lost if lost > 0 else None
    figures = {
        "drift_day": args.drift_day,
        "trigger_span": trigger,
        "trigger_delay_spans": None if trigger is None else trigger - args.drift_day,
        "auc_before_shift": before, "auc_at_shift": at_shift, **after,
        "auc_lost": lost, "share_of_lost_auc_recovered_within_2_spans": recovered,
        "false_triggers_before_drift": [s for s in triggers if s < args.drift_day],
        "control_triggers": [e["span"] for e in control["timeline"]
                             if e["action"] == RETRAIN],
        "control_alerts": [e["span"] for e in control["timeline"] if e["action"] == "alert"],
        "drift_run": drifted, "control_run": control,
        "wall_seconds": time.perf_counter() - started,
    }
    path = write_result(
        args.name,
        parameters={**vars(args), "workdir": str(args.workdir),
                    "monitor": MonitorConfig.to_dict(config)},
        figures=figures,
        peers={"control_auc_by_span": {e["span"]: e["auc"] for e in control["timeline"]}},
        ratios={"recovered_share_goal_0.5": recovered})
    print(json.dumps({k: v for k, v in figures.items()
                      if k not in ("drift_run", "control_run")}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
