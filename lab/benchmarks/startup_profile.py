"""Where a server's start goes inside each process: a py-spy profile of the start, summarised.

``tpserve startup`` splits a start into phases by vLLM's log lines; a phase with no line inside it (the imports,
the engine process's start) needs the processes' own stacks. ``lab/gpu/ready_on_host.py`` records one start
under ``py-spy record --subprocesses --idle --format speedscope`` and stops py-spy right after the first
``/health`` 200. This script reads that file and prints, for each process's main thread, what it spent its
seconds on: imports by package, waiting, and the vLLM functions it was in.

Every thread is sampled until py-spy stops, so a thread's samples end together with the others'; its start is
placed that many seconds before the end (``starts at`` in the output). A process that ended earlier (a
compile helper) is listed by its own length only.

    python lab/benchmarks/startup_profile.py PROFILE.speedscope.json [--top 8] [--bucket-s 5]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from dataclasses import dataclass
from pathlib import Path

# A leaf frame with one of these names (after any "Class.") is a thread waiting, not working.
WAITS = frozenset({"select", "poll", "epoll", "wait", "_wait", "acquire", "sleep", "recv", "recv_into", "accept",
                   "read", "readinto", "_recv", "_poll", "wait_for_tstate_lock", "recv_multipart", "sched_yield"})


@dataclass(frozen=True)
class Thread:
    name: str
    seconds: float
    activities: tuple[str, ...]  # one per sample, in order
    sample_s: float


def package_of(path: str) -> str:
    """'vllm/v1/engine/core.py' -> 'vllm.v1'; 'torch/_inductor/x.py' -> 'torch'; a stdlib path -> 'stdlib'.
    py-spy writes a site-packages file relative to site-packages and any other file in full."""
    if "site-packages/" in path:
        path = path.split("site-packages/")[-1]
    if path.startswith(("<", "/")):
        return "stdlib"
    parts = Path(path).with_suffix("").parts
    if parts and parts[0] == "vllm" and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0] if parts else path


def activity(stack: list[dict]) -> str:
    """What a sample's stack (outermost first) was doing, in a few words."""
    modules = [package_of(f["file"]) for f in stack if f["name"] == "<module>"]
    modules = [m for m in modules if m != "stdlib"]
    if any(f["name"] == "_find_and_load" for f in stack) and modules:
        return f"import {modules[-1]}"
    if stack and stack[-1]["name"].rpartition(".")[2] in WAITS:
        return "waiting"
    ours = [f for f in stack if "vllm/" in f["file"] and not f["file"].startswith("<")]
    if ours:
        leaf = ours[-1]
        return f"vllm {leaf['name']} ({leaf['file'].split('site-packages/')[-1]})"
    return f"{package_of(stack[-1]['file'])} {stack[-1]['name']}" if stack else "no stack"


def read(path: Path) -> list[Thread]:
    document = json.loads(path.read_text())
    frames = document["shared"]["frames"]
    threads = []
    for profile in document["profiles"]:
        samples, weights = profile["samples"], profile["weights"]
        if not samples:
            continue
        stacks = ([frames[i] for i in sample if not frames[i]["name"].startswith("process ")] for sample in samples)
        threads.append(Thread(profile["name"], sum(weights), tuple(activity(s) for s in stacks),
                              sum(weights) / len(weights)))
    return threads


def is_main_thread(name: str) -> bool:
    """py-spy names a thread 'Process P Thread T "NAME"'; a process that exec'd keeps its main thread unnamed."""
    return name.rpartition(" ")[2] in ('"MainThread"', '""')


def summary(threads: list[Thread], top: int, bucket_s: float) -> str:
    end = max(t.seconds for t in threads)
    lines = [f"{len(threads)} threads; the longest was sampled for {end:.1f} s", ""]
    for thread in sorted(threads, key=lambda t: -t.seconds):
        if not is_main_thread(thread.name) or thread.seconds < 1:
            continue
        counts = collections.Counter(thread.activities)
        imports = sum(n for a, n in counts.items() if a.startswith("import "))
        lines.append(f"== {thread.name}: {thread.seconds:.1f} s, starts at {end - thread.seconds:.1f} s; "
                     f"imports {imports * thread.sample_s:.1f} s, waiting {counts['waiting'] * thread.sample_s:.1f} s")
        for name, n in counts.most_common(top):
            lines.append(f"   {n * thread.sample_s:6.1f} s  {name}")
        per = max(1, round(bucket_s / thread.sample_s))
        lines.append(f"   every {bucket_s:g} s (from the thread's start), what took most of it:")
        for first in range(0, len(thread.activities), per):
            bucket = collections.Counter(thread.activities[first:first + per]).most_common(1)[0]
            start = end - thread.seconds + first * thread.sample_s
            lines.append(f"   {start:6.1f} s  {bucket[0]} ({100 * bucket[1] // per} %)")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=8, help="activities listed per thread")
    parser.add_argument("--bucket-s", type=float, default=5.0, help="seconds per line of each thread's timeline")
    args = parser.parse_args(argv)
    try:
        threads = read(args.profile)
    except (OSError, ValueError, KeyError) as exc:
        print(f"startup_profile: {args.profile} is not a py-spy speedscope profile: {exc}", file=sys.stderr)
        return 2
    if not threads:
        print(f"startup_profile: {args.profile} holds no samples", file=sys.stderr)
        return 2
    print(summary(threads, args.top, args.bucket_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
