"""A small GitHub export in the shape of the BigQuery `github_repos` tables, from real code.

The files are real source trees available offline: installed Python packages (their wheel
METADATA gives the license) and one GPL package from Debian (python3-debian, GPL-2+), so the
license filter has something to refuse. The real trees already hold what the cleaner must
handle, so little is synthesized:

- license headers: Apache/BSD comment blocks on the grpc, pybind11 and multidict files, and
  `:copyright:`/`:license:` docstrings on the pallets ones;
- vendored, minified and generated files: React's minified build and a one-line UMD bundle
  shipped in dagster-webserver, protobuf `_pb2.py` modules with a serialized descriptor line;
- binary files: compiled extension modules (`.so`), decoded with replacement as an export
  holding bytes would; planted (the one synthesized repository, `sample-planted/blobs`): the
  same bytes under a `.c` name and as an `xxd -i` C array, which only the content rules catch;
- the same files in two repositories: pip vendors idna, tomli and a urllib3 worker unchanged;
- files outside a code whitelist: `py.typed`, `LICENSE`, `.pem`, `.txt`, `.cfg`, `.so`.

Rows are shuffled with the seed and cut into shards `github-NNNNN.jsonl.gz` (gzip mtime 0).
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from sample_world.debian import PackageSpec, fetch_package

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])  # this interpreter's, the project venv
N_SHARDS = 3
MAX_FILE_BYTES = 200_000
GPL_ROOT = "usr/lib/python3/dist-packages/debian/"


def _want_gpl(path: str) -> bool:
    return path.startswith(GPL_ROOT)


GPL_PACKAGE = PackageSpec("python3-debian", "0.1.49", _want_gpl)
GPL_REPO = "python-debian-team/python-debian"
PLANTED_REPO = "sample-planted/blobs"
PLANTED_BINARY = "markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so"
# License names in wheel metadata and Debian copyright files, as GitHub license keys.
LICENSE_KEYS = {
    "mit": "mit",
    "apache-2.0": "apache-2.0",
    "apache 2.0": "apache-2.0",
    "bsd-3-clause": "bsd-3-clause",
    "mpl-2.0": "mpl-2.0",
    "gpl-2+": "gpl-2.0",
}


@dataclass(frozen=True)
class RepoSpec:
    """A repository made of installed files: `roots` (files or directories relative to
    site-packages) placed under `prefix`; its license comes from `distribution`'s METADATA."""

    repo_name: str
    distribution: str
    roots: tuple[str, ...]
    prefix: str = ""
    max_files: int = 30


REPOS: tuple[RepoSpec, ...] = (
    RepoSpec("benjaminp/six", "six", ("six.py",)),
    RepoSpec("astanin/python-tabulate", "tabulate", ("tabulate",)),
    RepoSpec("pallets/markupsafe", "markupsafe", ("markupsafe",), "src/"),
    RepoSpec("pallets/click", "click", ("click",), "src/"),
    RepoSpec("pytest-dev/iniconfig", "iniconfig", ("iniconfig",), "src/"),
    RepoSpec("hukkin/tomli", "tomli", ("tomli",), "src/"),
    RepoSpec("kjd/idna", "idna", ("idna",)),
    RepoSpec("python-hyper/h11", "h11", ("h11",)),
    RepoSpec("pytest-dev/pluggy", "pluggy", ("pluggy",), "src/"),
    RepoSpec("earwig/mwparserfromhell", "mwparserfromhell", ("mwparserfromhell",), "src/"),
    RepoSpec("pybind/pybind11", "pybind11", ("pybind11",), max_files=40),
    RepoSpec("aio-libs/multidict", "multidict", ("multidict",)),
    RepoSpec("grpc/grpc", "grpcio_health_checking", ("grpc_health",), "src/python/"),
    RepoSpec("urllib3/urllib3", "urllib3", ("urllib3",), "src/", max_files=40),
    RepoSpec("python-websockets/websockets", "websockets", ("websockets",), "src/"),
    RepoSpec("theskumar/python-dotenv", "python_dotenv", ("dotenv",), "src/"),
    RepoSpec("certifi/python-certifi", "certifi", ("certifi",)),
    RepoSpec(
        "pypa/pip",
        "pip",
        (
            "pip/__init__.py",
            "pip/_vendor/idna",
            "pip/_vendor/tomli",
            "pip/_vendor/urllib3/contrib/emscripten/emscripten_fetch_worker.js",
        ),
        "src/",
    ),
    RepoSpec(
        "dagster-io/dagster",
        "dagster_webserver",
        (
            "dagster_webserver/graphiql/react.production.min.js",
            "dagster_webserver/graphiql/graphiql-plugin-explorer.umd.js",
            "dagster_webserver/graphiql/graphiql-plugin-explorer-style.css",
            "dagster/_grpc/__generated__/dagster_api_pb2.py",
            "dagster/_vendored/README.md",
        ),
        "python_modules/",
    ),
)


