"""Fetch and unpack the Debian packages whose text the sample world is made of.

Debian's archive is the one source of real, licensed, multilingual text that a locked-down
machine can still reach. ``apt-get download`` fetches a .deb (no root, no install), and the
.deb is unpacked here in pure Python (an ``ar`` archive holding ``data.tar.xz``), keeping only
the paths the builder reads. Both steps are skipped when their result is already in the cache.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Bump when the selection of extracted paths changes: unpacked trees are cached per version.
EXTRACT_VERSION = 2

HANDBOOK_LOCALES = ("en-US", "fr-FR", "de-DE", "es-ES", "it-IT", "pt-BR", "ja-JP", "ru-RU")
MAN_LANGS = ("fr", "de", "es")
REFERENCE_LANGS = ("en", "fr", "de", "es")  # the Wikipedia sample's languages


def _want_handbook(path: str) -> bool:
    parts = path.split("/")
    if parts[:5] != ["usr", "share", "doc", "debian-handbook", "html"] or len(parts) < 7:
        return False
    if len(parts) == 7:
        return parts[5] in HANDBOOK_LOCALES and parts[6].endswith(".html")
    # The screenshots, for the non-HTML captures.
    return len(parts) == 8 and parts[5:7] == ["en-US", "images"] and parts[7].endswith(".png")


def _want_python(path: str) -> bool:
    prefix = "usr/share/doc/python3.11/html/"
    if not path.startswith(prefix):
        return False
    rel = path[len(prefix) :]
    return (rel.endswith(".html") and not rel.startswith("_")) or (
        rel.startswith("_images/") and rel.endswith(".png")
    )


def _want_man(lang: str) -> Callable[[str], bool]:
    def want(path: str) -> bool:
        return path.startswith(f"usr/share/man/{lang}/man") and path.endswith(".gz")

    return want


def _want_reference(lang: str) -> Callable[[str], bool]:
    def want(path: str) -> bool:
        return path.startswith("usr/share/debian-reference/") and path.endswith(f".{lang}.html")

    return want


@dataclass(frozen=True)
class PackageSpec:
    """A package the sample needs, the version it was built and checked with, what to keep."""

    name: str
    version: str
    want: Callable[[str], bool]


PACKAGES: tuple[PackageSpec, ...] = (
    PackageSpec("debian-handbook", "11.20220922", _want_handbook),
    PackageSpec("python3.11-doc", "3.11.2-6+deb12u9", _want_python),
    *(PackageSpec(f"manpages-{lang}", "4.18.1-1", _want_man(lang)) for lang in MAN_LANGS),
    *(
        PackageSpec(f"debian-reference-{lang}", "2.100", _want_reference(lang))
        for lang in REFERENCE_LANGS
    ),
)


@dataclass(frozen=True)
class Package:
    """An unpacked package: where its files are, and its license for the README."""

    name: str
    version: str
    root: Path  # the unpacked tree (holds usr/...)
    deb: Path

    @property
    def copyright(self) -> Path:
        return self.root / "usr" / "share" / "doc" / self.name / "copyright"

    def license(self) -> str:
        return license_summary(self.copyright.read_text(encoding="utf-8", errors="replace"))


def license_summary(text: str) -> str:
    """A one-line license for the README, from a Debian copyright file.

    Machine-readable (DEP-5) files: the license of the ``Files: *`` stanza, then any other
    license named. Free-form files: recognise the Python license, else point to the file.
    """
    if text.startswith("Format:"):
        names: list[str] = []
        for m in re.finditer(r"^License:[ \t]*(\S.*)$", text, flags=re.MULTILINE):
            name = m.group(1).strip()
            if name not in names:
                names.append(name)
        if names:
            head = names[0]
            parts = set(re.split(r"\s+(?:or|and)\s+", head))
            rest = [n for n in names[1:] if n not in parts]
            return head + (f" (parts: {', '.join(rest)})" if rest else "")
    if "PYTHON SOFTWARE FOUNDATION LICENSE" in text.upper():
        return "PSF-2.0 (Python Software Foundation License Version 2; see the copyright file)"
    return "see the copyright file"


def _deb_members(deb: bytes) -> dict[str, bytes]:
    """Split an ``ar`` archive (the .deb container) into its members."""
    if not deb.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package (no ar magic)")
    members: dict[str, bytes] = {}
    pos = 8
    while pos + 60 <= len(deb):
        header = deb[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = deb[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def _open_tar(members: dict[str, bytes], stem: str) -> tarfile.TarFile:
    for name, data in members.items():
        if name.startswith(stem):
            return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    raise ValueError(f"no {stem}.* in package")


def deb_control(deb_path: Path) -> dict[str, str]:
    """The fields of a .deb's control file (Package, Version, ...)."""
    with _open_tar(_deb_members(deb_path.read_bytes()), "control.tar") as tar:
        for member in tar.getmembers():
            if member.name.lstrip("./") == "control":
                f = tar.extractfile(member)
                assert f is not None
                text = f.read().decode("utf-8")
                break
        else:
            raise ValueError(f"{deb_path}: no control file")
    fields: dict[str, str] = {}
    for m in re.finditer(r"^([A-Za-z-]+):[ \t]*(.*)$", text, flags=re.MULTILINE):
        fields[m.group(1)] = m.group(2)
    return fields


