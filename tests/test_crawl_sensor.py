"""New crawls: the crawl index and segments over real HTTP, the sensor and the schedule against
a real Dagster instance, the corpus's automation, and (slow) a new crawl ingested end to end
by `dagster-daemon` with nobody acting.

A `http.server` on 127.0.0.1 plays Common Crawl: `collinfo.json` plus, per published crawl,
`crawl-data/<id>/wet.paths.gz` listing `segments/0/wet/<file>`, served from the sample
world's WET files.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunsFilter,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
    instance_for_test,
    materialize,
    validate_run_config,
)

from assets.partitions import crawls
from assets.resources import CrawlSource
from curation.commoncrawl.crawl_index import (
    CrawlIndexError,
    fetch_segments,
    parse_crawl_index,
    parse_segment_paths,
    read_crawl_index,
    read_segment_paths,
    select_new_crawls,
)
from curation.core.storage import Storage
from pipelines.new_crawls import new_crawls, new_crawls_weekly, with_retraining

NEW = "CC-MAIN-2099-01"
LATER = "CC-MAIN-2099-05"
HISTORICAL = ["CC-MAIN-2013-20", "CC-MAIN-2024-10"]  # listed, never published here
SEGMENTS = 3  # of the sample's 8 WET files, for the end-to-end run


class CrawlServer:
    """Common Crawl on 127.0.0.1: an index and the paths files and segments of published
    crawls, all real files under `root`. `/broken/...` answers with fewer bytes than its
    Content-Length announces, as a dropped connection does."""

    def __init__(self, root: Path, wet_files: list[Path]):
        self.root, self.wet_files, self.listed = root, wet_files, []
        self.index_read = threading.Event()
        index_read = self.index_read

        class Handler(SimpleHTTPRequestHandler):
            def do_HEAD(self) -> None:
                if not self._broken(body=False):
                    super().do_HEAD()

            def do_GET(self) -> None:
                if not self._broken(body=True):
                    super().do_GET()
                if self.path == "/collinfo.json":
                    index_read.set()  # once served: a later change is a later read's

            def _broken(self, body: bool) -> bool:
                if not self.path.startswith("/broken/"):
                    return False
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                if body:
                    self.wfile.write(b"x" * 10)
                return True

            def log_message(self, *args) -> None:  # keep pytest's output to the point
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=root))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def index_url(self) -> str:
        return self.url + "collinfo.json"

    def list_crawls(self, *ids: str) -> None:
        """The index, newest first as Common Crawl writes it."""
        self.listed = sorted({*self.listed, *ids}, reverse=True)
        entries = [{"id": i, "name": f"crawl {i}", "cdx-api": "unused"} for i in self.listed]
        staging = self.root / "collinfo.json.tmp"  # replaced whole: a reader never sees half
        staging.write_text(json.dumps(entries))
        staging.replace(self.root / "collinfo.json")

    def publish(self, crawl: str) -> list[str]:
        """The crawl's segments (the sample's WET files) and its `wet.paths.gz`; listed."""
        segments = self.root / "crawl-data" / crawl / "segments" / "0" / "wet"
        segments.mkdir(parents=True)
        paths = []
        for wet in self.wet_files:
            (segments / wet.name).symlink_to(wet)
            paths.append(f"crawl-data/{crawl}/segments/0/wet/{wet.name}")
        paths_file = self.root / "crawl-data" / crawl / "wet.paths.gz"
        paths_file.write_bytes(gzip.compress("\n".join(paths).encode() + b"\n"))
        self.list_crawls(crawl)
        return paths

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sample_wet(sample_world) -> list[Path]:
    return sorted((sample_world / "crawls" / "sample" / "wet").glob("*.warc.wet.gz"))


@pytest.fixture
def index_server(tmp_path, sample_wet) -> Iterator[CrawlServer]:
    """An index of historical crawls only (never published here)."""
    served = tmp_path / "served"
    served.mkdir()
    crawl_server = CrawlServer(served, sample_wet)
    crawl_server.list_crawls(*HISTORICAL)
    yield crawl_server
    crawl_server.close()


@pytest.fixture
def server(index_server) -> CrawlServer:
    """The historical crawls and one new crawl, published."""
    index_server.publish(NEW)
    return index_server


def source_for(server: CrawlServer, **settings) -> CrawlSource:
    return CrawlSource(index_url=server.index_url, base_url=server.url, **settings)


# (a) the index reader, the segment list and its cap, the atomic fetch


def test_index_ids_must_be_safe_partition_keys():
    good = parse_crawl_index(json.dumps([{"id": "CC-MAIN-2024-10", "name": "March 2024"}]))
    assert [(c.id, c.name) for c in good] == [("CC-MAIN-2024-10", "March 2024")]
    for bad in ["../etc", "CC/MAIN", "", "a,b", "x" * 101, ".hidden", 2024, None]:
        with pytest.raises(CrawlIndexError, match="unsafe crawl id"):
            parse_crawl_index(json.dumps([{"id": "CC-MAIN-2024-10"}, {"id": bad}]))
    for broken, message in [("{}", "JSON list"), ("[{}]", "no 'id'"), ("nope", "not JSON")]:
        with pytest.raises(CrawlIndexError, match=message):
            parse_crawl_index(broken)
    with pytest.raises(CrawlIndexError, match="twice"):
        parse_crawl_index(json.dumps([{"id": "a"}, {"id": "a"}]))


def test_segment_paths_must_stay_under_the_base_url():
    ok = "crawl-data/C/segments/1/wet/a.warc.wet.gz"
    assert parse_segment_paths(gzip.compress(f"{ok}\n\n".encode()), "wet") == [ok]
    for bad in ["../x.warc.wet.gz", "/abs.warc.wet.gz", "http://h/x.warc.wet.gz", "a.warc.gz"]:
        with pytest.raises(CrawlIndexError, match="unusable segment path"):
            parse_segment_paths(gzip.compress(bad.encode()), "wet")


def test_only_new_crawls_are_selected_oldest_first_and_capped():
    index = ["CC-MAIN-2013-20", "CC-MAIN-2024-10", "CC-MAIN-2024-18", "CC-MAIN-2024-22"]
    # Nothing known: the newest crawl only, not the history.
    assert select_new_crawls(index, {"sample"}) == ["CC-MAIN-2024-22"]
    # Known crawls set the floor; the rest come oldest first, max_new at a time.
    assert select_new_crawls(index, {"CC-MAIN-2013-20"}, max_new=2) == index[1:3]
    assert select_new_crawls(index, {"CC-MAIN-2024-18"}) == ["CC-MAIN-2024-22"]
    assert select_new_crawls(index, set(index)) == []
    # An explicit `since` reaches back past the known crawls.
    assert select_new_crawls(index, {"CC-MAIN-2024-22"}, since="CC-MAIN-2024-01") == index[1:3]
    assert select_new_crawls(index, set(), since="CC-MAIN-2000-01", max_new=0) == index


def test_index_and_capped_segments_are_fetched_over_http_atomically(server, sample_wet, tmp_path):
    assert [c.id for c in read_crawl_index(server.index_url)] == [NEW, *reversed(HISTORICAL)]
    paths, listed = read_segment_paths(server.url, NEW, "wet", max_segments=3)
    assert listed == len(sample_wet) and len(paths) == 3

    storage = Storage(str(tmp_path / "root"))
    target = storage.path("raw", "crawls", NEW, "wet")
    report = fetch_segments(storage, target, server.url, paths)
    assert report.downloaded == [w.name for w in sample_wet[:3]] and not report.skipped
    for wet in sample_wet[:3]:
        assert (Path(target) / wet.name).read_bytes() == wet.read_bytes()
    assert sorted(os.listdir(target)) == report.downloaded  # no .tmp left behind

    # Present with the server's size: kept. A different size (a damaged copy): fetched again.
    damaged = Path(target) / sample_wet[0].name
    damaged.write_bytes(b"damaged")
    again = fetch_segments(storage, target, server.url, paths)
    assert again.downloaded == [sample_wet[0].name] and len(again.skipped) == 2
    assert damaged.read_bytes() == sample_wet[0].read_bytes()

    # A download cut short never appears under its name, and leaves no temporary file.
    with pytest.raises(OSError, match="10 of 1000 bytes"):
        fetch_segments(storage, target, server.url, ["broken/x.warc.wet.gz"], attempts=1)
    assert sorted(os.listdir(target)) == report.downloaded


# (b) the sensor and the schedule against a real instance


def tick(instance: DagsterInstance, cursor: str | None, source: CrawlSource):
    """One sensor evaluation, its partition requests applied as the daemon applies them."""
    resources = {"crawl_source": source}
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = new_crawls(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_sensor_requests_each_new_crawl_once(server):
    from pipelines.definitions import defs

    source = source_for(server, max_segments=5)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(crawls.name, ["sample"])  # what `make demo` adds

        first = tick(instance, None, source)
        assert [r.partition_key for r in first.run_requests] == [NEW]  # not the history
        assert set(instance.get_dynamic_partitions(crawls.name)) == {"sample", NEW}
        config = first.run_requests[0].run_config
        assert config["ops"]["crawl_segments"]["config"]["max_segments"] == 5
        assert validate_run_config(defs.resolve_job_def("crawl"), config)

        second = tick(instance, first.cursor, source)
        assert second.run_requests == [] and "no new crawl" in second.skip_reason.skip_message

        server.publish(LATER)
        third = tick(instance, second.cursor, source)
        assert [r.partition_key for r in third.run_requests] == [LATER]

        # A person deletes the partition: the cursor still says it was requested.
        instance.delete_dynamic_partition(crawls.name, LATER)
        assert tick(instance, third.cursor, source).run_requests == []


def test_schedule_runs_the_same_check(server):
    from pipelines.definitions import defs

    source = source_for(server)
    # A schedule's context needs an instance on disk (it passes a reference to it).
    with (
        instance_for_test() as instance,
        build_schedule_context(
            instance=instance,
            resources={"crawl_source": source},
            repository_def=defs.get_repository_def(),
        ) as context,
    ):
        requests = new_crawls_weekly(context)
        assert [r.partition_key for r in requests] == [NEW]
        assert NEW in instance.get_dynamic_partitions(crawls.name)
        assert isinstance(new_crawls_weekly(context), SkipReason)


def test_corpus_follows_a_new_crawl_and_retraining_is_opt_in():
    """Eager automation: dedup, decontamination, mixture and the card run once the new
    crawl's signatures are in; the tokenizer and the model only when the deployment asks
    for it."""
    from pipelines.definitions import defs

    corpus = {AssetKey(k) for k in ("deduplicated", "decontaminated", "mixture", "data_card")}
    retrain = {AssetKey(k) for k in ("tokenizer", "tokenized_shards")}
    default = Definitions(assets=list(defs.assets), resources=defs.resources)
    retraining = Definitions(
        assets=with_retraining(list(defs.assets), "tokenizer"), resources=defs.resources
    )
    for definitions, expected in [(default, corpus), (retraining, corpus | retrain)]:
        with DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions(crawls.name, ["sample"])
            report = instance.report_runless_asset_event
            report(AssetMaterialization("crawl_signatures", partition="sample"))
            for key in ["source_signatures", *corpus, *retrain, "pretrain"]:
                report(AssetMaterialization(key))
            before = evaluate_automation_conditions(definitions, instance)

            instance.add_dynamic_partitions(crawls.name, [NEW])  # the sensor's tick
            waiting = evaluate_automation_conditions(definitions, instance, cursor=before.cursor)
            assert waiting.total_requested == 0  # the new crawl is not processed yet

            report(AssetMaterialization("crawl_signatures", partition=NEW))  # its run is done
            after = evaluate_automation_conditions(definitions, instance, cursor=waiting.cursor)
            requested = {
                k
                for k in definitions.resolve_asset_graph().get_all_asset_keys()
                if after.get_num_requested(k)
            }
            assert requested == expected


# (c) end to end: the daemon's sensor tick runs the crawl job, nobody acting


def stop_group(process: subprocess.Popen) -> None:
    """The daemon and everything it started (code server, run workers) share its group."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_a_new_crawl_is_ingested_by_the_daemon_with_nobody_acting(
    index_server, sample_world, tmp_path
):
    """The daemon runs, and has looked at the index, before the crawl is published:
    publishing it is the only act."""
    from assets.graph import STAGE_ASSETS
    from assets.perplexity_models import kenlm_model, lm_tokenizer
    from assets.resources import DataRoot, ShardExecutorResource
    from curation.commoncrawl.documents import CCDocuments
    from curation.core.executor import LocalExecutor
    from curation.core.inputs import file_shard
    from curation.core.runner import run_stage

    root = tmp_path / "data"
    root.mkdir()
    (root / "sample").symlink_to(sample_world)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        # A deployment that already has a crawl: the listed history is older, not new.
        instance.add_dynamic_partitions(crawls.name, [HISTORICAL[-1]])
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LLAMAPIPE_DATA_ROOT": str(root),
        "LLAMAPIPE_SHARD_WORKERS": "1",  # inline: no process pool per stage on 2 busy cores
        "LLAMAPIPE_NEW_CRAWLS": "sensor",  # the sensor starts running with the daemon
        "LLAMAPIPE_NEW_CRAWLS_INTERVAL_S": "5",
        "LLAMAPIPE_CRAWL_INDEX": index_server.index_url,
        "LLAMAPIPE_CRAWL_BASE_URL": index_server.url,
        "LLAMAPIPE_CRAWL_MAX_SEGMENTS": str(SEGMENTS),  # the cap, end to end
        # Steps in the run's process: one code-location import per run, not one per step.
        "LLAMAPIPE_STEP_EXECUTOR": "in_process",
    }
    log_path = tmp_path / "daemon.log"
    log = log_path.open("w")
    daemon = subprocess.Popen(
        [Path(sys.executable).parent / "dagster-daemon", "run"]
        + ["-m", "pipelines.definitions", "-a", "defs"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # While the daemon starts: what the crawl job reads besides the crawl, Wikipedia
        # text (wikiref) and a perplexity model (English; other languages go to `all`).
        resources = {
            "data_root": DataRoot(root=str(root)),
            "shard_executor": ShardExecutorResource(workers=1),
        }
        with DagsterInstance.ephemeral() as scratch:
            materialize([STAGE_ASSETS["wikipedia"]], resources=resources, instance=scratch)
            materialize(
                [lm_tokenizer, kenlm_model],
                resources=resources,
                instance=scratch,
                partition_key="en",
            )
        # The sensor has read the index once and found nothing new; then a crawl appears.
        assert index_server.index_read.wait(timeout=300), "the sensor never read the index"
        index_server.publish(NEW)

        with DagsterInstance.from_config(str(home)) as instance:
            run = wait_for_sensor_run(instance, daemon, log_path, timeout=480)
            assert run.status == DagsterRunStatus.SUCCESS, failure_report(instance, run)
            assert run.tags["dagster/partition"] == NEW
            assert set(instance.get_dynamic_partitions(crawls.name)) == {HISTORICAL[-1], NEW}
    finally:
        stop_group(daemon)
        log.close()

    fetched = root / "raw" / "crawls" / NEW / "wet"
    segments = index_server.wet_files[:SEGMENTS]
    assert sorted(p.name for p in fetched.iterdir()) == [w.name for w in segments]

    # The same documents as the sample crawl's: cc_documents on the same sample files.
    storage = Storage(str(tmp_path))
    expected = run_stage(
        CCDocuments(crawl="sample"),
        [file_shard(storage, str(w)) for w in segments],
        str(tmp_path / "expected"),
        storage,
        LocalExecutor(1),
    )
    stages = root / "stages"
    counts = json.loads((stages / "cc_documents" / NEW / "_manifest.json").read_text())["counts"]
    assert (counts["in"], counts["kept"]) == (expected.n_in, expected.kept)
    upstream_kept = counts["kept"]
    for stage in ["cc_line_dedup", "cc_language", "cc_perplexity", "cc_wikiref", "commoncrawl"]:
        counts = json.loads((stages / stage / NEW / "_manifest.json").read_text())["counts"]
        assert counts["in"] == upstream_kept and counts["kept"] > 0, stage
        upstream_kept = counts["kept"]
    assert (stages / "c4" / NEW / "_manifest.json").exists()


def wait_for_sensor_run(instance: DagsterInstance, daemon, log: Path, timeout: float):
    """The run the `new_crawls` sensor launched, once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.poll() is None, "dagster-daemon exited:\n" + log.read_text()[-4000:]
        runs = instance.get_runs(RunsFilter(tags={"dagster/sensor_name": "new_crawls"}))
        if runs and runs[0].is_finished:
            assert len(runs) == 1
            return runs[0]
        time.sleep(3)
    raise AssertionError(f"no finished run after {timeout}s:\n" + log.read_text()[-4000:])


def failure_report(instance: DagsterInstance, run) -> str:
    events = instance.all_logs(run.run_id)
    failures = [e for e in events if e.dagster_event and e.dagster_event.is_failure]
    return "\n".join(str(e.dagster_event.event_specific_data)[:2000] for e in failures)
