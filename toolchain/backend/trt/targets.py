"""Target profiles: the one table that lowering and engine builds read (SM, backend, precisions, attention)."""

from dataclasses import asdict, dataclass, field

from ...util.errors import NtcError

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8", "int4", "nvfp4")
BACKENDS = ("tensorrt_rtx", "tensorrt")
# TensorRT-RTX builds FP8 only for these SMs (measured with tensorrt-rtx 1.7).
RTX_FP8_SMS = (89, 120)
# TensorRT-RTX builds FP4 (E2M1) weights only for these SMs (measured with tensorrt-rtx 1.7: sm_89 refuses them).
RTX_FP4_SMS = (120, 121)
# First TensorRT release with a native attention layer; TensorRT-RTX always has one.
NATIVE_ATTENTION_TRT = (10, 14)
GIB = 1 << 30


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def precision_problem(sm: int, backend: str, precision: str) -> str | None:
    """Why `precision` cannot be built for (sm, backend), or None when it can. Short clause, no target name."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}"
    if precision == "bf16" and sm < 80:
        return "bf16 needs sm_80+"
    if precision == "int8" and sm < 80:
        return "int8 (Q/DQ) needs sm_80+"
    if precision == "fp8":
        if sm < 89:
            return "fp8 needs sm_89+"
        if backend == "tensorrt_rtx" and sm not in RTX_FP8_SMS:
            return "fp8 on TensorRT-RTX builds only for sm_89/sm_120"
    if precision == "int4" and sm < 80:
        return "int4 (weight-only) needs sm_80+"  # TensorRT-RTX refuses blocked INT4 weights for sm_75 (measured)
    if precision == "nvfp4" and (backend != "tensorrt_rtx" or sm not in RTX_FP4_SMS):
        return "nvfp4 needs FP4 (built on TensorRT-RTX for sm_120/sm_121 only)"
    return None


def attention_lowering(backend: str, trt_min: str) -> str:
    """"native" where every allowed TensorRT has an attention layer (TRT-RTX, TensorRT >= 10.14), else "plugin"."""
    if backend == "tensorrt_rtx" or _version_tuple(trt_min)[:2] >= NATIVE_ATTENTION_TRT:
        return "native"
    return "plugin"


@dataclass(frozen=True)
class TargetProfile:
    """One deployment target. `trt_min`/`trt_max` bound the backend's version (max None: open)."""

    name: str
    sm: int
    backend: str
    trt_min: str
    trt_max: str | None
    memory_budget_gib: float
    description: str
    precisions: tuple[str, ...] = field(default=())
    attention: str = ""

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"{self.name}: unknown backend {self.backend}")
        # Derived fields come from the rules above so the table and check_precision never disagree.
        object.__setattr__(self, "precisions",
                           tuple(p for p in PRECISIONS if precision_problem(self.sm, self.backend, p) is None))
        object.__setattr__(self, "attention", attention_lowering(self.backend, self.trt_min))

    @property
    def sm_name(self) -> str:
        return f"sm_{self.sm}"

    @property
    def compute_capability(self) -> str:
        """The TensorRT-RTX ComputeCapability member name (SM86, ...)."""
        return f"SM{self.sm}"

    @property
    def trt_range(self) -> str:
        if self.trt_max == self.trt_min:
            return self.trt_min
        return f">={self.trt_min}" + (f",<={self.trt_max}" if self.trt_max else "")

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.memory_budget_gib * GIB)

    def allows_trt_version(self, version: str) -> bool:
        v = _version_tuple(version.split("+")[0])
        lo = _version_tuple(self.trt_min)
        if v[: len(lo)] < lo:
            return False
        if self.trt_max:
            hi = _version_tuple(self.trt_max)
            return v[: len(hi)] <= hi
        return True

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(sm_name=self.sm_name, trt_range=self.trt_range)
        return d


TARGETS: dict[str, TargetProfile] = {t.name: t for t in (
    TargetProfile("rtx-turing", 75, "tensorrt_rtx", "1.7", None, 8,
                  "GeForce RTX 20 / Quadro RTX (Turing), TensorRT-RTX AOT"),
    TargetProfile("rtx-ampere", 86, "tensorrt_rtx", "1.7", None, 8,
                  "GeForce RTX 30 / RTX A-series (Ampere), TensorRT-RTX AOT"),
    TargetProfile("rtx-ada", 89, "tensorrt_rtx", "1.7", None, 8,
                  "GeForce RTX 40 / RTX Ada (Ada Lovelace), TensorRT-RTX AOT"),
    TargetProfile("rtx-blackwell", 120, "tensorrt_rtx", "1.7", None, 16,
                  "GeForce RTX 50 / RTX PRO Blackwell, TensorRT-RTX AOT"),
    TargetProfile("gb10", 121, "tensorrt_rtx", "1.7", None, 64,
                  "DGX Spark GB10 (Blackwell, unified memory), TensorRT-RTX AOT"),
    TargetProfile("jetson-orin", 87, "tensorrt", "10.3", "10.3", 8,
                  "Jetson AGX Orin / Orin NX / Orin Nano, JetPack 6 (TensorRT 10.3, no attention layer)"),
    TargetProfile("jetson-thor", 110, "tensorrt", "10.13", "11.4", 128,
                  "Jetson AGX Thor, JetPack 7 (TensorRT 10.13+ / 11.x)"),
    TargetProfile("datacenter-hopper", 90, "tensorrt", "10.14", None, 80,
                  "H100 / H200 (Hopper), full TensorRT"),
)}

DEFAULT_TARGETS = ("rtx-ampere", "rtx-ada", "rtx-blackwell", "jetson-orin")


def get_target(name: "str | TargetProfile") -> TargetProfile:
    if isinstance(name, TargetProfile):
        return name
    try:
        return TARGETS[name]
    except KeyError:
        raise NtcError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}") from None


def check_precision(target: "str | TargetProfile", precision: str) -> TargetProfile:
    """The target profile if it builds `precision`; otherwise NtcError like 'fp8 needs sm_89+: rtx-ampere is sm_86'."""
    t = get_target(target)
    problem = precision_problem(t.sm, t.backend, precision)
    if problem is not None:
        if precision not in PRECISIONS:
            raise NtcError(problem)
        raise NtcError(f"{problem}: {t.name} is {t.sm_name} ({t.backend}); it builds {', '.join(t.precisions)}")
    return t


def plan_builds(targets, precisions) -> tuple[list[tuple[TargetProfile, str]], list[dict]]:
    """(target, precision) pairs each target can build, and the refused pairs {target, precision, reason}."""
    todo, refused = [], []
    for target in (get_target(t) for t in targets):
        for p in precisions:
            problem = precision_problem(target.sm, target.backend, p)
            if problem is None:
                todo.append((target, p))
            else:
                refused.append({"target": target.name, "precision": p,
                                "reason": f"{problem}: {target.name} is {target.sm_name}"})
    return todo, refused
