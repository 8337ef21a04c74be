"""The record of one measured run, the one shape every producer writes and every reader reads.

The load test, ``tpserve demo``, ``tpserve sweep`` and the GPU tests write a :class:`RunRecord`;
``tpserve report`` reads them back. Its JSON keeps ``vllm bench serve``'s summary keys at the top
level, so tools written for vLLM's result files read tpserve's too; ``docs/results.md`` describes
every field. Files written before the schema had a version (version 1) still load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path

from tpserve.fetch.errors import ConfigError
from tpserve.workload import runrecord_v1
from tpserve.workload.metrics import Metrics, error_counts, summarize
from tpserve.workload.requesttypes import RequestResult, RunPlan

SCHEMA_VERSION = 2
VERSION_KEY = "tpserve_schema_version"
ENDPOINT_TYPES = {"completions": "openai", "chat": "openai-chat"}  # vllm bench serve's --backend names


@dataclass(frozen=True)
class Layout:
    """What served the run: which model on which devices, split how, with which vLLM settings.

    ``vllm_flags`` holds every vLLM flag that differs from vLLM's defaults, other than the ones
    with their own field (model, parallel sizes) and the address (host, port); a switch maps to True.
    """

    model: str
    device_kind: str
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    replicas: int = 1
    vllm_flags: dict[str, str | bool] = field(default_factory=dict)

    @property
    def device_count(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.replicas


@dataclass(frozen=True)
class Provenance:
    """Where and when the run was measured, and with what; enough to reproduce it.

    ``machine`` is :func:`tpserve.machine.describe_machine` (host, CPU, GPUs, package versions) of
    the host that ran the command, empty for a bare load test; ``server_argv`` is the serve command.
    """

    started_at: str
    finished_at: str
    server_version: str = ""
    client_host: str = ""
    client_python: str = ""
    command: str = "loadtest"
    machine: dict = field(default_factory=dict)
    server_argv: tuple[str, ...] = ()
    server_startup_s: float | None = None


@dataclass(frozen=True)
class TokenCheck:
    """The tokens the client counted against the server's own counters over the run.

    ``status`` is "ok", "mismatch: ..." or "skipped: ..." with the reason. A merged run keeps each
    part's check in ``parts``; its counts are their sums.
    """

    status: str
    client_completion_tokens: int = 0
    client_prompt_tokens: int = 0
    server_generation_tokens: int | None = None
    server_prompt_tokens: int | None = None
    parts: tuple[TokenCheck, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict:
        document = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "parts"}
        return document | ({"parts": [part.to_json() for part in self.parts]} if self.parts else {})

    @classmethod
    def from_json(cls, document: dict) -> TokenCheck:
        parts = tuple(cls.from_json(part) for part in document.get("parts", ()))
        return cls(**{k: v for k, v in document.items() if k != "parts"}, parts=parts)


@dataclass(frozen=True)
class RunRecord:
    """One measured run: its workload, layout, provenance, figures, token check and errors.

    ``errors`` counts failed requests by reason; ``problems`` are why the run does not count (empty
    when it does). ``context`` holds what the command that made the run adds: the demo's options,
    the sweep's name and repeat.
    """

    workload: RunPlan
    metrics: Metrics
    token_check: TokenCheck
    provenance: Provenance
    layout: Layout | None = None
    errors: dict[str, int] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    warmup_requests_sent: int = 0
    workers: int = 1
    context: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def model_id(self) -> str:
        return self.workload.model

    def to_json(self) -> dict:
        """The JSON document: ``vllm bench serve``'s keys first, then tpserve's sections."""
        plan = self.workload
        return {
            VERSION_KEY: SCHEMA_VERSION,
            "date": _vllm_date(self.provenance.started_at),
            "endpoint_type": ENDPOINT_TYPES[plan.endpoint],
            "backend": ENDPOINT_TYPES[plan.endpoint],
            "model_id": plan.model,
            "tokenizer_id": plan.model,
            "request_rate": plan.request_rate or "inf",
            "burstiness": 1.0,
            "max_concurrency": plan.concurrency,
            **self.metrics.to_json(),
            "errors": self.errors,
            "endpoint": plan.endpoint_path,
            "ok": self.ok,
            "problems": list(self.problems),
            "token_check": self.token_check.to_json(),
            "warmup_requests_sent": self.warmup_requests_sent,
            "workers": self.workers,
            "workload": asdict(plan) | {"mode": plan.mode},
            "layout": asdict(self.layout) if self.layout else None,
            "provenance": asdict(self.provenance),
            "context": self.context,
        }

    @classmethod
    def from_json(cls, document: dict) -> RunRecord:
        layout = document.get("layout")
        provenance = document["provenance"]
        return cls(
            workload=_known(RunPlan, document["workload"]),
            metrics=Metrics.from_json(document),
            token_check=TokenCheck.from_json(document["token_check"]),
            provenance=_known(Provenance, provenance | {"server_argv": tuple(provenance.get("server_argv", ()))}),
            layout=Layout(**layout) if layout else None,
            errors=document.get("errors", {}),
            problems=tuple(document.get("problems", ())),
            warmup_requests_sent=document.get("warmup_requests_sent", 0),
            workers=document.get("workers", 1),
            context=document.get("context", {}),
        )


def _known(cls, document: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in document.items() if key in names})


def _vllm_date(iso: str) -> str:
    """``vllm bench serve``'s ``date`` (``%Y%m%d-%H%M%S``) of an ISO time; empty when unknown."""
    try:
        return datetime.fromisoformat(iso).strftime("%Y%m%d-%H%M%S")
    except ValueError:
        return ""


