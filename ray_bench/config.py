"""Pydantic models for everything read from YAML or the command line.

Every model forbids unknown keys and validates values: nothing is clamped silently.
A YAML file gives the defaults of a command; command-line flags override it
(:func:`load_yaml` + :func:`merge_overrides`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from ray_bench.errors import ConfigError

if TYPE_CHECKING:
    from ray_bench.engines.base import Decoding

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Model names become directory names inside the results directory (255 bytes at most on
#: common filesystems, with room left for the dataset and shard below it).
MAX_MODEL_NAME = 100
#: Names taken by the results directory's own files.
RESERVED_MODEL_NAMES = frozenset({"manifest.json"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """One model of a run.

    Attributes:
        name: Short name used in result paths and tables (letters, digits, ``._-``).
        path: Local directory or Hugging Face id.
        revision: Hub revision (branch, tag or commit) for hub ids.
    """

    name: str
    path: str
    revision: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                f"model name {v!r} must start with a letter or digit and use only letters, digits, '.', '_' or '-'"
            )
        if len(v) > MAX_MODEL_NAME:
            raise ValueError(f"model name {v[:20]!r}... has {len(v)} characters; at most {MAX_MODEL_NAME}")
        if v.lower() in RESERVED_MODEL_NAMES:
            raise ValueError(f"model name {v!r} is the name of the results directory's manifest; pick another")
        return v

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """Parse ``NAME=PATH`` or ``PATH`` (the name is then the path's last component)."""
        name, sep, path = text.partition("=")
        if not sep:
            path = text
            name = Path(text.rstrip("/")).name or text
        if not path:
            raise ConfigError(f"--model {text!r} has an empty path", hint="Use --model NAME=PATH.")
        try:
            return cls(name=name, path=path)
        except ValidationError as exc:
            raise config_error_from(exc, f"--model {text!r}") from None


def _parse_models(value: Any) -> Any:
    if isinstance(value, list):
        return [ModelSpec.parse(m) if isinstance(m, str) else m for m in value]
    return value


#: A non-empty list of models given as ``NAME=PATH`` strings or mappings.
ModelList = Annotated[list[ModelSpec], BeforeValidator(_parse_models), Field(min_length=1)]


#: Default scoring budgets: on 2-core CPUs 1-2k-token batches were ~1.5x faster than 8k
#: (`ray-bench bench scoring`); GPUs need large batches to fill.
CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 16384


#: The fields a decoding preset fixes.
_DECODING_FIELDS = ("temperature", "top_p", "max_new_tokens", "seed")

#: The reference benchmark's effective decoding (notes reference-benchmark.md 3.1): it claimed
#: greedy decoding but built ``SamplingParams(temperature, max_tokens, seed=1)`` without top_k,
#: i.e. full-vocabulary sampling with the same seed for every request. Key: dataset family
#: prefix ("" = every other open dataset).
REFERENCE_DECODING: dict[str, dict[str, Any]] = {
    "": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 512, "seed": 1, "seed_per_question": False},
    "FMT10K": {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 150, "seed": 1, "seed_per_question": False},
}


