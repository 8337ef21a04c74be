"""``python3 -m tpserve.fetchjob``: the Helm chart's init container, which gets the model ready to serve.

It fetches one model revision into the cache (``tpserve.fetch.cache``: downloaded once, keyed by repo and
commit, verified against its manifest), checks the tensor- and pipeline-parallel sizes against the
model's own config.json, and writes the verified folder to a file the server's command reads. The
server then loads exactly that folder with ``HF_HUB_OFFLINE=1``.

The chart ships this package (``charts/vllm/files/tpserve`` is a link to ``src/tpserve/fetch``) in a
ConfigMap mounted as the folder ``tpserve`` on the init container's PYTHONPATH, hence the name above,
and runs it on the serving image's own Python and huggingface_hub, so the official vLLM image needs
nothing built. That is why it uses argparse and plain prints, and only relative imports inside the
package: typer and rich are not imported. Here it is ``python -m tpserve.fetch.fetchjob``.

    python3 -m tpserve.fetchjob --model meta-llama/Llama-2-7b-chat-hf --revision SHA \\
        --cache-dir /models/hf/tpserve --tensor-parallel-size 1 --path-file /run/tpserve/model-path

With ``--offline`` (the chart's ``fetch.offline``) it downloads nothing: it verifies the model someone put
on the volume in Hugging Face hub layout (``--from /models/hf/hub``) and writes the manifest for it
(``tpserve.fetch.prefilled``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from . import cache, prefilled, preflight
from .errors import ConfigError, ModelConfigError, TpserveError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m tpserve.fetchjob",
        description="Fetch and verify a model revision, check it against the parallelism, and record its folder.")
    parser.add_argument("--model", required=True, help="Hugging Face repo id, e.g. meta-llama/Llama-2-7b-chat-hf")
    parser.add_argument("--revision", required=True, help="a 40-hex commit sha (or, with --allow-moving-revision, "
                                                          "a branch or tag)")
    parser.add_argument("--cache-dir", required=True, type=Path, help="the tpserve model cache, e.g. $HF_HOME/tpserve")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--pipeline-parallel-size", type=int, default=1)
    parser.add_argument("--allow-moving-revision", action="store_true",
                        help="accept a branch or tag: the commit it points to is resolved now and recorded")
    parser.add_argument("--offline", action="store_true",
                        help="never touch the network: verify the model already in the Hugging Face hub "
                             "cache --from at the pinned commit, and write tpserve's manifest for it")
    parser.add_argument("--from", dest="hub_cache", type=Path, metavar="DIR",
                        help="with --offline: the hub cache holding models--ORG--NAME/snapshots/SHA/ "
                             "(default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    parser.add_argument("--path-file", type=Path, help="write the verified model folder to this file")
    parser.add_argument("--mkdir", type=Path, action="append", default=[], metavar="DIR",
                        help="also create DIR (repeatable): folders the server writes on the same volume, "
                             "made here by the pod's user rather than by the kubelet")
    parser.add_argument("--declared", type=declared_value, action="append", default=[], metavar="NAME=NUMBER",
                        help="a chart value describing the model (model.attentionHeads, model.kvHeads, model.layers, "
                             "model.parameterBillions, model.hiddenSize, model.vocabSize), checked against "
                             "config.json (repeatable)")
    return parser.parse_args(argv)


DECLARED_NAMES = ("model.attentionHeads", "model.kvHeads", "model.layers", "model.parameterBillions", "model.hiddenSize",
                  "model.vocabSize")


def declared_value(text: str) -> tuple[str, float]:
    name, _, number = text.partition("=")
    try:
        value = float(number)
    except ValueError:
        value = None
    if name not in DECLARED_NAMES or value is None:
        raise argparse.ArgumentTypeError(
            f"--declared {text}: expected NAME=NUMBER, e.g. model.layers=80, with NAME one of {', '.join(DECLARED_NAMES)}")
    return name, value


def run(args: argparse.Namespace) -> Path:
    """Fetch, verify and check ARGS' model; return its folder (also written to ``--path-file``)."""
    if args.offline and args.allow_moving_revision:
        raise ConfigError(
            "--offline cannot resolve a moving revision without the hub: pin model.revision to a 40-hex commit "
            "sha and drop --allow-moving-revision (the chart's model.allowMovingRevision)")
    if not cache.COMMIT_SHA.fullmatch(args.revision) and not args.allow_moving_revision:
        raise ConfigError(
            f"revision {args.revision!r} of {args.model} is a branch or tag, so what is served could change "
            "on any restart: pin a 40-hex commit sha, or pass --allow-moving-revision "
            "(the chart's model.allowMovingRevision)")
    if args.offline:
        hub_cache = args.hub_cache or prefilled.default_hub_cache()
        print(f"verifying {args.model}@{args.revision} offline in {hub_cache}", flush=True)
        manifest = prefilled.adopt(args.model, args.revision, args.cache_dir, hub_cache)
    else:
        token = os.environ.get("HF_TOKEN") or None
        print(f"fetching {args.model}@{args.revision} into {args.cache_dir}", flush=True)
        manifest = cache.fetch(args.model, args.revision, args.cache_dir, token=token, progress=False)
    folder = cache.model_path(args.cache_dir, manifest.repo_id, manifest.resolved_sha)
    check_parallelism(folder, args.model, args.tensor_parallel_size, args.pipeline_parallel_size, dict(args.declared))
    for folder_to_make in args.mkdir:
        folder_to_make.mkdir(parents=True, exist_ok=True)
    if args.path_file is not None:
        write_atomically(args.path_file, f"{folder}\n")
    size = sum(entry.size for entry in manifest.files)
    params = f"{manifest.parameter_count / 1e9:.1f}B parameters, " if manifest.parameter_count else ""
    print(f"{manifest.repo_id}@{args.revision} = {manifest.resolved_sha}: {len(manifest.files)} files, "
          f"{size / 2**30:.2f} GiB, {params}verified at {folder}", flush=True)
    return folder


def check_parallelism(folder: Path, model: str, tensor: int, pipeline: int,
                      declared: dict[str, float] | None = None) -> None:
    """Refuse sizes the model's heads or layers cannot be split into, and chart values (DECLARED) that describe
    another model, before the GPUs are taken for minutes.

    A config.json without the fields tpserve reads (another architecture's layout) is not an error:
    vLLM checks it again when it loads the model.
    """
    config = json.loads((folder / cache.CONFIG_NAME).read_text())
    try:
        problems = preflight.check_declared_shape(config, declared or {}, model)
        problems += preflight.check_heads(config, tensor, pipeline, model)
    except ModelConfigError as exc:
        print(f"note: cannot check tensor parallel {tensor} against {model}'s heads ({exc}); vLLM will",
              flush=True)
        return
    if problems:
        raise ConfigError("; ".join(problems))


def write_atomically(path: Path, text: str) -> None:
    """Write TEXT to PATH so that a reader sees the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    """Entry point: tpserve's errors become one line on stderr and the error's exit status."""
    args = parse_args(argv)
    try:
        run(args)
    except TpserveError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
