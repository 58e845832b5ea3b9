"""GitHub cleaning: each rule drops what it should, headers go, the first copy of a file stays."""

import gzip
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
from conftest import REPO

from curation.core.executor import LocalExecutor
from curation.core.inputs import file_shard
from curation.core.runner import run_stage
from curation.sources.github import GitHubFilter, strip_license_header, verify_github
from sample_world.github import GPL_REPO, build_github

CODE = "def parse(value):\n    return value.strip().split(',')\n"


def row(path: str = "pkg/mod.py", content: str = CODE, repo: str = "o/r", lic: str = "mit"):
    return {"repo_name": repo, "path": path, "content": content, "license": lic, "size": 1}


def write_shard(tmp_path, name: str, rows: list, compress: bool = True):
    lines = "".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows).encode()
    path = tmp_path / "raw" / (f"{name}.jsonl.gz" if compress else f"{name}.jsonl")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(gzip.compress(lines, mtime=0) if compress else lines)
    return path


def run(storage, tmp_path, paths, out="out", workers=1, stage=None):
    shards = [file_shard(storage, str(p)) for p in paths]
    manifest = run_stage(
        stage or GitHubFilter(), shards, str(tmp_path / out), storage, LocalExecutor(workers)
    )
    kept = pq.read_table(tmp_path / out)
    dropped = pq.read_table(tmp_path / out / "_dropped")
    assert manifest.n_in == kept.num_rows + dropped.num_rows
    return kept, dropped


def paths_of(table) -> list[str]:
    return [json.loads(m).get("path") for m in table.column("meta").to_pylist()]


def reasons_by_path(dropped) -> dict[str, str]:
    return dict(zip(paths_of(dropped), dropped.column("reason").to_pylist(), strict=True))


@pytest.mark.parametrize(
    ("content", "path", "lic", "reason"),
    [
        (CODE, "a.py", "gpl-3.0", "license"),
        (CODE, "a.json", "mit", "extension"),
        ("# Copyright 2020 A\n# Licensed under MIT\n\n  \n", "a.py", "mit", "empty"),
        ("x = 1\ny = '" + "a" * 1001 + "'\n" + "z = 2\n" * 20, "a.py", "mit", "max_line_length"),
        ("value = parse(" + "aa, " * 25 + "a)\n", "a.py", "mit", "mean_line_length"),
        ("#\n" + "{ [ ( ) ] } == -- ++ ;;\n" * 10, "a.c", "mit", "alphanumeric_fraction"),
        ("x = [\n" + "    10, 20, 30, 40,\n" * 20 + "]\n", "a.py", "mit", "alpha_per_token"),
    ],
)
def test_each_rule_drops_with_its_reason(storage, tmp_path, content, path, lic, reason):
    good = row("keep.py")
    kept, dropped = run(
        storage, tmp_path, [write_shard(tmp_path, "s0", [good, row(path, content, lic=lic)])]
    )
    assert paths_of(kept) == ["keep.py"]
    assert reasons_by_path(dropped) == {path: reason}


def test_kept_rows_follow_the_document_contract(storage, tmp_path):
    kept, _ = run(storage, tmp_path, [write_shard(tmp_path, "s0", [row("src/a.PY", lic="MIT")])])
    (doc,) = kept.to_pylist()
    assert doc["source"] == "github" and doc["url"] == "https://github.com/o/r/blob/HEAD/src/a.PY"
    assert json.loads(doc["meta"]) == {
        "repo_name": "o/r",
        "path": "src/a.PY",
        "license": "mit",
        "size": 1,
        "extension": "py",
        "header_stripped": False,
    }
    assert verify_github(kept) == []


def test_a_block_comment_header_is_stripped():
    text = "/*\n * Copyright (c) 2019 Someone\n * SPDX-License-Identifier: MIT\n */\n\nint x;\n"
    assert strip_license_header(text, "c") == ("int x;\n", True)
    doc = '"""Parser.\n\n:copyright: 2010 Pallets\n:license: BSD\n"""\nimport re\n'
    assert strip_license_header(doc, "py") == ("import re\n", True)
    html = "<!-- Licensed under the Apache License 2.0 -->\n<p>hi</p>\n"
    assert strip_license_header(html, "html") == ("<p>hi</p>\n", True)


def test_line_comment_headers_are_stripped_and_a_shebang_kept():
    text = "#!/usr/bin/env python\n# Copyright 2015 gRPC.\n#\n# Licensed under X\n\nimport os\n"
    assert strip_license_header(text, "py") == ("#!/usr/bin/env python\nimport os\n", True)
    js = "// Copyright Joyent\n// license: MIT\n'use strict';\n"
    assert strip_license_header(js, "js") == ("'use strict';\n", True)
    sql = "-- Copyright 2001 A. Author\nSELECT 1;\n"
    assert strip_license_header(sql, "sql") == ("SELECT 1;\n", True)