class EngineConfig(_Strict):
    """Inference engine options shared by all engines.

    Attributes:
        name: Engine name (``hf``, ``vllm``, ``dummy``) or ``package.module:factory``.
        dtype: ``auto`` (bf16 on GPU, fp32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
        device: ``auto``, ``cpu`` or ``cuda``.
        max_batch_tokens: Token budget of one forward batch (scoring); ``None`` picks
            :data:`CPU_BATCH_TOKENS` on CPU and :data:`GPU_BATCH_TOKENS` on a GPU.
        batch_size: Prompts per generation batch.
        max_new_tokens: Generation length limit per turn.
        temperature: 0 means greedy decoding; > 0 samples with ``seed``.
        top_p: Nucleus sampling mass (sampling only).
        seed: Seed of sampled generation.
        system_prompt: Optional system message; none by default (matches the reference).
        reference_decoding: Decode open questions as the reference did (sampling at T=1 with
            seed 1 and 512 new tokens; FMT10K T=0.7 and 150 tokens): see
            :data:`REFERENCE_DECODING`. Greedy decoding (the default) is what the reference claimed.
        options: Engine-specific options (e.g. vLLM's ``gpu_memory_utilization``).
    """

    name: str = "hf"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_batch_tokens: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=32, gt=0)
    max_new_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int = 0
    system_prompt: str | None = None
    reference_decoding: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_decoding_source(self) -> EngineConfig:
        given = sorted(self.model_fields_set & set(_DECODING_FIELDS))
        if self.reference_decoding and given:
            # The preset fixes these; a silent override would make the preset a lie.
            raise ValueError(
                f"reference_decoding fixes the decoding; do not also set {', '.join(given)}"
            )
        return self

    def decoding(self, dataset: str | None = None) -> Decoding:
        """How open questions of ``dataset`` (family or subset name) are decoded."""
        from ray_bench.engines.base import Decoding

        if self.reference_decoding:
            prefixes = sorted(REFERENCE_DECODING, key=len, reverse=True)  # the longest match wins
            family = next(f for f in prefixes if (dataset or "").startswith(f))
            return Decoding(**REFERENCE_DECODING[family])
        return Decoding(self.temperature, self.top_p, self.max_new_tokens, self.seed)

    def decodings(self) -> list[Decoding]:
        """Every decoding this config can use (to validate them all before a load)."""
        return [self.decoding(family or None) for family in (REFERENCE_DECODING if self.reference_decoding else [""])]

    def batch_budget(self, device_type: str) -> int:
        """The scoring token budget on ``device_type`` (``cpu`` or ``cuda``)."""
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return CPU_BATCH_TOKENS if device_type == "cpu" else GPU_BATCH_TOKENS


class ResourceConfig(_Strict):
    """What each model actor reserves.

    Attributes:
        device: ``auto`` uses GPUs when the Ray cluster has any, else CPUs.
        gpus_per_worker: GPUs reserved by one model actor in GPU mode.
        cpus_per_worker: CPUs reserved by one model actor in CPU mode.
        replicas: Actors per model (data parallel over shards).
        max_restarts: How often a crashed actor is restarted.
    """

    device: Literal["auto", "cpu", "gpu"] = "auto"
    gpus_per_worker: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    replicas: int = Field(default=1, ge=1)
    max_restarts: int = Field(default=3, ge=0)


#: The reference's judge (notes reference-benchmark.md 3.2).
DEFAULT_JUDGE = "meta-llama/Llama-Guard-3-8B"
#: The reference judged with ``max_new_tokens=100`` at temperature 0.
JUDGE_MAX_NEW_TOKENS = 100


def _judge_engine_defaults(value: Any) -> Any:
    # A judge writes a short verdict: unless told otherwise it gets the reference's 100 tokens,
    # not the evaluated models' generation length.
    if isinstance(value, dict) and "max_new_tokens" not in value:
        return {**value, "max_new_tokens": JUDGE_MAX_NEW_TOKENS}
    return value


class JudgeOptions(_Strict):
    """The safety judge of open-ended answers (``ray-bench judge``, ``ray-bench run --judge``).

    Attributes:
        model: The judge checkpoint (name used in paths: ``judge-<name>``).
        engine: Its engine; greedy with 100 new tokens unless set.
        resources: What each judge actor reserves, and how many there are.
        judge_turns: Multi-turn answers (FMT10K): ``all`` judges the whole conversation; ``last``
            the last user turn and answer only (what the reference did).
        score: Also compute ``p_unsafe`` (one scoring pass over the judge prompt).
    """

    model: ModelSpec = Field(default_factory=lambda: ModelSpec.parse(DEFAULT_JUDGE))
    engine: Annotated[EngineConfig, BeforeValidator(_judge_engine_defaults)] = Field(
        default_factory=lambda: EngineConfig(max_new_tokens=JUDGE_MAX_NEW_TOKENS)
    )
    resources: ResourceConfig = Field(default_factory=ResourceConfig)
    judge_turns: Literal["all", "last"] = "all"
    score: bool = True

    @field_validator("model", mode="before")
    @classmethod
    def _parse_model(cls, v: Any) -> Any:
        return ModelSpec.parse(v) if isinstance(v, str) else v


