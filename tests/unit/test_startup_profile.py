"""lab/benchmarks/startup_profile.py names what each process of a server's start spent its seconds on, from a py-spy
speedscope profile. The profile here is written by hand in py-spy's layout (shared frames, one sampled profile per
thread, a process frame heading each stack); a real one from a GPU start is in results/."""

import json

from lab.benchmarks import startup_profile as sp

FRAMES = [
    {"name": 'process 10:"python -m vllm.entrypoints.openai.api_server"', "file": "", "line": 0},
    {"name": "<module>", "file": "<string>", "line": 1},
    {"name": "_find_and_load", "file": "<frozen importlib._bootstrap>", "line": 1176},
    {"name": "<module>", "file": "vllm/entrypoints/openai/api_server.py", "line": 3},
    {"name": "<module>", "file": "torch/__init__.py", "line": 9},
    {"name": "<module>", "file": "/usr/lib/python3.12/json/__init__.py", "line": 1},
    {"name": "wait_for_engine_startup", "file": "vllm/v1/engine/utils.py", "line": 1398},
    {"name": "Poller.poll", "file": "zmq/sugar/poll.py", "line": 106},
    {"name": "EngineCore.__init__", "file": "vllm/v1/engine/core.py", "line": 116},
    {"name": "matmul", "file": "torch/functional.py", "line": 5},
]
IMPORT_TORCH = [0, 1, 2, 3, 2, 4]
IMPORT_STDLIB_UNDER_TORCH = [0, 1, 2, 3, 2, 4, 2, 5]
WAITING = [0, 1, 6, 7]
ENGINE = [0, 1, 8]
ENGINE_MATMUL = [0, 1, 8, 9]


def profile(name: str, samples: list[list[int]], hz: int = 10) -> dict:
    return {"type": "sampled", "name": name, "unit": "seconds", "startValue": 0, "endValue": len(samples) / hz,
            "samples": samples, "weights": [1 / hz] * len(samples)}


def write(tmp_path, *profiles) -> str:
    path = tmp_path / "start.speedscope.json"
    path.write_text(json.dumps({"shared": {"frames": FRAMES}, "profiles": list(profiles)}))
    return path


def test_imports_are_charged_to_the_innermost_package_being_imported_that_is_not_the_standard_library():
    frames = [FRAMES[i] for i in IMPORT_STDLIB_UNDER_TORCH[1:]]
    assert sp.activity(frames) == "import torch"
    assert sp.activity([FRAMES[i] for i in IMPORT_TORCH[1:]]) == "import torch"


def test_a_leaf_that_polls_is_waiting_whatever_class_it_belongs_to():
    assert sp.activity([FRAMES[i] for i in WAITING[1:]]) == "waiting"


def test_work_is_named_by_the_innermost_vllm_function_on_the_stack():
    assert sp.activity([FRAMES[i] for i in ENGINE_MATMUL[1:]]) == "vllm EngineCore.__init__ (vllm/v1/engine/core.py)"


def test_package_names_keep_vllms_second_level_and_call_absolute_paths_the_standard_library():
    assert sp.package_of("vllm/v1/engine/core.py") == "vllm.v1"
    assert sp.package_of("torch/_inductor/codecache.py") == "torch"
    assert sp.package_of("/usr/lib/python3.12/selectors.py") == "stdlib"
    assert sp.package_of("/venv/lib/python3.12/site-packages/triton/compiler.py") == "triton"


def test_the_summary_gives_each_main_thread_its_seconds_its_start_and_its_timeline(tmp_path, capsys):
    api = profile('Process 10 Thread 10 ""', [IMPORT_TORCH] * 30 + [WAITING] * 70)
    engine = profile('Process 11 Thread 11 "MainThread"', [IMPORT_TORCH] * 10 + [ENGINE_MATMUL] * 30)
    helper = profile('Process 11 Thread 12 "Thread-1"', [WAITING] * 40)
    assert sp.main([str(write(tmp_path, api, engine, helper)), "--bucket-s", "2"]) == 0
    out = capsys.readouterr().out
    assert 'Process 10 Thread 10 "": 10.0 s, starts at 0.0 s; imports 3.0 s, waiting 7.0 s' in out
    assert 'Process 11 Thread 11 "MainThread": 4.0 s, starts at 6.0 s; imports 1.0 s, waiting 0.0 s' in out
    assert "Thread-1" not in out
    assert "      6.0 s  import torch (50 %)" in out
    assert "      8.0 s  vllm EngineCore.__init__ (vllm/v1/engine/core.py) (100 %)" in out


def test_a_file_that_is_not_a_profile_is_refused_with_its_name(tmp_path, capsys):
    path = tmp_path / "trace.json"
    path.write_text('{"traceEvents": []}')
    assert sp.main([str(path)]) == 2
    assert f"{path} is not a py-spy speedscope profile" in capsys.readouterr().err
