"""The inference container as it would run on SageMaker: the tested torch, a driver that fits its CUDA,
the GPUs it is told to expect, and a build context of only what it copies.

None of this shows on a CPU or in moto: on AWS each mistake was a GPU endpoint that served from its
CPUs, or an image that was not the one tested.
"""

from __future__ import annotations

import re
from pathlib import Path

from stratus.template import REPO_ROOT, load_template

DOCKERFILE = (REPO_ROOT / "gpu_jobs" / "Dockerfile").read_text()
REQUIREMENTS = (REPO_ROOT / "gpu_jobs" / "requirements.txt").read_text()

# ProductionVariant.InferenceAmiVersion (SageMaker API Reference): "NVIDIA driver version: 535 /
# CUDA version: 12.2" for gpu-2 and gpu-2-1, 550 / 12.4 for gpu-3-1, 580 / 13.0 for gpu-4-1.
AMI_DRIVER = {
    "al2-ami-sagemaker-inference-gpu-2": 535,
    "al2-ami-sagemaker-inference-gpu-2-1": 535,
    "al2-ami-sagemaker-inference-gpu-3-1": 550,
    "al2023-ami-sagemaker-inference-gpu-4-1": 580,
}
DEFAULT_ASYNC_G5_DRIVER = 470  # without InferenceAmiVersion ("GPU drivers" page: ml.g5.*, CUDA 11.4)
# CUDA minor-version compatibility (NVIDIA, CUDA Compatibility): a CUDA 12.x runtime needs a driver
# from 525 on, a CUDA 13.x runtime one from 580 on.
MIN_DRIVER = {12: 525, 13: 580}


def image_cuda_major() -> int:
    (tag,) = re.findall(r"download\.pytorch\.org/whl/cu(\d+)", DOCKERFILE)
    return int(tag[:2])


def test_the_image_installs_the_torch_the_tests_ran() -> None:
    (pinned,) = re.findall(r"^torch==\S+$", REQUIREMENTS, re.MULTILINE)
    assert "grep '^torch==' gpu_jobs/requirements.txt" in DOCKERFILE  # the pin itself, not the base image's torch
    assert "grep -v '^torch=='" not in DOCKERFILE
    assert "pytorch/pytorch" not in DOCKERFILE
    assert pinned == "torch==2.13.0"


def test_every_ami_the_template_allows_has_a_driver_for_the_images_cuda() -> None:
    template = load_template()
    allowed = template["Parameters"]["InferenceAmiVersion"]["AllowedValues"]
    needed = MIN_DRIVER[image_cuda_major()]
    assert needed > DEFAULT_ASYNC_G5_DRIVER  # why the variant must name an AMI at all
    assert set(allowed) <= set(AMI_DRIVER)
    assert all(AMI_DRIVER[ami] >= needed for ami in allowed)
    (variant,) = template["Resources"]["EndpointConfig"]["Properties"]["ProductionVariants"]
    assert variant["InferenceAmiVersion"] == {"Ref": "InferenceAmiVersion"}


def test_the_container_is_told_how_many_gpus_its_instance_type_has() -> None:
    """SageMaker does not set SM_NUM_GPUS for a container of one's own."""
    template = load_template()
    environment = template["Resources"]["Model"]["Properties"]["PrimaryContainer"]["Environment"]
    assert environment["SM_NUM_GPUS"] == {"Fn::FindInMap": ["InstanceGpus", {"Ref": "InstanceType"}, "Gpus"]}
    gpus = template["Mappings"]["InstanceGpus"]
    instance_types = template["Parameters"]["InstanceType"]["AllowedValues"]
    assert set(instance_types) == set(gpus)
    assert template["Parameters"]["InstanceType"]["Default"] in instance_types
    assert (gpus["ml.g5.xlarge"], gpus["ml.g5.12xlarge"], gpus["ml.g5.48xlarge"]) == (
        {"Gpus": "1"},
        {"Gpus": "4"},
        {"Gpus": "8"},
    )


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
    assert (REPO_ROOT / "gpu_jobs" / "serve").exists() and not ignored("gpu_jobs/serve.py", patterns)
    for heavy in (".venv/lib/site.py", ".stratus/models/x.safetensors", ".aws-sam/build", "tests/conftest.py"):
        assert ignored(heavy, patterns), heavy
    assert ignored("gpu_jobs/__pycache__/server.cpython-311.pyc", patterns)
    assert Path(REPO_ROOT / ".dockerignore").is_file()