def _metadata_field(metadata: str, name: str) -> str | None:
    match = re.search(rf"^{name}:[ \t]*(\S.*)$", metadata, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def dist_info(distribution: str) -> Path:
    found = sorted(SITE_PACKAGES.glob(f"{distribution}-*.dist-info"))
    if not found:
        raise FileNotFoundError(f"{distribution} is not installed in {SITE_PACKAGES}")
    return found[-1]


def license_key(name: str) -> str:
    """A license name as GitHub's key; the sample's repositories are chosen to have keys, so an
    unknown name (a package that changed its metadata) is an error, not a guess."""
    key = LICENSE_KEYS.get(name.strip().lower())
    if key is None:
        raise ValueError(f"no GitHub license key for {name!r}")
    return key


def wheel_license(distribution: str) -> tuple[str, str]:
    """(GitHub license key, version) of an installed distribution, from its METADATA."""
    metadata = (dist_info(distribution) / "METADATA").read_text(encoding="utf-8")
    name = _metadata_field(metadata, "License-Expression") or _metadata_field(metadata, "License")
    return license_key(name or ""), _metadata_field(metadata, "Version") or "?"


def _files(root: Path) -> list[Path]:
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [p for p in paths if "__pycache__" not in p.parts and p.stat().st_size <= MAX_FILE_BYTES]


def _row(repo_name: str, path: str, data: bytes, license: str) -> dict:
    """A BigQuery-style row; bytes that are not UTF-8 are decoded with replacement."""
    return {
        "repo_name": repo_name,
        "path": path,
        "content": data.decode("utf-8", errors="replace"),
        "license": license,
        "size": len(data),
    }


def _repo_rows(spec: RepoSpec, rng: random.Random) -> tuple[list[dict], dict]:
    license, version = wheel_license(spec.distribution)
    files = [(root, f) for root in spec.roots for f in _files(SITE_PACKAGES / root)]
    if len(files) > spec.max_files:
        files = sorted(rng.sample(files, spec.max_files))
    rows = [
        _row(
            spec.repo_name, spec.prefix + str(f.relative_to(SITE_PACKAGES)), f.read_bytes(), license
        )
        for _, f in files
    ]
    provenance = {
        "repo_name": spec.repo_name,
        "license": license,
        "files": len(rows),
        "source": f"PyPI wheel {spec.distribution} {version} (installed files)",
    }
    return rows, provenance


def _gpl_rows(cache_dir: Path) -> tuple[list[dict], dict]:
    package = fetch_package(GPL_PACKAGE, cache_dir)
    # "GPL-2+ (parts: GPL-3+)": the license of `Files: *` is the repository's.
    license = license_key(package.license().split(" (")[0])
    root = package.root / GPL_ROOT
    rows = [
        _row(GPL_REPO, f"lib/debian/{f.relative_to(root)}", f.read_bytes(), license)
        for f in _files(root)
    ]
    provenance = {
        "repo_name": GPL_REPO,
        "license": license,
        "files": len(rows),
        "source": f"Debian package {package.name} {package.version}",
    }
    return rows, provenance


def _xxd(name: str, data: bytes) -> bytes:
    """`data` as `xxd -i` writes it: a C array of hex bytes, the way binaries get embedded."""
    rows = [", ".join(f"0x{b:02x}" for b in data[i : i + 12]) for i in range(0, len(data), 12)]
    body = ",\n".join("  " + r for r in rows)
    text = f"unsigned char {name}[] = {{\n{body}\n}};\nunsigned int {name}_len = {len(data)};\n"
    return text.encode()


def _planted_rows() -> tuple[list[dict], dict]:
    """Binary content under code extensions, made from the bytes of an installed extension
    module: the raw bytes (as a repository that commits a build product under a source name)
    and its `xxd -i` dump (a C header embedding a blob)."""
    binary = (SITE_PACKAGES / PLANTED_BINARY).read_bytes()
    rows = [
        _row(PLANTED_REPO, "src/speedups.c", binary, "mit"),
        _row(PLANTED_REPO, "include/re_blob.h", _xxd("re_blob", binary[:4096]), "mit"),
    ]
    provenance = {
        "repo_name": PLANTED_REPO,
        "license": "mit",
        "files": len(rows),
        "source": f"planted: the bytes of {PLANTED_BINARY}, raw and as an xxd -i dump",
    }
    return rows, provenance


def _write_shard(path: Path, rows: list[dict]) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_bytes(gzip.compress(lines.encode(), mtime=0))


def build_github(out_dir: Path, cache_dir: Path, seed: int) -> dict:
    """Write the export shards to `out_dir`; return counts and per-repository provenance."""
    rng = random.Random(seed)
    rows: list[dict] = []
    provenance: list[dict] = []
    for spec in REPOS:
        repo_rows, repo_provenance = _repo_rows(spec, rng)
        rows += repo_rows
        provenance.append(repo_provenance)
    for extra_rows, extra_provenance in (_gpl_rows(cache_dir), _planted_rows()):
        rows += extra_rows
        provenance.append(extra_provenance)
    rng.shuffle(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for i in range(N_SHARDS):
        name = f"github-{i:05d}.jsonl.gz"
        _write_shard(out_dir / name, rows[i::N_SHARDS])
        shards.append(name)
    return {
        "rows": len(rows),
        "shards": shards,
        "bytes": sum(r["size"] for r in rows),
        "repos": provenance,
    }
