"""Write tpserve's settings table into charts/vllm/files/settings.json and its model catalog into models.json.

    python tools/sync_chart_files.py           # rewrite settings.json and models.json from src/tpserve
    python tools/sync_chart_files.py --check   # exit 1, naming the files, if either is stale

settings.json is src/tpserve/settings.py's TABLE, which the chart's templates read to add the flags of
vllm.settings (templates/_settings.tpl); models.json is catalog.py's models, which the chart checks model.*
against. The fetch code the init container runs needs no step: charts/vllm/files/tpserve is a link to
src/tpserve/fetch, which helm follows (tests/chart/test_fetch_package.py). Standard library and src/tpserve only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "src" / "tpserve"
SETTINGS = REPO / "charts" / "vllm" / "files" / "settings.json"
MODELS = REPO / "charts" / "vllm" / "files" / "models.json"


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
    from tpserve import catalog
    from tpserve.fetch import modelconfig

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
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = settings_difference() + models_difference()
        for problem in problems:
            print(problem)
        if problems:
            print("sync_chart_files: charts/vllm/files is stale; run `python tools/sync_chart_files.py` and commit "
                  "the result.", file=sys.stderr)
            return 1
        print(f"{SETTINGS.parent} matches {SOURCE}")
        return 0
    SETTINGS.write_text(settings_json())
    print(SETTINGS)
    MODELS.write_text(models_json())
    print(MODELS)
    return 0

if __name__ == "__main__":
    sys.exit(main())
