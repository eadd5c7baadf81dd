"""How simulated subscribers react to what they are shown: the closed loop's rules.

Built on the generator's hidden truth (`recs.data.synthetic.World`: latent tastes, title
quality, device effects, activity, churn-prone users), which it does not change. The generator
draws a play as "come across a title in proportion to its popularity, start it with probability
exp((affinity - 1) / T)"; here a slate takes the place of coming across titles:

    choice        scan the slate top-down, looking at position p (0-based) with probability
                  (1 + p) ** -examine_decay, and start a looked-at title with the same
                  exp((affinity - 1) / T); if nothing on the slate is started, browse the
                  catalogue the generator's way (popularity proposals, same acceptance) for at
                  most `browse_patience` looks, then give up. Every look costs
                  `seconds_per_look`: the time to find something.
    watching      `World.watch`, the generator's rule: engagement from affinity, quality,
                  preferred genre and device; watch time and likes from engagement.
    satisfaction  an exponential moving average of each session's value: engaged plays minus
                  minutes spent looking / `search_minutes_per_play`, minus one for a session
                  that found nothing.
    frequency     sessions a day: the generator's rate (activity, weekends, the churn-prone
                  users' decay) times exp(frequency_sensitivity * (satisfaction - reference)).
    churn         a daily hazard of leaving for good (the user cancels that day), higher for
                  the churn-prone and for new subscribers in their first billing cycle, and
                  falling with satisfaction.
    renewal       once a month, on each user's billing day (a new subscriber's first is a
                  cycle after signing up): one who stayed renews with probability
                  sigmoid(renewal_bias + renewal_sensitivity * (satisfaction - reference)),
                  else the subscription lapses.

The constants are fixed here, before any model is compared: a model wins only by showing
people titles the hidden truth says they like. The churn constants are set so that a month of
the loop cancels about 5% of its established subscribers, the US premium SVOD category's
weighted average monthly gross churn as Antenna measures it (5.2% in August 2024, "A case for
rethinking churn", antenna.live; 4.6% over 2025), and about 15% of its new subscribers in
their first month (Antenna, Q3 2023 sign-ups: 61% of non-serial churners still subscribed
three months later, "2024 Top Subscription Insights: Serial Churn"). Measured on a 3,000-user
world shown the most popular titles for 30 days: 5.0% and 15% (of 20 new subscribers).
"""

import dataclasses

import numpy as np

from recs.config import Config, require
from recs.data.synthetic import World

BILLING_DAYS = 30
"""Days between two renewal decisions of a subscriber."""


@dataclasses.dataclass(frozen=True)
class BehaviourConfig(Config):
    """The closed loop's behaviour constants (see the module docstring for the rules).

    Attributes:
        examine_decay: how fast attention falls down the slate.
        browse_patience: looks outside the slate before a user gives up on a session.
        seconds_per_look: time to look at one title, on the slate or browsing.
        search_minutes_per_play: minutes of looking that cost as much satisfaction as one
            engaged play brings.
        memory: weight of the past in the satisfaction average, in [0, 1).
        reference: the satisfaction at which frequency, churn and renewal sit at their base.
        initial: every user's satisfaction before the first simulated session.
        frequency_sensitivity: log-change of the session rate per unit of satisfaction.
        churn_hazard: daily probability of leaving at the reference satisfaction.
        churn_prone_factor: how much likelier the generator's churn-prone users leave.
        new_subscriber_factor: how much likelier a new subscriber leaves during their first
            billing cycle (a modelling choice: new subscribers are the likeliest to leave).
        churn_sensitivity: log-change of the hazard per unit of satisfaction (it falls).
        renewal_bias / renewal_sensitivity: the renewal probability's logit at the
            reference, and its change per unit of satisfaction.
    """

    examine_decay: float = 0.7
    browse_patience: int = 30
    seconds_per_look: float = 6.0
    search_minutes_per_play: float = 5.0
    memory: float = 0.8
    reference: float = 0.5
    initial: float = 0.5
    frequency_sensitivity: float = 0.6
    churn_hazard: float = 0.001
    churn_prone_factor: float = 4.0
    new_subscriber_factor: float = 3.0
    churn_sensitivity: float = 1.0
    renewal_bias: float = 4.6
    renewal_sensitivity: float = 1.5

    def __post_init__(self) -> None:
        require(self.examine_decay >= 0, "examine_decay", ">= 0", self.examine_decay)
        require(self.browse_patience >= 0, "browse_patience", ">= 0", self.browse_patience)
        require(self.seconds_per_look > 0, "seconds_per_look", "> 0", self.seconds_per_look)
        require(self.search_minutes_per_play > 0, "search_minutes_per_play", "> 0",
                self.search_minutes_per_play)
        require(0.0 <= self.memory < 1.0, "memory", "in [0, 1)", self.memory)
        require(0.0 <= self.churn_hazard < 1.0, "churn_hazard", "in [0, 1)",
                self.churn_hazard)
        require(self.churn_prone_factor >= 1.0, "churn_prone_factor", ">= 1",
                self.churn_prone_factor)
        require(self.new_subscriber_factor >= 1.0, "new_subscriber_factor", ">= 1",
                self.new_subscriber_factor)


