"""A closed-loop world: simulated subscribers who ask the running service for slates, watch,
and stay or leave (`simulation.loop`), by rules built on the generator's hidden truth
(`simulation.behaviour`)."""

from simulation.behaviour import BehaviourConfig, Pick
from simulation.loop import (CANCELLED, RENEWED, ClosedLoop, DayReport, LoopConfig,
                             StreamPublisher, wait_until_consumed)

__all__ = ["BehaviourConfig", "CANCELLED", "ClosedLoop", "DayReport", "LoopConfig", "Pick",
           "RENEWED", "StreamPublisher", "wait_until_consumed"]
