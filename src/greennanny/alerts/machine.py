"""The life cycle of one rule on one series: ok -> pending -> firing -> resolved, with hysteresis.

Pure and deterministic: a `Track` is stepped over samples (time, value, breach, clear) that
rules.py computed; it returns the transitions, and the engine persists them. Why two levels
(`breach` and `clear`) and not one condition: a temperature hovering around 30 degC crosses a
single threshold many times an hour; with a clear level of 28 degC it is one episode, one alert,
from the first crossing until it is really back down. Samples between the two levels change
nothing. `for_ns` is the minimum duration: the condition must hold (not clear) that long before
the alert fires, so a one-reading spike stays a pending that is cancelled, never a notification.

Acknowledgement and silences are operator facts kept on the alert row, not states of the machine:
an acknowledged alert still resolves when the value comes back, and a silenced one still fires
(its notifications are held), so the record of what happened is whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK, PENDING, FIRING, RESOLVED = "ok", "pending", "firing", "resolved"


@dataclass(slots=True)
class Transition:
    kind: str  # pending | firing | resolved | cancelled
    at_ns: int
    value: float
    since_ns: int  # when the episode's condition first held
    peak: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Track:
    """The machine's memory for (rule, series): persisted in `alert_tracks` after every round."""

    rule: str
    series_id: int
    state: str = OK  # ok | pending | firing
    since_ns: int = 0
    last_ts: int = -1  # newest sample already stepped (the engine reads after it)
    alert_id: int | None = None  # the firing episode's alert row
    value: float = float("nan")
    peak: float = float("nan")

    def step(self, ts: int, value: float, breach: bool, clear: bool, for_ns: int, *, above: bool = True,
             detail: dict[str, Any] | None = None) -> Transition | None:
        """Advance by one sample; at most one transition. Samples at or before `last_ts` are
        ignored (a replay after a restart must not fire twice)."""
        if ts <= self.last_ts:
            return None
        self.last_ts = ts
        self.value = value
        out: Transition | None = None
        if self.state == OK:
            if breach:
                self.state, self.since_ns, self.peak = PENDING, ts, value
                out = Transition(PENDING, ts, value, ts, value, detail or {})
        elif clear:
            kind = "resolved" if self.state == FIRING else "cancelled"
            out = Transition(kind, ts, value, self.since_ns, self.peak, detail or {})
            self.state, self.since_ns, self.alert_id, self.peak = OK, 0, None, float("nan")
            return out
        else:
            self.peak = max(self.peak, value) if above else min(self.peak, value)
        if self.state == PENDING and ts - self.since_ns >= for_ns:
            self.state = FIRING
            out = Transition("firing", ts, value, self.since_ns, self.peak, detail or {})
        elif self.state == FIRING and out is None and detail:
            out = Transition("update", ts, value, self.since_ns, self.peak, detail)
        return out
