"""A closed-loop world: simulated subscribers who ask the running service for slates, watch,
and stay or leave (`simulation.loop`), by rules built on the generator's hidden truth
(`simulation.behaviour`); the same subscribers run once under each policy give the true effect
of a policy (`simulation.twin`)."""

from simulation.behaviour import BehaviourConfig, Pick
from simulation.loop import (CANCELLED, ESTABLISHED, NEW, RENEWED, ClosedLoop, DayReport,
                             EventSink, LoopConfig, StreamPublisher, wait_until_consumed)
from simulation.twin import (PairedDifference, paired_differences, retained_at,
                             twin_experiment)

__all__ = ["BehaviourConfig", "CANCELLED", "ClosedLoop", "DayReport", "ESTABLISHED",
           "EventSink", "LoopConfig", "NEW", "PairedDifference", "Pick", "RENEWED",
           "StreamPublisher", "paired_differences", "retained_at", "twin_experiment",
           "wait_until_consumed"]
