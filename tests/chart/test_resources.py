"""What the server pod asks of its node besides CPU, memory and GPUs: device resources (resources.extra) and the
node disk its scratch emptyDirs may fill (ephemeral-storage), so the scheduler places it where both exist."""

from __future__ import annotations

import pytest

from tests.chart.conftest import container, init_container
from tests.chart.test_multinode import TWO_NODES, server, templates
from tests.chart.test_validation import problems

RDMA = ("--set", "resources.extra.rdma/rdma_shared_device_a=1", "--set", "resources.extra.nvidia\\.com/hostdev=2")


def test_device_resources_are_requested_and_limited_next_to_the_gpus_in_the_server_container_only(render):
    deployment = render("r", *RDMA)["Deployment"]
    resources = container(deployment)["resources"]
    for kind in ("requests", "limits"):
        assert resources[kind]["nvidia.com/gpu"] == 4
        assert resources[kind]["rdma/rdma_shared_device_a"] == 1
        assert resources[kind]["nvidia.com/hostdev"] == 2
    assert "rdma" not in str(init_container(deployment)["resources"])


def test_leaders_and_workers_get_the_same_device_resources_and_scratch_request(render):
    for template in templates(render("r", *TWO_NODES, *RDMA)["LeaderWorkerSet"]):
        resources = server(template)["resources"]
        assert resources["requests"]["rdma/rdma_shared_device_a"] == resources["limits"]["rdma/rdma_shared_device_a"] == 1
        assert resources["requests"]["ephemeral-storage"] == "40961Mi"


def test_the_server_requests_the_node_disk_its_scratch_emptydirs_may_fill_without_a_limit(render):
    resources = container(render()["Deployment"])["resources"]
    # /tmp and HOME, 20Gi each, and the 1Mi model-path folder; /dev/shm is memory, counted in resources.memory.
    assert resources["requests"]["ephemeral-storage"] == "40961Mi"
    assert "ephemeral-storage" not in resources["limits"]


@pytest.mark.parametrize("sets, expected", [
    (("scratch.sizeLimit=1Gi",), "2049Mi"),
    (("scratch.sizeLimit=1500M",), "2863Mi"),
    (("extraVolumes.work.emptyDir.sizeLimit=5Gi", "extraVolumes.ram.emptyDir.medium=Memory",
      "extraVolumes.ram.emptyDir.sizeLimit=8Gi"), "46081Mi"),
])
def test_the_scratch_request_follows_the_size_limits_of_the_disk_backed_emptydirs(render, sets, expected):
    args = [arg for item in sets for arg in ("--set", item)]
    assert container(render("r", *args)["Deployment"])["resources"]["requests"]["ephemeral-storage"] == expected


def test_device_resources_the_chart_owns_or_that_are_not_whole_counts_are_refused(render_error):
    stderr = render_error("--set", "resources.extra.cpu=2", "--set", "resources.extra.memory=1",
                          "--set", "resources.extra.ephemeral-storage=1", "--set", "resources.extra.nvidia\\.com/gpu=8",
                          "--set", "resources.extra.hugepages-2Mi=1", "--set", "resources.extra.rdma/hca=1.5",
                          "--set", "resources.extra.rdma/ib=0", "--set-string", "resources.extra.example\\.com/dev=one")
    assert problems(stderr) == [
        "resources.extra.cpu is set by the chart: use resources.cpu",
        ("resources.extra.ephemeral-storage is set by the chart: it is requested from the emptyDirs' size limits "
         "(scratch.sizeLimit); remove it"),
        ("resources.extra.example.com/dev=one is not a whole number of devices: write a count of 1 or more, e.g. "
         "resources.extra.example.com/dev=1"),
        ("resources.extra.hugepages-2Mi is not a device resource: name a device plugin's DOMAIN/NAME, e.g. "
         "rdma/rdma_shared_device_a"),
        "resources.extra.memory is set by the chart: use resources.memory",
        ("resources.extra.nvidia.com/gpu is set by the chart: GPUs are requested from parallelism as gpu.resource; "
         "remove it"),
        ("resources.extra.rdma/hca=1.5 is not a whole number of devices: write a count of 1 or more, e.g. "
         "resources.extra.rdma/hca=1"),
        ("resources.extra.rdma/ib=0 is not a whole number of devices: write a count of 1 or more, e.g. "
         "resources.extra.rdma/ib=1")]


def test_on_cpu_the_empty_gpu_resource_name_leaves_device_names_free(render):
    resources = container(render("r", "--set", "gpu.resource=", "--set", "resources.extra.example\\.com/fpga=1",
                                 "--set", "parallelism.tensor=1")["Deployment"])["resources"]
    assert resources["limits"] == {"memory": "96Gi", "example.com/fpga": 1}