def test_other_leading_comments_stay():
    text = "# Helpers for parsing dates.\n\nimport os\n"
    assert strip_license_header(text, "py") == (text, False)
    coding = "# -*- coding: utf-8 -*-\n\n# Copyright 2010 A\n\nimport os\n"
    assert strip_license_header(coding, "py") == ("# -*- coding: utf-8 -*-\n\nimport os\n", True)
    include = "#include <stdio.h>\n/* Copyright later in the file stays */\n"
    assert strip_license_header(include, "c") == (include, False)


def test_duplicates_keep_the_first_copy_whatever_the_worker_count(storage, tmp_path):
    header = "# Copyright {} Someone\n# Licensed under MIT\n\n"
    paths = [
        write_shard(
            tmp_path, "s0", [row("a.py", repo="x/one"), row("b.py", "value = compute(2)\n" * 3)]
        ),
        write_shard(tmp_path, "s1", [row("a.py", header.format(1999) + CODE, repo="x/two")]),
        write_shard(
            tmp_path, "s2", [row("c.py", "value = compute(2)\n" * 3, repo="x/three"), row("a.py")]
        ),
    ]
    results = [run(storage, tmp_path, paths, f"w{n}", workers=n) for n in (1, 2)]
    for kept, dropped in results:
        assert paths_of(kept) == ["a.py", "b.py"]
        assert dropped.column("reason").to_pylist() == ["duplicate_content"] * 3
        assert verify_github(kept) == []
    assert results[0][0].equals(results[1][0])


def test_malformed_rows_are_quarantined(storage, tmp_path):
    missing = {"repo_name": "o/r", "path": "x.py", "content": CODE}
    rows = [row("ok.py"), "{not json\n", "[1, 2]\n", json.dumps(missing) + "\n", "\n"]
    path = write_shard(tmp_path, "s0", rows, compress=False)
    kept, dropped = run(storage, tmp_path, [path])
    assert paths_of(kept) == ["ok.py"]
    assert dropped.column("reason").to_pylist() == ["malformed_row"] * 3


def test_a_truncated_shard_keeps_the_rows_before_the_cut(storage, tmp_path):
    path = write_shard(
        tmp_path, "s0", [row(f"m{i}.py", f"v{i} = {i}\n" + CODE) for i in range(200)]
    )
    path.write_bytes(path.read_bytes()[:-40])
    kept, dropped = run(storage, tmp_path, [path])
    assert kept.num_rows > 0 and dropped.column("reason").to_pylist()[-1] == "malformed_row"


def test_verify_reports_headers_and_unlisted_licenses(storage, tmp_path):
    kept, _ = run(
        storage, tmp_path, [write_shard(tmp_path, "s0", [row("a.py", lic="bsd-2-clause")])]
    )
    assert verify_github(kept) == []
    strict = GitHubFilter(licenses=("mit",))
    assert len(verify_github(kept, strict)) == 1
    text = kept.column("text").to_pylist()
    tampered = kept.set_column(2, "text", [[f"# Copyright A\n{t}" for t in text]])
    assert any("license header" in p for p in verify_github(tampered))


def test_the_sample_export_is_cleaned_as_planted(storage, tmp_path):
    info = build_github(tmp_path / "raw", REPO / ".cache" / "debian", seed=0)
    assert 2 <= len(info["shards"]) <= 4
    assert any(r["license"].startswith("gpl") for r in info["repos"])
    again = build_github(tmp_path / "again", REPO / ".cache" / "debian", seed=0)
    assert again == info
    for name in info["shards"]:
        assert (tmp_path / "raw" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    paths = sorted((tmp_path / "raw").glob("*.jsonl.gz"))
    kept, dropped = run(storage, tmp_path, paths)
    assert kept.num_rows + dropped.num_rows == info["rows"]
    metas = [json.loads(m) for m in dropped.column("meta").to_pylist()]
    by_file = {
        (m["repo_name"], m["path"]): r
        for m, r in zip(metas, dropped["reason"].to_pylist(), strict=True)
    }
    assert {r for (repo, _), r in by_file.items() if repo == GPL_REPO} == {"license"}
    graphiql = "python_modules/dagster_webserver/graphiql/"
    assert (
        by_file["dagster-io/dagster", graphiql + "graphiql-plugin-explorer.umd.js"]
        == "max_line_length"
    )
    assert by_file["dagster-io/dagster", graphiql + "react.production.min.js"] == "mean_line_length"
    # A generated protobuf module: its serialized descriptor is one line of thousands of
    # characters (grpc_health's is under 1000 with protobuf 6, so dagster's is the example).
    generated = "python_modules/dagster/_grpc/__generated__/dagster_api_pb2.py"
    assert by_file["dagster-io/dagster", generated] == "max_line_length"
    assert by_file["sample-planted/blobs", "include/re_blob.h"] == "alpha_per_token"
    duplicated = {
        path.rsplit("/", 1)[1] for (_, path), r in by_file.items() if r == "duplicate_content"
    }
    assert {"idnadata.py", "emscripten_fetch_worker.js"} <= duplicated
    assert verify_github(kept) == []
    stripped = Counter(json.loads(m)["header_stripped"] for m in kept.column("meta").to_pylist())
    assert stripped[True] > 0
