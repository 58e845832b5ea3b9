"""End to end in a real browser: the Dagster web UI on the sample world.

Starts `dagster dev` on 127.0.0.1 with a throwaway instance and data root, opens the asset
graph in headless Chromium (Debian's, driven by Playwright: no browser download), launches
the `wikipedia` asset from its page by clicking, waits for the run to succeed, and checks
that what the asset page shows is what the stage wrote on disk, and that its Markdown and
its plot render. Screenshots are kept as test artifacts. Slow; run in CI all the same.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import pytest
from conftest import REPO

from curation.recipe import step

try:
    from playwright.sync_api import Locator, Page, expect, sync_playwright
except ImportError:  # reported by the `browser_page` fixture: a failure, not a skip
    sync_playwright = None

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
LOCATION = "pipelines.definitions:defs"
ASSET = "wikipedia"  # unpartitioned, seconds on the sample, Markdown and a plot in its metadata
GROUP = step(ASSET).group
PARTITION = "all"

# The machine is shared and slow: every wait is generous. The test takes 2-3 minutes on two
# cores, about 5 when they are heavily loaded (the code location imports in ~12 s of CPU).
SERVER_START_S = 240
RUN_S = 300
UI_ACTION_MS = 90_000
STOP_GRACE_S = 10


class WebServer(NamedTuple):
    url: str
    data_root: Path
    log: Path


def artifacts_dir() -> Path:
    """Screenshots and the server log outlive the temporary directories, for CI to keep."""
    root = os.environ.get("LLAMAPIPE_TEST_ARTIFACTS") or REPO / "test-artifacts"
    directory = Path(root) / "web_ui"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def free_port() -> int:
    """A port nobody listens on now: other sessions may run their own web server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_instance(home: Path) -> None:
    """A fresh instance (SQLite under `home`) so the test never touches `.dagster/`."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def start_server(port: int, home: Path, data_root: Path, log: IO[bytes]) -> subprocess.Popen:
    """`dagster dev` in its own session: its webserver, daemon, code server and run workers
    share one process group that the test can kill as a whole."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LLAMAPIPE_DATA_ROOT": str(data_root),
        "LLAMAPIPE_SHARD_WORKERS": "1",  # inline shard map: no process pool on a shared box
    }
    command = [BIN / "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    """Poll /server_info; give up early if `dagster dev` died, with its log in the message."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited with {process.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    pytest.fail(f"no answer from {url} after {SERVER_START_S}s:\n{tail(log)}")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the whole group, then SIGKILL: `dagster dev` may ignore SIGTERM."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        if group_gone(process, STOP_GRACE_S):
            return


def group_gone(process: subprocess.Popen, seconds: float) -> bool:
    """Whether every process of the group has exited within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        process.poll()  # reap the leader: a zombie still counts as a member of the group
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


def tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def require_browser() -> None:
    """Missing tools are a broken set-up, not a reason to skip the test."""
    if sync_playwright is None:
        pytest.fail("playwright is not installed in .venv: run `make setup`")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found (Debian's chromium package): run `make setup`")


@pytest.fixture
def web_server(sample_world: Path, tmp_path: Path) -> Iterator[WebServer]:
    """The web server over a temporary data root holding only the sample world. The browser
    is checked first: a missing one should fail the test before a minute of server start."""
    require_browser()
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "sample").symlink_to(sample_world)
    write_instance(tmp_path / "dagster_home")
    port = free_port()
    log_path = artifacts_dir() / "dagster.log"
    with log_path.open("wb") as log:
        process = start_server(port, tmp_path / "dagster_home", data_root, log)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url, process, log_path)
            yield WebServer(url, data_root, log_path)
        finally:
            stop_group(process)


@pytest.fixture
def browser_page() -> Iterator[Page]:
    """Headless Debian Chromium; the first-visit "Join the Dagster community" dialog is
    skipped whenever it shows up; the last state is saved as a screenshot either way."""
    require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_ACTION_MS)
        community = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
        page.add_locator_handler(
            community, lambda dialog: dialog.get_by_role("button", name="Skip").click()
        )
        try:
            yield page
        finally:
            screenshot(page, "last")
            browser.close()


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=artifacts_dir() / f"{name}.png")


def manifest_counts(data_root: Path) -> dict:
    """The stage's own record of what it did: the truth the UI must show."""
    manifest = data_root / "stages" / ASSET / PARTITION / "_manifest.json"
    return json.loads(manifest.read_text())["counts"]


def metadata_value(page: Page, key: str) -> Locator:
    """The Value cell of `key` in the asset page's metadata table (Key | Timestamp | Value);
    Markdown values hold tables of their own, so only the outer rows are matched."""
    table = "//table[thead/tr/td[normalize-space(.)='Timestamp']]"
    return page.locator(f"xpath={table}/tbody/tr[td[1][normalize-space(.)='{key}']]/td[3]")


def open_asset_from_graph(page: Page, url: str) -> None:
    """The group's asset graph, then the asset's node, then its catalog page."""
    page.goto(f"{url}/locations/{LOCATION}/asset-groups/{GROUP}")
    node = page.get_by_text(ASSET, exact=True).first
    node.wait_for()
    screenshot(page, "1_asset_graph")
    node.click()
    page.get_by_role("link", name="View in Asset Catalog").click()
    page.wait_for_url(f"**/assets/{ASSET}")


def launch_from_asset_page(page: Page) -> str:
    """Click Materialize (the asset's config has defaults: no launchpad) and return the short
    run id that the "Launched run" toast shows (it fades within seconds: read it at once)."""
    materialize = page.get_by_role("button").filter(has_text=re.compile(r"^Materialize$"))
    materialize.click()
    toast = page.get_by_text(re.compile(r"Launched run \w+"))
    toast.wait_for()
    run_id = toast.inner_text().split()[-1]
    screenshot(page, "2_launched")
    return run_id


def open_run(page: Page, run_id: str) -> None:
    """The run's page, from the Runs list (the toast's own link may be gone by now)."""
    runs = page.get_by_role("navigation").get_by_role("link").filter(has_text=re.compile("^Runs$"))
    runs.click()
    page.get_by_role("link", name=run_id).first.click()  # its name has an icon label too
    page.wait_for_url(f"**/runs/{run_id}*")


def wait_for_run_end(page: Page) -> str:
    """The run page's status once the run is over (queued and started runs take a while)."""
    status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(status).to_be_visible(timeout=RUN_S * 1000)
    return status.inner_text()


def assert_markdown_renders(page: Page, dropped: dict[str, int]) -> None:
    """`dropped_by_reason` is a Markdown table: rendered, it is an HTML table whose rows are
    the manifest's reasons and counts (raw, it would be `| reason | count |` text)."""
    table = metadata_value(page, "dropped_by_reason").locator(".dagster-markdown table")
    for reason, n in dropped.items():
        row = re.compile(rf"{re.escape(reason)}\s+{n}\b")
        expect(table).to_contain_text(row, use_inner_text=True)


def assert_plot_renders(page: Page) -> None:
    """The funnel is a PNG data URI inside Markdown; the table links to it, the dialog shows
    it: a decoded image has a natural width."""
    metadata_value(page, "funnel").get_by_text("[Show Markdown]").click()
    image = page.get_by_role("dialog").locator("img")
    expect(image).to_be_visible()
    page.wait_for_function(
        "image => image.complete && image.naturalWidth > 0", arg=image.element_handle()
    )
    screenshot(page, "5_funnel_plot")


def test_materialize_from_the_web_ui(web_server: WebServer, browser_page: Page) -> None:
    page = browser_page
    open_asset_from_graph(page, web_server.url)
    run_id = launch_from_asset_page(page)
    open_run(page, run_id)
    status = wait_for_run_end(page)
    screenshot(page, "3_run_finished")
    assert status == "Success", f"the run ended in {status}:\n{tail(web_server.log)}"

    page.goto(f"{web_server.url}/assets/{ASSET}")
    counts = manifest_counts(web_server.data_root)
    for key in ("in", "kept"):
        shown = metadata_value(page, key).inner_text().strip()
        assert shown == str(counts[key]), f"UI shows {key}={shown}, manifest says {counts[key]}"
    assert_markdown_renders(page, counts["dropped"])
    screenshot(page, "4_asset_metadata")
    assert_plot_renders(page)
