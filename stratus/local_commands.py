"""`stratus local up` and `stratus demo`."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from stratus.localcloud.lines import whole_lines_on_stdout

DEFAULT_MODEL_DIR = Path(".stratus/models/smollm2-bf16")
DEFAULT_STATE_DIR = Path(".stratus/local-state")


def configure_logging(quiet: bool = False) -> None:
    """One stream, each line tagged with its component (`local.endpoint`, `local.model`, …; the
    functions' own Powertools loggers print JSON lines with their service name)."""
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    whole_lines_on_stdout()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)-26s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("botocore", "urllib3", "httpx", "httpx2", "werkzeug", "uvicorn.access", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if quiet:  # the demo prints its own story (cold starts included)
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        logging.getLogger("local.endpoint").setLevel(logging.WARNING)
        logging.getLogger("local.model").setLevel(logging.WARNING)


@click.group()
def local() -> None:
    """The local cloud: the whole path on this machine (moto, the handlers, a CPU model server)."""


@local.command("up")
@click.option("--port", default=8000, show_default=True, help="Port of the HTTPS API's local gateway.")
@click.option("--model-dir", type=click.Path(path_type=Path), default=DEFAULT_MODEL_DIR, show_default=True)
@click.option("--admin-key", envvar="STRATUS_ADMIN_KEY", default=None, help="Use this admin key (sk-…).")
@click.option(
    "--idle-seconds",
    default=60.0,
    show_default=True,
    help="Scale the endpoint to zero after this long without work (the scheduler's IdleScaleInMinutes, in seconds, "
    "unless given with --parameter).",
)
@click.option(
    "--endpoint-startup-seconds",
    default=0.0,
    show_default=True,
    help="Emulate SageMaker's provisioning: wait this long before the model server starts when scaling from zero "
    "(minutes on a GPU instance).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Tables, buckets and queued messages are saved here at Ctrl-C and restored at the next start.",
)
@click.option("--fresh", is_flag=True, help="Throw away the saved state and start empty.")
@click.option("--sweep-seconds", default=30.0, show_default=True, help="How often the scheduled sweeper runs.")
@click.option(
    "--scheduler-seconds",
    default=5.0,
    show_default=True,
    help="How often the scheduler runs (every minute on AWS; sooner here so that a laptop does not wait).",
)
@click.option(
    "--faults",
    default=None,
    metavar="SPEC",
    help="Inject faults, e.g. throttle=0.1,endpoint_error=0.05,lost=0.05,duplicate=0.15,delay=0.25,"
    "delay_seconds=10,dispatcher_crash=0.1,results_crash=0.1,poison=5 (see stratus/localcloud/faults.py).",
)
@click.option("--fault-seed", default=0, show_default=True, help="Seed of the faults' random draws.")
@click.option(
    "--fault-report",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the faults that fired here (JSON) at stop.",
)
@click.option(
    "--visibility-timeout",
    type=int,
    default=None,
    help="Every queue's visibility timeout in seconds (the template's by default).",
)
@click.option(
    "--engine",
    type=click.Choice(["vllm", "echo"]),
    envvar="STRATUS_ENGINE",
    default="vllm",
    show_default=True,
    help="The endpoint's model server: vLLM's CPU build, or the echo engine (no model: load tests).",
)
@click.option(
    "--parameter",
    "parameters",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a template parameter, as `sam deploy --parameter-overrides` does (e.g. MaxPackSize=4). Repeatable.",
)
def up(
    port: int,
    model_dir: Path,
    admin_key: str | None,
    idle_seconds: float,
    endpoint_startup_seconds: float,
    state_dir: Path,
    fresh: bool,
    sweep_seconds: float,
    scheduler_seconds: float,
    faults: str | None,
    fault_seed: int,
    fault_report: Path | None,
    visibility_timeout: int | None,
    engine: str,
    parameters: tuple[str, ...],
) -> None:
    """Start everything and serve until Ctrl-C (which saves the state for the next start)."""
    from stratus.localcloud.cloud import LocalCloud, LocalCloudConfig
    from stratus.localcloud.faults import FaultRates

    configure_logging()
    if not (model_dir / "manifest.json").exists():
        raise click.ClickException(f"no model artifact at {model_dir}: run `make model` first")
    try:
        rates = FaultRates.parse(faults) if faults else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--faults") from None
    overrides = dict(p.split("=", 1) for p in parameters if "=" in p)
    if len(overrides) != len(parameters):
        raise click.BadParameter("use NAME=VALUE", param_hint="--parameter")
    cloud = LocalCloud(
        LocalCloudConfig(
            model_dir=model_dir,
            port=port,
            idle_seconds=idle_seconds,
            sweep_seconds=sweep_seconds,
            scheduler_seconds=scheduler_seconds,
            admin_key=admin_key,
            state_dir=state_dir,
            fresh=fresh,
            faults=rates,
            fault_seed=fault_seed,
            fault_report=fault_report,
            visibility_timeout=visibility_timeout,
            parameters=overrides,
            endpoint_startup_seconds=endpoint_startup_seconds,
            engine=engine,
        )
    ).start()
    click.echo(
        f"\nStratus local cloud is up.\n  API (OpenAI base URL): {cloud.url}/v1\n"
        f"  console:               {cloud.url}/console/ (sign in with the admin key, or a tenant's)\n"
        f"  admin key:             {cloud.admin_key}\n  Ctrl-C stops everything.\n"
    )
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: every thread's stack to stderr
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    # A timed wait: Python runs signal handlers in the main thread only, between bytecodes. When the
    # kernel hands Ctrl-C to another of our threads, an untimed wait here never wakes to run it (a
    # fault run once sat 60 s past its SIGINT); waking twice a second bounds the delay.
    while not stopped.wait(timeout=0.5):
        pass
    click.echo("stopping …")
    cloud.stop()
    # Everything is saved and the model server is stopped. Leave without the interpreter's final
    # garbage collection: after 1,000 requests, collecting moto's in-memory state took over a minute.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@click.command("demo")
@click.option("--model-dir", type=click.Path(path_type=Path), default=DEFAULT_MODEL_DIR, show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--batch-size", default=20, show_default=True, help="Requests in the demo batch.")
def demo(model_dir: Path, port: int, batch_size: int) -> None:
    """Run the whole path with the real model and the official openai client, then stop."""
    from stratus.demo import run_demo

    configure_logging(quiet=True)
    if not (model_dir / "manifest.json").exists():
        raise click.ClickException(f"no model artifact at {model_dir}: run `make model` first")
    run_demo(model_dir, port, batch_size)
