"""Copy the tpserve modules the chart's init container runs into charts/vllm/files/tpserve/, and write
tpserve's settings table into charts/vllm/files/settings.json and its model catalog into models.json.

    python tools/sync_chart_files.py           # rewrite charts/vllm/files/tpserve and settings.json from src/tpserve
    python tools/sync_chart_files.py --check   # exit 1, naming the files, if any copy differs

The chart mounts these files from a ConfigMap as a ``tpserve`` package on the init container's
PYTHONPATH, so the official vLLM image runs tpserve's own fetch and verify code with its own Python
and huggingface_hub. The copies must be byte-identical to src/tpserve: tests/chart runs ``--check``.
settings.json is src/tpserve/settings.py's TABLE, which the chart's templates read to add the flags of
vllm.settings (templates/_settings.tpl). Standard library and src/tpserve only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "src" / "tpserve"
TARGET = REPO / "charts" / "vllm" / "files" / "tpserve"
SETTINGS = REPO / "charts" / "vllm" / "files" / "settings.json"
MODELS = REPO / "charts" / "vllm" / "files" / "models.json"
# The init container's entry point (fetchjob) and every tpserve module it imports, directly or not.
MODULES = ("__init__.py", "errors.py", "modelconfig.py", "hub.py", "cache.py", "prefilled.py", "preflight.py",
           "fetchjob.py")


def differences(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    """Why TARGET is not an exact copy of MODULES from SOURCE, one line per file; empty when it is."""
    problems = []
    for name in MODULES:
        copy = target / name
        if not copy.is_file():
            problems.append(f"{copy} is missing")
        elif copy.read_bytes() != (source / name).read_bytes():
            problems.append(f"{copy} differs from {source / name}")
    # __pycache__ is Python's own (.helmignore keeps it out of the chart); anything else is not ours.
    present = {path.name for path in target.iterdir() if path.name != "__pycache__"} if target.is_dir() else set()
    problems += [f"{target / name} is not a module the init container needs"
                 for name in sorted(present - set(MODULES))]
    return problems


def settings_json() -> str:
    """src/tpserve/settings.py's TABLE as the chart reads it."""
    sys.path.insert(0, str(SOURCE.parent))
    from tpserve import settings

    return json.dumps(settings.chart_table(), indent=2, ensure_ascii=False) + "\n"


def settings_difference(path: Path = SETTINGS) -> list[str]:
    if not path.is_file():
        return [f"{path} is missing"]
    return [] if path.read_text() == settings_json() else [f"{path} differs from {SOURCE / 'settings.py'}"]


def models_json() -> str:
    """src/tpserve/catalog.py's models by lower-case repo id (aliases too), with the shape values the chart
    checks model.* against at install."""
    sys.path.insert(0, str(SOURCE.parent))
    from tpserve import catalog, modelconfig

    table = {}
    for model in catalog.MODELS.values():
        config = dict(model.config)
        heads, kv_heads = modelconfig.attention_heads(config)
        shape = {"name": model.name, "attentionHeads": heads, "kvHeads": kv_heads,
                 "layers": config["num_hidden_layers"],
                 "parameterBillions": round(modelconfig.parameter_count(config) / 1e9, 2),
                 "hiddenSize": config["hidden_size"], "vocabSize": config["vocab_size"]}
        for repo in (model.repo_id, *model.aliases):
            table[repo.lower()] = shape
    return json.dumps(dict(sorted(table.items())), indent=1) + "\n"


def models_difference(path: Path = MODELS) -> list[str]:
    if not path.is_file():
        return [f"{path} is missing"]
    return [] if path.read_text() == models_json() else [f"{path} differs from {SOURCE / 'catalog.py'}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a copy is stale")
    parser.add_argument("--target", type=Path, default=TARGET, help="the folder to write or check")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences(SOURCE, args.target) + settings_difference() + models_difference()
        for problem in problems:
            print(problem)
        if problems:
            fix = "python tools/sync_chart_files.py" + ("" if args.target == TARGET else f" --target {args.target}")
            print(f"sync_chart_files: {args.target} is stale; run `{fix}` and commit the result.", file=sys.stderr)
            return 1
        print(f"{args.target} matches {SOURCE}")
        return 0
    args.target.mkdir(parents=True, exist_ok=True)
    for path in args.target.iterdir():
        if path.name not in MODULES and path.name != "__pycache__":
            if path.is_dir():
                raise SystemExit(f"sync_chart_files: {path} is a folder; remove it by hand")
            path.unlink()
    for name in MODULES:
        (args.target / name).write_bytes((SOURCE / name).read_bytes())
        print(args.target / name)
    SETTINGS.write_text(settings_json())
    print(SETTINGS)
    MODELS.write_text(models_json())
    print(MODELS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
