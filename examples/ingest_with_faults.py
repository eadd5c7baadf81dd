"""Generate logs with raised fault rates, ingest them with Beam, and account for every fault.

    python examples/ingest_with_faults.py --out /tmp/faults
"""

import argparse
import pathlib

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs.data import synthetic
from recs.contract.events import Reason
from recs.contract.layout import RunLayout
from transforms.ingestion import IngestionConfig, run_ingestion

# Generator fault kind -> the dead-letter reason ingestion gives it.
EXPECTED = {synthetic.DUPLICATE: Reason.DUPLICATE_EVENT_ID,
            synthetic.CLOCK_SKEW: Reason.TIMESTAMP_OUT_OF_RANGE,
            synthetic.UNKNOWN_USER: Reason.UNKNOWN_USER,
            synthetic.UNKNOWN_TITLE: Reason.UNKNOWN_TITLE,
            synthetic.BOT: Reason.BOT_TRAFFIC}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()

    config = synthetic.GeneratorConfig(num_users=500, num_titles=100, days=3, seed=1,
                                       malformed_rate=0.01, duplicate_rate=0.01,
                                       late_rate=0.01, clock_skew_rate=0.005,
                                       unknown_id_rate=0.01, overlong_watch_rate=0.01,
                                       bot_share=0.01)
    run = RunLayout(args.out)
    data = synthetic.generate(config, run.raw)
    print(f"generated {data.num_events} events; injected: {data.faults}")
    report = run_ingestion(IngestionConfig.for_raw(run.raw, run.ingested),
                           ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    print(report.summary())
    for kind, reason in EXPECTED.items():
        found = report.dead_lettered.get(reason, 0)
        print(f"{kind:>14}: injected {data.faults[kind]:>5}, dead-lettered as {reason} {found:>5}")
    # Late deliveries are not faults for ingestion: they are accepted into their session.
    print(f"{'late':>14}: injected {data.faults[synthetic.LATE]:>5}, accepted")


if __name__ == "__main__":
    main()
