"""Reading run records of schema version 1: the plain dicts tpserve wrote before the schema had a version.

Version 1 had three shapes: the load test's report (``"tpserve_report": 1``, with ``demo`` added by
``tpserve demo`` and ``tensor_parallel_size`` by the GPU test), and ``tpserve sweep``'s merged runs
(no marker, a ``sweep`` section). Every file of that version under ``results/`` loads through
:func:`upgrade`, which rewrites it as a document of the current version; nothing writes version 1 any
more. It works on dicts alone, so the current reader (:mod:`tpserve.workload.runrecord`) imports it and
it imports nothing of that reader.
"""

from __future__ import annotations

from tpserve.machine import device_kind

# The first reports named the built-in set "builtin"; it held the same 59 prompts (947 prompt tokens
# on tiny-llama and llama-2 alike), so the two names are one workload.
BUILTIN_PROMPT_SET = "builtin (59 prompts)"


def is_v1(document: dict) -> bool:
    return "output_throughput" in document and "plan" in document


def upgrade(document: dict) -> dict:
    """A version 1 DOCUMENT as the current version's document (what ``RunRecord.from_json`` reads)."""
    plan = dict(document["plan"])
    if plan.get("prompt_set") == "builtin":
        plan["prompt_set"] = BUILTIN_PROMPT_SET
    machine = document.get("machine", {})
    demo, sweep = document.get("demo"), document.get("sweep")
    client = document.get("client", {})
    provenance = {
        "started_at": document.get("started_at", ""), "finished_at": document.get("finished_at", ""),
        "server_version": document.get("server_version", ""), "client_host": client.get("host", ""),
        "client_python": client.get("python", ""), "command": _command(document), "machine": machine,
        "server_argv": tuple(demo["server_argv"]) if demo else (),
        "server_startup_s": demo["server_startup_s"] if demo else document.get("server_startup_s")}
    context = ({k: v for k, v in demo.items() if k not in ("server_argv", "server_startup_s")} if demo else
               {k: sweep[k] for k in ("name", "repeat", "repeats")} if sweep else {})
    return {
        **document,
        "workload": plan,
        "token_check": _token_check(document["token_check"]),
        "provenance": provenance,
        "layout": _layout(document, machine),
        "errors": document.get("errors", {}),
        "problems": list(document.get("problems", ())),
        "warmup_requests_sent": document.get("warmup_requests_sent", 0),
        "workers": document.get("workers", len(document["token_check"].get("per_replica", ())) or 1),
        "context": context,
    }


def _command(document: dict) -> str:
    if "demo" in document:
        return "demo"
    if "sweep" in document:
        return "sweep"
    return "gpu test" if "tensor_parallel_size" in document else "loadtest"


def _token_check(check: dict) -> dict:
    parts = check.get("per_replica")
    if parts is None:
        return dict(check)

    def added(name: str) -> int | None:
        values = [part.get(name) for part in parts]
        return None if None in values else sum(values)

    return {"status": check["status"], **{name: added(name) for name in (
        "client_completion_tokens", "client_prompt_tokens", "server_generation_tokens", "server_prompt_tokens")},
        "parts": [dict(part) for part in parts]}


def _layout(document: dict, machine: dict) -> dict | None:
    """What served a version 1 run, as far as the file says; None for a bare load test's report."""
    kind = device_kind(machine)
    if "sweep" in document:
        sweep = document["sweep"]
        return {"model": sweep["name"], "device_kind": kind, "tensor_parallel_size": sweep["tensor"],
                "replicas": sweep["replicas"]}
    if "demo" in document:
        argv = document["demo"]["server_argv"]
        return {"model": argv[argv.index("--model") + 1], "device_kind": kind}
    if "tensor_parallel_size" in document:
        return {"model": document["model_id"], "device_kind": kind,
                "tensor_parallel_size": int(document["tensor_parallel_size"])}
    return None