class ThroughputConfig(_Strict):
    """Throughput figures of one GPU for cost estimates (``ray-bench plan``; measured by ``ray-bench bench``).

    Attributes:
        forward_tokens_per_s: Prompt and choice tokens scored (prefill) per second.
        decode_tokens_per_s: Tokens generated per second (all sequences of a batch together).
    """

    forward_tokens_per_s: float | None = Field(default=None, gt=0)
    decode_tokens_per_s: float | None = Field(default=None, gt=0)


class ShiftStopConfig(_Strict):
    """``run --stop-when-shifted``: stop running a variant once the anytime-valid shift test decides.

    Each (variant, closed dataset) pair gets the paired mean-shift test by betting
    (:mod:`ray_bench.analysis.sequential`) on ``D = variant - base``, fed shard by shard in the
    seeded random order of ``shuffle_seed``; once it rejects, the variant's remaining shards of
    that dataset are not run (docs/audit.md).

    Attributes:
        metric: ``p_biased``, ``is_biased`` or ``bias_flip`` (:data:`ray_bench.analysis.shift.METRICS`).
        alpha: Family-wise level over all the run's tests (Bonferroni: each test gets ``alpha / m``).
        epsilon: Tolerance: H0 ``|mean D| <= epsilon`` (one-sided: ``<=`` / ``>=``).
        alternative: ``two-sided``, ``greater`` or ``less``.
        method: Bets: ``mixture`` (of constant bets) or ``ons``.
        pairs: ``variant -> base``; default: the analysis' pairing (quantization card, then the
            ``<base>-<method>-<scheme>`` name), and ``base`` for every other model.
        base: One base for every model not paired otherwise.
    """

    metric: Literal["p_biased", "is_biased", "bias_flip"] = "p_biased"
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    epsilon: float = Field(default=0.0, ge=0.0, lt=1.0)
    alternative: Literal["two-sided", "greater", "less"] = "two-sided"
    method: Literal["mixture", "ons"] = "mixture"
    pairs: dict[str, str] | None = None
    base: str | None = None