def is_run_document(document: object) -> bool:
    """Whether a parsed JSON file is a run record of any version (benchmarks write other files)."""
    return isinstance(document, dict) and (VERSION_KEY in document or
                                           ("output_throughput" in document and "plan" in document))


def from_document(document: dict, source: str | Path = "<document>") -> RunRecord:
    """The record in a parsed JSON document of any known schema version; others are refused."""
    version = document.get(VERSION_KEY, 1)
    if version == SCHEMA_VERSION:
        return RunRecord.from_json(document)
    if version == 1 and runrecord_v1.is_v1(document):
        return RunRecord.from_json(runrecord_v1.upgrade(document))
    raise ConfigError(f"{source} is a run record of schema version {version!r}, which this tpserve cannot read "
                      f"(it reads versions 1 and {SCHEMA_VERSION}): upgrade tpserve to report it")


def load(path: str | Path) -> RunRecord:
    """Read a run record file of any known schema version."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a JSON results file: {exc}") from exc
    if not is_run_document(document):
        raise ConfigError(f"{path} is not a run record (no {VERSION_KEY}, nor a version 1 report)")
    return from_document(document, path)


def write(path: str | Path, record: RunRecord) -> Path:
    """Write RECORD as JSON, replacing PATH atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def merge(parts: Sequence[RunRecord], results: Sequence[RequestResult], part_name: str = "part") -> RunRecord:
    """The records of the parts of one run (replicas, worker processes) as one record.

    The figures are computed again from every part's raw RESULTS, never averaged; counts add up;
    each part's token check and problems are kept, named PART_NAME and its index.
    """
    if not parts:
        raise ValueError("merge needs at least one record")
    first = parts[0]
    added_up = ("num_requests", "concurrency", "warmup_requests", "request_rate")
    workload = replace(first.workload, **{name: sum(getattr(p.workload, name) for p in parts) for name in added_up})
    checks = [p.token_check for p in parts]

    def added(name: str) -> int | None:
        values = [getattr(check, name) for check in checks]
        return None if None in values else sum(values)

    token_check = TokenCheck(
        status="ok" if all(c.ok for c in checks) else "; ".join(f"{part_name} {i}: {c.status}"
                                                                for i, c in enumerate(checks) if not c.ok),
        client_completion_tokens=added("client_completion_tokens"), client_prompt_tokens=added("client_prompt_tokens"),
        server_generation_tokens=added("server_generation_tokens"), server_prompt_tokens=added("server_prompt_tokens"),
        parts=tuple(checks))
    provenance = replace(first.provenance, started_at=min(p.provenance.started_at for p in parts),
                         finished_at=max(p.provenance.finished_at for p in parts))
    return replace(first, workload=workload, metrics=summarize(results), token_check=token_check,
                   provenance=provenance, errors=error_counts(results),
                   problems=tuple(f"{part_name} {i}: {problem}" for i, p in enumerate(parts) for problem in p.problems),
                   warmup_requests_sent=sum(p.warmup_requests_sent for p in parts),
                   workers=sum(p.workers for p in parts))