@dataclasses.dataclass(frozen=True)
class Pick:
    """What one search for something to watch came to.

    Attributes:
        title: the world's title index started; -1 when the user gave up.
        from_slate: True when it was on the served slate.
        position: its slate position (0-based), -1 when found by browsing or not at all.
        looks: titles looked at (slate and browsing), whether or not one was started.
    """

    title: int
    from_slate: bool
    position: int
    looks: int

    @property
    def found(self) -> bool:
        return self.title >= 0


def examine_probabilities(slate_size: int, decay: float) -> np.ndarray:
    """P(a user looks at position p) = (1 + p) ** -decay, `[slate_size]`.

    Example: decay 1.0 -> [1, 1/2, 1/3, ...].
    """
    return (1.0 + np.arange(slate_size)) ** -decay


def start_probability(world: World, user: int, titles: np.ndarray) -> np.ndarray:
    """P(start | looked at) of each title for `user`: exp((affinity - 1) / T), the generator's
    own acceptance, in (0, 1]; `[len(titles)]`."""
    affinity = world.affinity(np.full(len(titles), user), titles)
    return np.exp((affinity - 1.0) / world.temperature)


def pick(world: World, user: int, slate: np.ndarray, taken: set[int],
         config: BehaviourConfig, rng: np.random.Generator) -> Pick:
    """One title the user starts, from the slate or by browsing, or giving up.

    Args:
        slate: the served titles as world indices, best first; -1 for an id the world does
            not know (looked at, never started).
        taken: titles already started in this session (not started again).

    Returns:
        The pick; `title` -1 after `browse_patience` looks outside the slate found nothing.
    """
    looks = 0
    if len(slate):
        looked = rng.random(len(slate)) < examine_probabilities(len(slate),
                                                                config.examine_decay)
        starts = rng.random(len(slate))
        known = slate >= 0
        accept = np.zeros(len(slate))
        accept[known] = start_probability(world, user, slate[known])
        for position in np.flatnonzero(looked):
            looks += 1
            title = int(slate[position])
            if title >= 0 and title not in taken and starts[position] < accept[position]:
                return Pick(title, True, int(position), looks)
    if not config.browse_patience:
        return Pick(-1, False, -1, looks)
    # All the looks' draws at once (as many whatever is found: a fixed use of the stream).
    proposals = np.minimum(np.searchsorted(world.titles.proposal_cdf,
                                           rng.random(config.browse_patience)),
                           len(world.titles) - 1)
    accepted = rng.random(config.browse_patience) < start_probability(world, user, proposals)
    for look in np.flatnonzero(accepted):
        if int(proposals[look]) not in taken:
            return Pick(int(proposals[look]), False, -1, looks + int(look) + 1)
    return Pick(-1, False, -1, looks + config.browse_patience)


def session_value(engaged_plays: int, looks: int, found_nothing: bool,
                  config: BehaviourConfig) -> float:
    """What a session was worth to the user: engaged plays, less the time spent looking
    (in units of `search_minutes_per_play`), less one when it found nothing.

    Example: 2 engaged plays after 25 looks of 6 s (2.5 minutes, at 5 minutes a play):
    2 - 0.5 = 1.5.
    """
    minutes = looks * config.seconds_per_look / 60.0
    return engaged_plays - minutes / config.search_minutes_per_play - float(found_nothing)


def updated_satisfaction(satisfaction: float, value: float, config: BehaviourConfig) -> float:
    """The moving average after a session of `value`."""
    return config.memory * satisfaction + (1.0 - config.memory) * value


def session_rate(base_rate: np.ndarray, satisfaction: np.ndarray,
                 config: BehaviourConfig) -> np.ndarray:
    """Expected sessions a day: the generator's rate scaled by satisfaction (clipped to a
    factor within [1/4, 4], so one bad week slows a user down, never to zero)."""
    factor = np.exp(config.frequency_sensitivity * (satisfaction - config.reference))
    return base_rate * np.clip(factor, 0.25, 4.0)


def churn_probability(satisfaction: np.ndarray, churn_prone: np.ndarray,
                      config: BehaviourConfig, new: np.ndarray | None = None) -> np.ndarray:
    """Daily probability of leaving for good, `[users]`.

    Args:
        satisfaction / churn_prone: `[users]`.
        new: `[users]` True for a subscriber in their first billing cycle; None: nobody.
    """
    hazard = config.churn_hazard * np.where(churn_prone, config.churn_prone_factor, 1.0)
    if new is not None:
        hazard = hazard * np.where(new, config.new_subscriber_factor, 1.0)
    return np.minimum(1.0, hazard * np.exp(-config.churn_sensitivity
                                           * (satisfaction - config.reference)))


def renewal_probability(satisfaction: np.ndarray, config: BehaviourConfig) -> np.ndarray:
    """Probability that a subscriber who stayed renews at their billing day, `[users]`."""
    logit = config.renewal_bias + config.renewal_sensitivity * (satisfaction
                                                               - config.reference)
    return 1.0 / (1.0 + np.exp(-logit))


def billing_days(num_users: int, seed: int) -> np.ndarray:
    """Each user's billing day within the month (0..BILLING_DAYS - 1), fixed by the seed."""
    return np.random.default_rng([seed, 4]).integers(0, BILLING_DAYS, size=num_users)