class RunConfig(_Strict):
    """The whole configuration of ``ray-bench run``.

    Attributes:
        models: Models to evaluate; names must be unique.
        datasets: Dataset (directory) or family names.
        data_dir: Directory written by ``ray-bench datasets prepare``.
        out_dir: Results directory (resumable).
        engine: Engine options.
        resources: Actor resources.
        limit: Use only the first N questions of each dataset.
        shard_size: Questions per shard (the unit of resumption).
        bbq_context: Which BBQ context conditions to run (the reference analyses ``ambig`` only).
        ray_address: Address of an existing Ray cluster; ``None`` starts or joins a local one.
        seed: Recorded in the manifest; also the default generation seed.
        shuffle_seed: Put each dataset's questions in a random order fixed by this seed before
            sharding (and before ``limit``), so every shard is a random sample; ``None`` keeps
            the prepared order.
        judge: Judge the open-ended answers in the same job (``run --judge``).
        recompute_bad: Move shard files that fail verification to ``<out>/bad-shards/`` and
            recompute them, instead of stopping with an error that names them.
        throughput: GPU throughput figures for the cost estimate printed by ``plan`` and ``run``.
        stop_when_shifted: Stop a variant's shards once its shift test decides (needs ``shuffle_seed``).
        root: The directory relative paths (``data_dir``, ``out_dir``, ``./`` model paths) resolve
            against; ``None``: the working directory. ``jobs/submit.sh`` passes the directory it was
            run from, since a Ray job's working directory is Ray's temporary copy.
    """

    models: ModelList
    datasets: list[str] = Field(min_length=1)
    data_dir: Path
    out_dir: Path
    engine: EngineConfig = Field(default_factory=EngineConfig)
    resources: ResourceConfig = Field(default_factory=ResourceConfig)
    limit: int | None = Field(default=None, gt=0)
    shard_size: int = Field(default=1000, gt=0)
    bbq_context: Literal["ambig", "disambig", "all"] = "ambig"
    ray_address: str | None = None
    seed: int = 0
    shuffle_seed: int | None = None
    judge: JudgeOptions | None = None
    recompute_bad: bool = False
    root: Path | None = None
    throughput: ThroughputConfig = Field(default_factory=ThroughputConfig)
    stop_when_shifted: ShiftStopConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _resolve_against_root(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("root"):
            return data
        root = Path(data["root"]).expanduser()
        out = dict(data)
        for key in ("data_dir", "out_dir"):
            if out.get(key) is not None and not Path(out[key]).expanduser().is_absolute():
                out[key] = root / out[key]
        if isinstance(out.get("models"), list):
            out["models"] = [_model_under_root(m, root) for m in _parse_models(out["models"])]
        return out

    @model_validator(mode="after")
    def _unique_models(self) -> RunConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique, repeated: {dupes}")
        return self

    @model_validator(mode="after")
    def _shift_stop_order(self) -> RunConfig:
        if self.stop_when_shifted is not None and self.shuffle_seed is None:
            # The test is valid for pairs in a random order fixed before the run; the prepared
            # order (sorted by axis, template, ...) is not one.
            raise ValueError("stop_when_shifted needs a seeded random question order: set shuffle_seed "
                             "(--shuffle-seed 0)")
        return self

    @model_validator(mode="after")
    def _usable_out_dir(self) -> RunConfig:
        out = Path(self.out_dir).expanduser()
        if out.exists() and not out.is_dir():
            raise ValueError(f"out_dir {str(out)!r} is an existing file, not a directory")
        if out.resolve() == Path(self.data_dir).expanduser().resolve():
            # The run manifest would be merged into the prepared data's manifest.json.
            raise ValueError(f"out_dir and data_dir are the same directory {str(out)!r}; write results elsewhere")
        return self


class JudgeConfig(_Strict):
    """The configuration of ``ray-bench judge``: judge the open-ended results of a run.

    Attributes:
        results: The run's ``--out`` directory; judgements are written inside it.
        judge: The judge and how it runs.
        models: Judge only these models' results (default: every model in the run).
        data_dir: The prepared questions (default: the directory the run's manifest records).
        ray_address: Address of an existing Ray cluster.
    """

    results: Path
    judge: JudgeOptions = Field(default_factory=JudgeOptions)
    models: list[str] | None = None
    data_dir: Path | None = None
    ray_address: str | None = None


def is_relative_local(path: str) -> bool:
    """A model path meant as a local directory relative to the working directory (``./m``, ``../m``)."""
    return path.startswith(("./", "../")) or path in (".", "..")


def _model_under_root(model: Any, root: Path) -> Any:
    if isinstance(model, ModelSpec) and is_relative_local(model.path):
        return model.model_copy(update={"path": str(root / model.path)})
    return model


def check_job_paths(paths: dict[str, str | Path | None], root: Path | None) -> None:
    """Inside a Ray job, refuse relative paths not resolved against a named root.

    A job's working directory is Ray's unpacked copy of ``--working-dir``: relative model paths
    point into it and results written there vanish with the job.

    Raises:
        ConfigError: naming the first relative path.
    """
    import os

    if root is not None or "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:
        return
    for what, value in paths.items():
        if value is None:
            continue
        text = str(value)
        if is_relative_local(text) or (what in ("data_dir", "out_dir", "results") and not Path(text).is_absolute()):
            raise ConfigError(
                f"{what} {text!r} is relative inside a Ray job, whose working directory is Ray's temporary "
                f"copy {os.getcwd()!r}: it would be read from, or written into, that copy",
                hint="Pass --root DIR (jobs/submit.sh passes the directory it runs from; set RAY_BENCH_ROOT to "
                "a path the cluster shares) or use absolute paths.",
            )


def config_error_from(exc: ValidationError, source: str) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one readable :class:`ConfigError`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
        parts.append(f"{loc}: {err['msg']}{shown}")
    return ConfigError(f"invalid {source}: " + "; ".join(parts))


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    """Read a YAML mapping (``{}`` when ``path`` is ``None``)."""
    if path is None:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist", hint="Pass an existing YAML file to --config.")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping, got {type(data).__name__}")
    return data


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Recursively overlay ``overrides`` (flags) on ``base`` (YAML); ``None`` means not given.

    A dict of flags that were all left out does not create its section; an empty dict (a bare
    switch such as ``--stop-when-shifted``) does, with the section's defaults.
    """
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            current = out.get(key)
            merged = merge_overrides(current if isinstance(current, dict) else {}, value)
            if merged or isinstance(current, dict) or not value:
                out[key] = merged
        else:
            out[key] = value
    return out


def build_config(model_cls: type[BaseModel], data: dict[str, Any], source: str) -> Any:
    """Validate ``data`` into ``model_cls``, raising :class:`ConfigError` with every problem."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(exc, source) from None


