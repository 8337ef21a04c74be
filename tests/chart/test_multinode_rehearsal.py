"""lab/gpu/multinode_rehearsal.py: the rendered leader and worker as processes, $(NAME) expanded as the kubelet
does, the LeaderWorkerSet's variables standing in for a loopback group."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

from tests.chart.conftest import CHART
from tests.conftest import REPO, run

SPEC = importlib.util.spec_from_file_location("multinode_rehearsal", REPO / "lab" / "gpu" / "multinode_rehearsal.py")
rehearsal = importlib.util.module_from_spec(SPEC)
sys.modules.setdefault("multinode_rehearsal", rehearsal)
SPEC.loader.exec_module(rehearsal)

VALUES = REPO / "lab" / "gpu" / "multinode-rehearsal-values.yaml"
SHA = "f" * 40


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)", "a"),
    ("x$(A)y$(B)", "xaybee"),
    ("$$(A)", "$(A)"),
    ("$(UNSET)", "$(UNSET)"),
    ("model=$(cat /run/tpserve/model-path) && exec", "model=$(cat /run/tpserve/model-path) && exec"),
    ("a$b", "a$b"),
    ("$(A", "$(A"),
    ("cost: 5$", "cost: 5$"),
    ('"$@"', '"$@"'),
])
def test_references_expand_as_the_kubelet_expands_them(text, expected):
    assert rehearsal.expand(text, {"A": "a", "B": "bee"}) == expected


def lws(env: list[dict], args: list[str], gpus: int = 1) -> str:
    container = {"name": "vllm", "command": ["vllm", "serve"], "args": args, "env": env,
                 "resources": {"limits": {"nvidia.com/gpu": gpus}}}
    template = {"spec": {"containers": [container]}}
    return json.dumps({"kind": "LeaderWorkerSet", "spec": {"leaderWorkerTemplate": {
        "size": 2, "leaderTemplate": template, "workerTemplate": template}}})


def test_a_variable_sees_only_the_ones_before_it_and_args_see_them_all():
    manifest = lws([{"name": "EARLY", "value": "$(LATE)+$(LWS_WORKER_INDEX)"}, {"name": "LATE", "value": "late"}],
                   ["--x", "$(EARLY)", "--y", "$(LATE)"])
    worker = rehearsal.group_commands(manifest)[1]
    assert worker.env["EARLY"] == "$(LATE)+1"
    assert worker.argv == ["vllm", "serve", "--x", "$(LATE)+1", "--y", "late"]


def test_the_controllers_variables_come_first_and_a_chart_copy_of_them_is_dropped():
    manifest = lws([{"name": "LWS_GROUP_SIZE", "value": "9"}], [], gpus=2)
    leader, worker = rehearsal.group_commands(manifest)
    assert list(leader.env)[:3] == ["LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX"]
    assert (leader.env["LWS_GROUP_SIZE"], worker.env["LWS_WORKER_INDEX"]) == ("2", "1")
    assert (leader.env["CUDA_VISIBLE_DEVICES"], worker.env["CUDA_VISIBLE_DEVICES"]) == ("0,1", "2,3")


@pytest.fixture(scope="module")
def group(tools):
    manifest = rehearsal.render([str(VALUES)], [f"model.revision={SHA}", "apiKey.secretName=api-key"], tools.helm)
    return rehearsal.group_commands(manifest, {"/models": "/srv/mn/{pod}/models"})


def test_the_leader_serves_rank_0_on_loopback_and_the_worker_joins_it_headless(group):
    leader, worker = group
    tail = ["--nnodes", "2", "--node-rank", "0", "--master-addr", "127.0.0.1", "--master-port", "29501"]
    assert leader.argv[:2] == worker.argv[:2] == ["vllm", "serve"]
    assert leader.argv[-len(tail):] == tail
    assert worker.argv[-len(tail) - 1:] == [*tail[:3], "1", *tail[4:], "--headless"]
    for pod in group:
        args = pod.argv
        assert args[args.index("--pipeline-parallel-size") + 1] == "2"
        assert args[args.index("--model") + 1] == \
            f"/srv/mn/{pod.pod}/models/hf/tpserve/tpserve-rehearsal--llama-2-7b-shape/{SHA}"
        assert pod.env["VLLM_HOST_IP"] == "127.0.0.1"
        assert pod.env["HF_HOME"] == f"/srv/mn/{pod.pod}/models/hf"
        assert "$(" not in " ".join(args)


def test_each_pod_gets_its_own_gpu_and_secrets_are_named_not_resolved(group):
    leader, worker = group
    assert (leader.gpus, leader.env["CUDA_VISIBLE_DEVICES"]) == (1, "0")
    assert (worker.gpus, worker.env["CUDA_VISIBLE_DEVICES"]) == (1, "1")
    assert leader.secrets == worker.secrets == ["VLLM_API_KEY"]
    assert "VLLM_API_KEY" not in leader.env


def test_the_scripts_exec_exactly_the_argv_and_environment_of_the_json(group, tmp_path):
    """Each POD.sh, run with a `vllm` that prints what it got, hands over the argv and env of POD.json."""
    rehearsal.write(group, tmp_path / "out")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vllm"
    # /proc/self/environ is the environment exec handed over, before Python adds its locale to it.
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nfrom pathlib import Path\n"
                    "env = Path('/proc/self/environ').read_bytes().decode().split(chr(0))[:-1]\n"
                    "print(json.dumps({'argv': sys.argv[1:], 'env': dict(v.split('=', 1) for v in env)}))\n")
    fake.chmod(0o755)
    for pod in group:
        recorded = json.loads((tmp_path / "out" / f"{pod.pod}.json").read_text())
        done = run("bash", str(tmp_path / "out" / f"{pod.pod}.sh"),
                   env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "UNRELATED": "x"})
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        assert ["vllm", *got["argv"]] == recorded["argv"]
        assert {k: v for k, v in got["env"].items() if k != "PATH"} == recorded["env"]


def test_the_cli_refuses_a_path_map_without_a_target(tmp_path, capsys):
    with pytest.raises(SystemExit):
        rehearsal.main([str(tmp_path), "--manifest", str(CHART / "values.yaml"), "--path-map", "/models"])
    assert "--path-map '/models': write INSIDE=OUTSIDE" in capsys.readouterr().err


def test_a_chart_without_multinode_is_refused_with_the_fix(tmp_path):
    manifest = tmp_path / "single.yaml"
    manifest.write_text("kind: Deployment\nmetadata: {name: x}\n")
    with pytest.raises(SystemExit, match="expected one LeaderWorkerSet in the rendered chart, found 0: "
                                         r"is multiNode.enabled=true\?"):
        rehearsal.main([str(tmp_path / "out"), "--manifest", str(manifest)])


def test_a_host_without_the_vllm_script_runs_the_cli_module_instead(tmp_path, tools):
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rehearsal.render([str(VALUES)], [f"model.revision={SHA}"], tools.helm))
    rehearsal.main([str(tmp_path / "out"), "--manifest", str(manifest),
                    "--vllm", "python3 -m vllm.entrypoints.cli.main"])
    for pod in ("leader", "worker-1"):
        argv = json.loads((tmp_path / "out" / f"{pod}.json").read_text())["argv"]
        assert argv[:5] == ["python3", "-m", "vllm.entrypoints.cli.main", "serve", "--model"]
