"""The web console in a real browser (Debian's Chromium, driven by Playwright) against `stratus local
up`: an operator signs in, creates a tenant and a key and sets a limit; the tenant signs in with that
key; the official openai client makes a request with it; the tenant's usage chart and limit bars
change and match `/v1/usage` and `/v1/limits`.

Set `CONSOLE_SCREENSHOTS=<dir>` to save a screenshot of every view there (`make screenshots` writes
`docs/console/`). Chromium must be installed (`apt-get install chromium`; `.ci/run` does it): a
missing browser fails these tests rather than skipping them."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.local_cloud.conftest import MODEL, Cloud, launch, tiny_artifact

CHROMIUM = os.environ.get("STRATUS_CHROMIUM", "/usr/bin/chromium")
# As root in a container Chromium needs --no-sandbox; the rest keep it off this machine's closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
ONE_LINE = {"model": MODEL, "messages": [{"role": "user", "content": "a batch line"}], "max_tokens": 8}
SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    # held batch lines run at once (WarmWindowMinutes=0): the test waits for its batch to finish
    extra = ["--parameter", "WarmWindowMinutes=0"]
    with launch(tiny_artifact(tmp_path_factory), tmp_path_factory, engine="echo", extra=extra) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: apt-get install chromium (see .ci/run)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Tab:
    """One browser tab on the console; records every JavaScript dialog and console error it sees."""

    def __init__(self, browser: Browser, cloud: Cloud, width: int = 1280, height: int = 800) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page: Page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.cloud = cloud
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.answers: list[str] = []  # what the next confirm()/prompt() answers

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        if dialog.type == "alert" or not self.answers:
            dialog.dismiss()
        else:
            dialog.accept(self.answers.pop(0))

    def sign_in(self, key: str) -> None:
        """By keyboard: the field, the key, Enter."""
        self.page.goto(f"{self.cloud.url}/console/")
        field = self.page.get_by_label("API key")
        field.focus()
        self.page.keyboard.type(key)
        self.page.keyboard.press("Enter")
        expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()

    def shot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.wait_for_load_state("networkidle")
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)

    def holds_anywhere(self, secret: str) -> bool:
        """The secret in the DOM, in an input's value, in the URL or in either web storage but the tab's session."""
        found = self.page.evaluate(
            """(secret) => [
                document.documentElement.outerHTML.includes(secret),
                [...document.querySelectorAll('input')].some((input) => input.value.includes(secret)),
                location.href.includes(secret),
                Object.values(localStorage).some((value) => value.includes(secret)),
                document.cookie.includes(secret),
            ].some(Boolean)""",
            secret,
        )
        return bool(found)

    def close(self) -> None:
        self.context.close()


def api(cloud: Cloud, path: str, key: str) -> Any:
    return cloud.call("GET", path, key)


def total_of_bars(page: Page, caption: str) -> float:
    figure = page.locator("figure", has=page.locator("figcaption", has_text=caption))
    values = figure.locator("rect.bar").evaluate_all("(bars) => bars.map((bar) => Number(bar.dataset.value))")
    return float(sum(values))


def test_the_console_is_served_with_a_strict_content_security_policy(cloud: Cloud) -> None:
    with urllib.request.urlopen(f"{cloud.url}/console/") as answer:
        policy = answer.headers["Content-Security-Policy"]
        body = answer.read().decode()
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "<script>" not in body  # no inline script: every script is a file of the console's own
    assert "http" not in body  # nothing is fetched from anywhere else
    # one origin: the API grants no other origin a read of its answers (no CORS is configured)
    models = urllib.request.Request(
        f"{cloud.url}/v1/models", headers={"Authorization": f"Bearer {cloud.admin_key}", "Origin": "https://elsewhere"}
    )
    with urllib.request.urlopen(models) as answer:
        assert "Access-Control-Allow-Origin" not in answer.headers
    request = urllib.request.Request(f"{cloud.url}/console/../admin/tenants")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    # a path out of /console reaches neither another file nor, unauthenticated, the admin routes
    assert refused.value.code in (401, 404)


def test_operator_and_tenant_see_what_the_api_says(cloud: Cloud, browser: Browser) -> None:
    operator = Tab(browser, cloud)
    page = operator.page
    # GIVEN the operator signed in with the admin key
    operator.sign_in(cloud.admin_key)
    assert not operator.holds_anywhere(cloud.admin_key)
    expect(page.get_by_role("heading", name="Tenants")).to_be_visible()

    # WHEN they create a tenant whose name is markup
    page.get_by_text("New tenant").click()
    page.get_by_label("Tenant id").fill("acme-console")
    page.get_by_label("Name").fill(HOSTILE_NAME)
    page.get_by_role("button", name="Create tenant").click()
    # THEN the name is shown as text, and no script ran
    expect(page.get_by_role("heading", name=re.compile(re.escape(HOSTILE_NAME)))).to_be_visible()
    assert page.locator("main img").count() == 0

    # WHEN they set a limit and issue a key
    page.get_by_label("Requests per minute").fill("7")
    page.get_by_role("button", name="Save limits").click()
    expect(page.get_by_text("Limits saved.")).to_be_visible()
    assert api(cloud, "/admin/tenants/acme-console", cloud.admin_key)["limits"]["requests_per_minute"] == 7
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-key").text_content() or ""
    assert secret.startswith("sk-")
    operator.shot("operator-new-key")
    page.get_by_role("button", name="Done").click()
    # THEN the key is gone from the page once its dialog closes, and listed by its prefix only
    expect(page.locator("dialog")).to_have_count(0)
    expect(page.locator("tr[data-key]")).to_have_count(1)
    assert not operator.holds_anywhere(secret)
    operator.shot("operator-tenant")

    # GIVEN the tenant signed in with that key, in another tab
    tenant = Tab(browser, cloud)
    tenant.sign_in(secret)
    tenant.page.goto(f"{cloud.url}/console/#/limits")
    month_bar = tenant.page.get_by_test_id("limit-tokens-month")
    expect(tenant.page.get_by_test_id("limit-requests-minute")).to_have_attribute("data-limit", "7")
    expect(month_bar).to_have_attribute("data-used", "0")

    # WHEN the official openai client makes a request with the key
    client = OpenAI(base_url=f"{cloud.url}/v1", api_key=secret, max_retries=12, timeout=60)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello console"}], max_tokens=8)
    usage = wait_for_settled_usage(cloud, secret)

    # THEN the limit bars and the usage chart change, and match the API
    tenant.page.reload()
    limits = api(cloud, "/v1/limits", secret)
    expect(month_bar).to_have_attribute("data-used", str(limits["used"]["tokens_this_month"]))
    assert limits["used"]["tokens_this_month"] == usage["totals"]["total_tokens"] > 0
    expect(tenant.page.get_by_test_id("limit-requests-minute")).to_have_attribute("data-used", "1")
    tenant.shot("tenant-limits")
    tenant.page.goto(f"{cloud.url}/console/#/usage")
    expect(tenant.page.get_by_test_id("usage-total-tokens")).to_have_text(f"{usage['totals']['total_tokens']:,}")
    assert total_of_bars(tenant.page, "Tokens by day and model") == usage["totals"]["total_tokens"]
    tenant.shot("tenant-usage")
    # a batch, once the figures above are read (its lines count against the month while they run)
    lines = [
        {"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions", "body": ONE_LINE} for i in range(3)
    ]
    uploaded = client.files.create(
        file=("in.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode()), purpose="batch"
    )
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    tenant.page.goto(f"{cloud.url}/console/#/work")
    expect(tenant.page.locator("tr[data-job]")).to_have_count(1)
    expect(tenant.page.locator(f"tr[data-batch='{batch.id}']")).to_be_visible()
    finished = wait_for_batch(client, batch.id)
    usage = wait_for_settled_usage(cloud, secret)  # now with the batch's lines
    tenant.page.reload()
    expect(tenant.page.locator(f"tr[data-batch='{batch.id}'] progress")).to_have_attribute("value", "3")
    assert finished.request_counts and finished.request_counts.completed == 3
    tenant.shot("tenant-batches-and-jobs")
    tenant.page.goto(f"{cloud.url}/console/#/keys")
    expect(tenant.page.locator("tr[data-key]")).to_have_count(1)
    tenant.shot("tenant-keys")
    # a tenant's key opens no operator view: the admin routes answer 403 and the console says so
    tenant.page.goto(f"{cloud.url}/console/#/tenants")
    expect(tenant.page.get_by_role("heading", name="Usage and cost")).to_be_visible()
    assert tenant.page.get_by_role("link", name="Tenants").count() == 0
    assert not tenant.holds_anywhere(secret)

    # and the operator's views show the same tokens
    page.goto(f"{cloud.url}/console/#/tenants")
    row = page.locator("tr[data-tenant='acme-console']")
    expect(row).to_contain_text(f"{usage['totals']['total_tokens']:,}")
    operator.shot("operator-tenants")
    shown = {
        "usage": page.get_by_test_id("usage-total-tokens"),
        "invoices": page.get_by_role("cell", name=HOSTILE_NAME),  # the invoice's tenant name, as text again
        "batches": page.locator(f"tr[data-batch='{batch.id}']"),
        "endpoint": page.get_by_test_id("instance-hours"),
    }
    for view, element in shown.items():
        page.goto(f"{cloud.url}/console/#/{view}")
        expect(element).to_be_visible()
        expect(page.locator("main [role=alert].error")).to_have_count(0)
        operator.shot(f"operator-{view}")
    assert page.locator("main img").count() == 0
    page.goto(f"{cloud.url}/console/#/invoices")
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile(r"^Download inv_acme-console_\d{6}\.csv$")).click()
    invoice_csv = Path(download.value.path()).read_text()
    assert f",amount_due,,,,{usage['totals']['total_tokens']}," in invoice_csv  # the running invoice, as the API has it

    # signing out forgets the key
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    assert operator.dialogs == [] and tenant.dialogs == []  # no alert(1), no other dialog
    assert operator.errors == [] and tenant.errors == []
    operator.close()
    tenant.close()


def test_the_console_fits_a_phone(cloud: Cloud, browser: Browser) -> None:
    phone = Tab(browser, cloud, width=390, height=844)
    phone.sign_in(cloud.admin_key)
    expect(phone.page.get_by_role("heading", name="Tenants")).to_be_visible()
    phone.page.wait_for_load_state("networkidle")
    overflow = phone.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    phone.shot("phone-tenants")
    phone.close()


def test_a_wrong_key_is_refused_and_not_kept(cloud: Cloud, browser: Browser) -> None:
    tab = Tab(browser, cloud)
    tab.page.goto(f"{cloud.url}/console/")
    tab.page.get_by_label("API key").fill("sk-" + "x" * 43)
    tab.page.get_by_role("button", name="Sign in").click()
    expect(tab.page.get_by_text("That key is not valid.")).to_be_visible()
    assert tab.page.evaluate("() => sessionStorage.length") == 0
    tab.close()


def wait_for_batch(client: OpenAI, batch_id: str) -> Any:
    import time

    deadline = time.monotonic() + 120
    while (batch := client.batches.retrieve(batch_id)).status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, f"the batch did not finish within 120 s: {batch.status}"
        time.sleep(0.5)
    assert batch.status == "completed", batch
    return batch


def wait_for_settled_usage(cloud: Cloud, key: str) -> dict[str, Any]:
    """`/v1/usage` once the request's settlement landed (the answer can reach the client first)."""
    import time

    deadline = time.monotonic() + 30
    while True:
        usage: dict[str, Any] = api(cloud, "/v1/usage", key)
        limits = api(cloud, "/v1/limits", key)
        if usage["totals"]["total_tokens"] > 0 and limits["used"]["in_flight"] == 0:
            return usage
        assert time.monotonic() < deadline, "the request was not settled within 30 s"
        time.sleep(0.2)