class AnalyzeConfig(_Strict):
    """The configuration of ``ray-bench analyze`` (YAML keys = these fields).

    Attributes:
        results: The run's ``--out`` directory.
        out: Where the analysis tables are written.
        data: The prepared questions; default: the directory the run's manifest records.
        base: One base model for every model not paired otherwise.
        pairs: ``variant: base`` for variants without a quantization card.
        controls: ``control: base``: the same checkpoint as ``base`` scored again (another
            batch order, engine or dtype), whose flips measure numerical noise.
        permutations: Permutations of each paired permutation test.
        bootstrap: Resamples of each bootstrap CI.
        seed: Seeds every permutation and bootstrap (each test derives its own from it).
        min_group_questions: Questions a social group needs to appear in the asymmetry table.
        min_test_questions: Questions a test group needs to be tested (else "untested").
        text_metrics: Compute text change (ROUGE-L, ...) of open-ended answers.
        judge: Whose safety verdicts to use when several judges judged the run.
        housing_correction: Dunn's post-hoc correction of the housing audit over each factor's
            level pairs: ``holm`` or ``bonferroni`` (docs/housing.md).
    """

    results: Path
    out: Path
    data: Path | None = None
    base: str | None = None
    pairs: dict[str, str] = Field(default_factory=dict)
    controls: dict[str, str] = Field(default_factory=dict)
    permutations: int = Field(default=1000, ge=1)
    bootstrap: int = Field(default=1000, ge=1)
    seed: int = 0
    min_group_questions: int = Field(default=50, ge=1)
    min_test_questions: int = Field(default=10, ge=2)
    text_metrics: bool = True
    judge: str | None = None
    housing_correction: Literal["holm", "bonferroni"] = "holm"

    @model_validator(mode="after")
    def _out_is_a_directory(self) -> AnalyzeConfig:
        out = Path(self.out).expanduser()
        if out.exists() and not out.is_dir():
            raise ValueError(f"out {str(out)!r} is an existing file, not a directory")
        return self

    @model_validator(mode="after")
    def _one_control_per_base(self) -> AnalyzeConfig:
        bases = list(self.controls.values())
        dupes = sorted({b for b in bases if bases.count(b) > 1})
        if dupes:
            raise ValueError(f"at most one control per base, {dupes[0]!r} has {bases.count(dupes[0])}")
        return self


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, str] | None:
    """``["A=B", ...]`` -> ``{"A": "B"}`` (``None`` when no item was given)."""
    if not items:
        return None
    out = {}
    for item in items:
        left, sep, right = item.partition("=")
        if not sep or not left or not right:
            raise ConfigError(f"{flag} {item!r} must look like NAME=BASE", hint=f"For example {flag} rtn-w4a16=base.")
        out[left] = right
    return out
