"""The time budget of a run that must end by a deadline (a GPU lease's 10-minute commands, a
background slice of the grid): which unit of work may start now.

Two rules, by what is known of a unit:

- **a predicted unit** (a stacked group whose protocol has a measured rate, :class:`Rates`:
  the GPU window's pick writes them, ``python -m capslib run --rates FILE`` reads them) starts
  only when ``now + predicted seconds`` is within the deadline, the first unit of a run
  included. Its prediction: (images per epoch × epochs × models + half the images it
  evaluates) / the measured images/s, plus the group's measured start-up seconds, all times
  :data:`MARGIN`; after a predicted unit has run, a unit that took longer than its bare
  prediction raises the factor to what it took. A unit that would end after the deadline
  is skipped and later units (in the priority's order) that fit still start.
- **any other unit** (a plain-path cell, a group without a rate): it starts while the
  longest unit so far would still end in time, so the first one always starts. A
  resumable cell (checkpointed per epoch) may start while one epoch still fits: it pauses
  at the last epoch boundary before the deadline.
"""
from __future__ import annotations

import json
import time
from typing import Optional

from capslib.core.errors import ConfigError
from capslib.run.execute import GroupUnit, Unit

MARGIN = 1.2            # predicted seconds × this: what the pick's short timings do not see
EVAL_WEIGHT = 0.5       # an evaluated image against a training image (a forward pass, no backward)


class Rates:
    """Measured training speed of stacked groups: {protocol: {models: {'images_per_s', 'start_seconds'}}}
    (``start_seconds``: a group's one-off cost before its first steps run at speed, 0 if not measured)."""

    def __init__(self, table: dict, source: str = ""):
        self.source = source
        self.table = {p: {int(n): {"images_per_s": float(v["images_per_s"]),
                                   "start_seconds": float(v.get("start_seconds", 0.0))}
                          for n, v in sizes.items() if float(v.get("images_per_s", 0)) > 0}
                      for p, sizes in table.items()}

    @classmethod
    def load(cls, path) -> "Rates":
        """The ``rates`` of a JSON file (the GPU window's pick report); one line if unusable."""
        try:
            doc = json.loads(open(path).read())
            rates = cls(doc["rates"], str(path))
        except OSError as e:
            raise ConfigError(f"--rates {path}: cannot read it ({e.strerror})") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"--rates {path}: no table of measured rates in it "
                              f"({type(e).__name__}: {e}); expected {{'rates': {{protocol: {{models: "
                              f"{{'images_per_s': ...}}}}}}}}") from None
        return rates

    def for_group(self, protocol: str, models: int) -> Optional[dict]:
        """The speed of a group of ``models``: the measured size nearest below it; below the
        smallest measured size, that size's time per step (a smaller group is not slower per
        step). None where the protocol has no measurement."""
        sizes = self.table.get(protocol)
        if not sizes:
            return None
        below = [n for n in sizes if n <= models]
        n = max(below) if below else min(sizes)
        rate = sizes[n]
        scale = 1.0 if below else models / n
        return {"images_per_s": rate["images_per_s"] * scale, "start_seconds": rate["start_seconds"]}

    def seconds(self, unit: Unit) -> Optional[float]:
        """A stacked group's predicted seconds, before the margin; None for any other unit
        or a protocol without a rate."""
        if not isinstance(unit, GroupUnit):
            return None
        r = unit.specs[0].resolved()
        rate = self.for_group(r.protocol, len(unit.specs))
        if rate is None:
            return None
        steps = max(-(-len(sp.train_idx) // r.batch_size) for sp in unit.splits)   # the longest model's
        trained = steps * r.batch_size * r.epochs * len(unit.specs)
        # what the group evaluates (capslib.study.protocols.evaluation_requests): paper A its
        # training and test sets, paper B its test set
        evaluated = sum(len(sp.test_idx) + (len(sp.train_idx) if r.protocol == "imbalanced" else 0)
                        for sp in unit.splits)
        return rate["start_seconds"] + (trained + EVAL_WEIGHT * evaluated) / rate["images_per_s"]


class TimeBudget:
    """Which unit may start before ``seconds`` run out (the module's two rules); ``rates``
    (:class:`Rates`) predicts the stacked groups."""

    def __init__(self, seconds: Optional[float] = None, rates: Optional[Rates] = None, margin: float = MARGIN):
        if seconds is not None and seconds <= 0:
            raise ConfigError(f"time budget must be > 0 seconds, got {seconds}")
        self.seconds, self.t0, self.longest, self.longest_epoch = seconds, time.monotonic(), 0.0, 0.0
        self.rates, self.margin, self.factor = rates, margin, margin

    @property
    def deadline(self) -> Optional[float]:
        return None if self.seconds is None else self.t0 + self.seconds

    def left(self) -> Optional[float]:
        return None if self.seconds is None else self.deadline - time.monotonic()

    def predict(self, unit: Unit) -> Optional[float]:
        """A unit's predicted seconds, margin included (None: no rate for it)."""
        bare = None if self.rates is None else self.rates.seconds(unit)
        return None if bare is None else bare * self.factor

    def admits(self, unit: Unit) -> tuple[bool, Optional[float]]:
        """(may ``unit`` start now, its predicted seconds or None)."""
        predicted = self.predict(unit)
        if self.seconds is None:
            return True, predicted
        if predicted is not None:
            return predicted <= self.left(), predicted
        return self.allows_another(unit.resumable), None

    def allows_another(self, resumable: bool = False) -> bool:
        """The rule for a unit without a prediction: the longest so far (an epoch of it, if resumable) fits."""
        if self.seconds is None:
            return True
        unit = self.longest_epoch if resumable else self.longest
        return time.monotonic() + unit <= self.deadline

    def record(self, seconds: float, epochs: int = 1, unit: Optional[Unit] = None) -> None:
        """A unit that ran for ``seconds`` (``epochs`` of it, if resumable)."""
        self.longest = max(self.longest, seconds)
        self.longest_epoch = max(self.longest_epoch, seconds / max(epochs, 1))
        bare = None if unit is None or self.rates is None else self.rates.seconds(unit)
        if bare:
            self.factor = max(self.factor, seconds / bare)


def describe(unit: Unit, predicted: float, left: float) -> str:
    """'novelty-mnist x8 (from novelty-mnist-...): 576 s predicted, 400 s left'."""
    r = unit.specs[0].resolved()
    return (f"{r.protocol}-{r.dataset} x{len(unit.specs)} (from {unit.specs[0].cell_id}): "
            f"{predicted:.0f} s predicted, {max(left, 0):.0f} s left")
