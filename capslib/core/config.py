"""Validated configuration shared by the CLI, the papermill parameters and the tests.

A :class:`CellSpec` names one *cell* of the study: one training and evaluation of one
method under one protocol. ``resolved()`` fills the paper's hyper-parameters
(STUDY.md §2, §3) for anything left ``None``. :class:`FastOptions` holds the fast path's
GPU switches.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Callable, Optional

from capslib.core.errors import ConfigError

PROTOCOLS = ("imbalanced", "novelty")
VARIANTS = {"imbalanced": ("standard", "proposed"), "novelty": ("",)}
N_CLASSES = {"digits": 10, "mnist": 10, "fashion": 10, "kmnist": 10, "smallnorb": 5}
DATASET_NAMES = tuple(N_CLASSES)     # capslib.data.datasets.DATASETS has a loader for each
# the study's methods of each protocol (capslib.study.methods registers a cell function for each)
METHOD_NAMES = {"imbalanced": ("capsnet", "cnn", "deepsad"),
                "novelty": ("capsnet", "cnn_ocsvm", "dbn", "vae", "cnn_msp")}
# the registry: protocol -> method name -> cell function, filled by capslib.study.methods (and by
# whoever adds a method of their own); a CellSpec knows the names above and any registered here
METHODS: dict[str, dict[str, Callable]] = {"imbalanced": {}, "novelty": {}}


def known_methods(protocol: str) -> tuple[str, ...]:
    """The method names a cell of ``protocol`` may have: the study's, then any registered
    (without importing the methods' code)."""
    return (*METHOD_NAMES[protocol], *(m for m in METHODS[protocol] if m not in METHOD_NAMES[protocol]))

# paper hyper-parameters: (epochs, batch size, lr decay per 2000 steps)
PAPER_A_TRAINING = {"epochs": 10, "batch_size": 32, "lr_decay": 1.0}
PAPER_B_TRAINING = {
    "mnist": {"epochs": 20, "batch_size": 100, "lr_decay": 0.96},
    "fashion": {"epochs": 50, "batch_size": 100, "lr_decay": 0.96},
    "smallnorb": {"epochs": 50, "batch_size": 64, "lr_decay": 0.96},
}
PAPER_B_DEFAULT = {"epochs": 20, "batch_size": 100, "lr_decay": 0.96}
DEFAULT_LR = 1e-3
# the stall rule (book/methods.md, "the loss plateau"): a paper-A CapsNet that ends on the plateau
# is trained again from a new initialisation, attempt k drawing its weights and data order with
# seed + ATTEMPT_SEED_STRIDE * k (its split stays the seed's), up to MAX_ATTEMPTS trainings in all
ATTEMPT_SEED_STRIDE = 1000
MAX_ATTEMPTS = 3


# ---- values checked at the door: the CLI's strings, papermill's -p values, API arguments ----
def _show(v) -> str:
    return f"{v!r} ({type(v).__name__})" if not isinstance(v, (int, float)) or isinstance(v, bool) else repr(v)


def as_int(name: str, v) -> int:
    """An integer: ints, whole floats and numeric strings ("3", "3.0"); never a bool."""
    if isinstance(v, bool) or v is None:
        raise ConfigError(f"{name} must be a whole number, got {_show(v)}")
    try:
        f = float(v.strip() if isinstance(v, str) else v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {_show(v)}") from None
    if not f.is_integer():
        raise ConfigError(f"{name} must be a whole number, got {v!r}")
    return int(f)


def as_float(name: str, v) -> float:
    """A number: ints, floats and numeric strings; never a bool."""
    if isinstance(v, bool) or v is None:
        raise ConfigError(f"{name} must be a number, got {_show(v)}")
    try:
        return float(v.strip() if isinstance(v, str) else v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {_show(v)}") from None


def as_bool(name: str, v) -> bool:
    """True or False (or the strings true/false/yes/no); never an int."""
    if isinstance(v, bool):
        return v
    words = {"true": True, "yes": True, "false": False, "no": False}
    if isinstance(v, str) and v.strip().lower() in words:
        return words[v.strip().lower()]
    raise ConfigError(f"{name} must be True or False, got {_show(v)}")


def as_str(name: str, v) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{name} must be a name (a string), got {_show(v)}")
    return v.strip()


def as_list(name: str, v, item) -> tuple:
    """A list parameter: a list/tuple, one scalar (3 -> (3,)) or a comma string ("3,5")."""
    if isinstance(v, str):
        v = [x for x in v.split(",") if x.strip()]
    elif not isinstance(v, (list, tuple)):
        v = [v]
    if not v:
        raise ConfigError(f"{name} is empty; give at least one value or leave it unset (None)")
    return tuple(item(name, x) for x in v)


@dataclass(frozen=True)
class CellSpec:
    protocol: str
    dataset: str
    method: str = "capsnet"
    variant: str = ""                         # paper A: "standard" | "proposed"
    normal_class: Optional[int] = None        # paper A
    anomaly_fraction: Optional[float] = None  # paper A: f in (0, 0.5]
    held_out: tuple[int, ...] = ()            # paper B: the anomalous class(es)
    seed: int = 0
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: float = DEFAULT_LR
    lr_decay: Optional[float] = None          # multiplied in every 2000 steps
    attempt: int = 0                          # paper A's CapsNet: the stall rule's k-th training

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        for k in ("protocol", "dataset", "method"):
            set_(k, as_str(k, getattr(self, k)))
        set_("variant", as_str("variant", self.variant or ""))
        for k, conv in (("normal_class", as_int), ("anomaly_fraction", as_float), ("epochs", as_int),
                        ("batch_size", as_int), ("lr_decay", as_float)):
            if getattr(self, k) is not None:
                set_(k, conv(k, getattr(self, k)))
        set_("seed", as_int("seed", self.seed))
        set_("attempt", as_int("attempt", self.attempt))
        set_("lr", as_float("lr", self.lr))
        held_out = as_list("held_out", self.held_out, as_int) if self.held_out != () else ()
        if len(set(held_out)) != len(held_out):
            raise ConfigError(f"held_out {list(held_out)} names a class twice")
        set_("held_out", tuple(sorted(held_out)))
        self.validate()

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.dataset not in DATASET_NAMES:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
        known = known_methods(self.protocol)
        if self.method not in known:
            raise ConfigError(f"unknown method {self.method!r} for protocol {self.protocol}; "
                              f"choose one of {', '.join(known)}")
        K = N_CLASSES[self.dataset]
        if self.protocol == "imbalanced":
            variants = VARIANTS["imbalanced"] if self.method == "capsnet" else ("",)
            if self.variant not in variants:
                raise ConfigError(f"variant {self.variant!r} for {self.method}: choose one of {variants}")
            if self.normal_class is None or not 0 <= self.normal_class < K:
                raise ConfigError(f"normal class {self.normal_class} out of range 0..{K - 1} for {self.dataset}")
            f = self.anomaly_fraction
            if f is None or not 0 < f <= 0.5:
                raise ConfigError(f"anomaly fraction {f} outside (0, 0.5]")
            if self.held_out:
                raise ConfigError("held_out belongs to protocol novelty")
        else:
            if self.variant:
                raise ConfigError("protocol novelty has no variant")
            if not self.held_out or not all(0 <= h < K for h in self.held_out) or len(self.held_out) >= K - 1:
                raise ConfigError(f"held-out classes {self.held_out} must be 1..{K - 2} classes in 0..{K - 1}")
            if self.normal_class is not None or self.anomaly_fraction is not None:
                raise ConfigError("normal_class and anomaly_fraction belong to protocol imbalanced")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if self.lr_decay is not None and not (math.isfinite(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.attempt < MAX_ATTEMPTS:
            raise ConfigError(f"attempt must be in 0..{MAX_ATTEMPTS - 1}, got {self.attempt}")
        if self.attempt and (self.protocol, self.method) != ("imbalanced", "capsnet"):
            raise ConfigError("attempt (the stall rule's retraining) belongs to paper A's capsnet cells")

    @property
    def n_classes(self) -> int:
        return N_CLASSES[self.dataset]

    @property
    def n_normal_classes(self) -> int:
        """Protocol novelty: the classes a network learns (all but the held-out ones)."""
        return self.n_classes - len(self.held_out)

    @property
    def init_seed(self) -> int:
        """The seed of the weights and the data order: the cell's seed for its first training,
        offset by :data:`ATTEMPT_SEED_STRIDE` per attempt of the stall rule (the split keeps ``seed``)."""
        return self.seed + ATTEMPT_SEED_STRIDE * self.attempt

    def resolved(self) -> "CellSpec":
        """The spec with the paper's training settings wherever a field is None."""
        paper = PAPER_A_TRAINING if self.protocol == "imbalanced" else PAPER_B_TRAINING.get(self.dataset, PAPER_B_DEFAULT)
        return replace(self, **{k: v for k, v in paper.items() if getattr(self, k) is None})

    @property
    def cell_id(self) -> str:
        """A stable, filesystem-safe name, unique per cell: every setting that changes the result
        is in it (a learning rate or decay other than the paper's, and a stall-rule attempt, as
        suffixes, so the paper's cells keep their names)."""
        r = self.resolved()
        paper = PAPER_A_TRAINING if r.protocol == "imbalanced" else PAPER_B_TRAINING.get(r.dataset, PAPER_B_DEFAULT)
        parts = [r.protocol, r.dataset, r.method]
        if r.variant:
            parts.append(r.variant)
        if r.protocol == "imbalanced":
            parts += [f"n{r.normal_class}", f"f{r.anomaly_fraction:g}"]
        else:
            parts.append("h" + "".join(map(str, r.held_out)))   # one digit per class: parse_novelty_cell_id
        parts += [f"s{r.seed}", f"e{r.epochs}", f"b{r.batch_size}"]
        if r.lr != DEFAULT_LR:
            parts.append(f"lr{r.lr:g}")
        if r.lr_decay != paper["lr_decay"]:
            parts.append(f"d{r.lr_decay:g}")
        if r.attempt:
            parts.append(f"a{r.attempt}")
        return "-".join(parts)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["held_out"] = list(self.held_out)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CellSpec":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: (tuple(v) if k == "held_out" else v) for k, v in d.items() if k in known})

    def __str__(self) -> str:
        return self.cell_id


def held_out_label(held_out) -> str:
    """The held-out classes as the store's rows and the book write them: "2", "0+3+5"."""
    return "+".join(map(str, held_out))


_NOVELTY_ID = re.compile(r"novelty-(?P<dataset>[a-z0-9_]+)-(?P<method>[a-z0-9_]+)(?:-(?P<variant>[a-z0-9_]+))?"
                         r"-h(?P<held_out>\d+)-s(?P<seed>\d+)-")


def parse_novelty_cell_id(cell_id: str) -> Optional[dict]:
    """What ``CellSpec.cell_id`` wrote into a novelty cell's id: dataset, method, variant ("" for
    none), held_out (a tuple of the one-digit class labels) and seed; None for any other id."""
    m = _NOVELTY_ID.match(cell_id)
    if m is None:
        return None
    return {"dataset": m["dataset"], "method": m["method"], "variant": m["variant"] or "",
            "held_out": tuple(int(c) for c in m["held_out"]), "seed": int(m["seed"])}


def spec_json(spec: CellSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class FastOptions:
    """GPU switches, all off by default (and none measurable on a CPU-only machine).

    tf32: TF32 matmuls/convolutions (CUDA only; off, they are really off, though torch allows
    TF32 convolutions by default). bf16: autocast the two convolutions and the decoder to
    bfloat16; squash, routing and the losses stay fp32. conv1_fp32: under bf16, conv1 stays
    fp32, as on the plain path. exact_bf16_reductions: bf16 matmuls reduce in fp32 (CUDA's
    reduced-precision reductions off). channels_last: NHWC convolutions. compile:
    ``torch.compile`` the forward + loss. cuda_graphs: compile with mode="reduce-overhead".
    compile_backend: torch.compile's backend ("inductor", which generates the device's code;
    "aot_eager" traces and differentiates the same graph and runs it op by op, a check on a
    CPU of everything but the GPU's code generation, in seconds instead of a minute).
    """
    tf32: bool = False
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    conv1_fp32: bool = False
    exact_bf16_reductions: bool = False
    chunk_steps: int = 200        # steps whose batch indices are drawn and moved to the device at once
    compile_backend: str = "inductor"

    SWITCHES = ("tf32", "bf16", "channels_last", "compile", "cuda_graphs", "conv1_fp32", "exact_bf16_reductions")

    @classmethod
    def add_flags(cls, parser) -> None:
        """``--tf32 --bf16 --channels-last --compile --cuda-graphs`` on an argparse parser."""
        for name in cls.SWITCHES:
            parser.add_argument(f"--{name.replace('_', '-')}", action="store_true",
                                help="fast-path option (capslib.core.config.FastOptions)")

    @classmethod
    def from_flags(cls, args) -> "FastOptions":
        """The options set by :meth:`add_flags`'s flags in parsed ``args``."""
        return cls(**{name: getattr(args, name) for name in cls.SWITCHES})