def unpack_deb(deb_path: Path, dest: Path, want: Callable[[str], bool]) -> None:
    """Extract the regular files (and hard links) that ``want`` selects, plus the copyright file.

    Symbolic links are not extracted: the builder treats them as aliases and skips them anyway.
    """
    with _open_tar(_deb_members(deb_path.read_bytes()), "data.tar") as tar:
        for member in tar:
            path = member.name.removeprefix("./")
            keep = want(path) or re.fullmatch(r"usr/share/doc/[^/]+/copyright", path)
            if not keep or not (member.isfile() or member.islnk()):
                continue
            if ".." in path.split("/"):
                raise ValueError(f"{deb_path}: unsafe member {member.name}")
            f = tar.extractfile(member)
            if f is None:
                continue
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read())


def _download(spec: PackageSpec, cache_dir: Path) -> Path:
    """``apt-get download`` the pinned version, or the candidate if the mirror dropped it."""
    for request in (f"{spec.name}={spec.version}", spec.name):
        proc = subprocess.run(
            ["apt-get", "download", "-q", request],
            cwd=cache_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            break
        log.warning("apt-get download %s failed: %s", request, proc.stderr.strip())
    else:
        raise RuntimeError(
            f"could not download {spec.name}; the sample world needs apt-get and a Debian "
            f"mirror, or the .deb placed in {cache_dir}"
        )
    found = _find_deb(spec, cache_dir)
    if found is None:
        raise RuntimeError(f"apt-get download {spec.name} left no .deb in {cache_dir}")
    return found


def _find_deb(spec: PackageSpec, cache_dir: Path) -> Path | None:
    """The cached .deb of ``spec``: the pinned version if present, else the newest name."""
    debs = sorted(cache_dir.glob(f"{spec.name}_*.deb"))
    pinned = [d for d in debs if d.name.split("_")[1].replace("%3a", ":") == spec.version]
    if pinned:
        return pinned[0]
    return debs[-1] if debs else None


def fetch_package(spec: PackageSpec, cache_dir: Path) -> Package:
    """Download (unless cached) and unpack (unless already unpacked) one package."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    deb = _find_deb(spec, cache_dir) or _download(spec, cache_dir)
    version = deb_control(deb)["Version"]
    if version != spec.version:
        log.warning(
            "%s: using version %s, the sample was checked with %s", spec.name, version, spec.version
        )
    root = cache_dir / "unpacked" / f"{spec.name}_{version}.x{EXTRACT_VERSION}"
    if not (root / ".complete").exists():
        tmp = root.with_name(root.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        unpack_deb(deb, tmp, spec.want)
        (tmp / ".complete").write_text(deb.name + "\n")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    return Package(spec.name, version, root, deb)


def fetch_all(cache_dir: Path) -> dict[str, Package]:
    """All packages of the sample, by name."""
    return {spec.name: fetch_package(spec, cache_dir) for spec in PACKAGES}
