"""arXiv-like LaTeX source archives for the sample, written from real prose.

Each chapter of the Python tutorial (python3.11-doc) becomes one paper: its paragraphs are
re-wrapped into LaTeX with the things the cleaning stage must undo (a preamble, user macros
with and without arguments, comments, `\\input`/`\\include` children, a bibliography, an
appendix) and the files a real submission carries (.sty, .bib, a figure). Macros are used so
that expanding them gives the original words back. A few archives are hostile (path
traversal, an absolute path, a symlink out, an oversized member, not gzip at all) and one
paper is a single gzipped .tex, as arXiv serves those. `arxiv.jsonl` is the ground truth.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import struct
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from curation.sources.arxiv import ArxivClean
from sample_world.debian import PACKAGES, fetch_package
from sample_world.text import Doc, python_doc

PACKAGE = "python3.11-doc"
TUTORIAL = "usr/share/doc/python3.11/html/tutorial"
MTIME = 1672531200  # 2023-01-01, for every tar member
MIN_PARAGRAPHS = 4
HOSTILE = ("hostile_traversal", "hostile_traversal", "hostile_symlink", "hostile_oversize")
_ESCAPES = {c: f"\\{c}" for c in "%$&#_{}"} | {
    "\\": "\\textbackslash{}",
    "^": "\\^{}",
    "~": "\\~{}",
}
_SPECIALS = re.compile(r"[%$&#_{}\\^~]")
_KEYWORD = re.compile(r"\b(modules?|functions?|class(?:es)?|exceptions?)\b")
_PAIR = re.compile(r"\b([A-Za-z]+) and ([A-Za-z]+)\b")


def latex_escape(text: str) -> str:
    return _SPECIALS.sub(lambda m: _ESCAPES[m.group(0)], text)


def with_macros(paragraph: str) -> str:
    """Escaped prose using the papers' macros where their expansion restores the words:
    `\\py{}` (no argument; `{}` ends the control word, as TeX needs before a space),
    `\\interp{}` (`\\def`), `\\kw{word}` (one argument, expanding to a redefined
    `\\emph`), `\\both{a}{b}` (two arguments)."""
    text = latex_escape(paragraph)
    text = re.sub(r"\bPython\b", r"\\py{}", text)
    text = re.sub(r"\binterpreter\b", r"\\interp{}", text)
    text = _KEYWORD.sub(r"\\kw{\1}", text, count=1)
    return _PAIR.sub(r"\\both{\1}{\2}", text, count=1)


PREAMBLE = r"""\documentclass[11pt]{%(cls)s}
\usepackage{amsmath}
\usepackage{graphicx}
\usepackage{tutorial}
%% Macros of this paper; the tutorial's own words come back when they are expanded.
%(macros)s
\title{%(title)s}
\author{The Python Tutorial authors}
\begin{document}
\maketitle
\begin{abstract}
%(abstract)s
\end{abstract}
"""
MACROS = r"""%(py)s
\def\interp{interpreter}
\newcommand{\both}[2]{#1 and #2}
\newcommand{\kw}[1]{\emph{#1}} %% a keyword
\renewcommand{\emph}[1]{\textit{#1}}"""
STYLE = r"""\ProvidesPackage{tutorial}
\newcommand{\tutorialversion}{3.11}
\endinput
"""
FIGURE = r"""\begin{figure}[t]
\centering\includegraphics[width=0.5\linewidth]{figures/diagram}
\caption{Where the examples of this chapter run.}
\end{figure}
"""


def tiny_png() -> bytes:
    """A valid 1x1 grey PNG, so the archive carries a real figure file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class Paper:
    """One paper's files and which of them is the main .tex."""

    files: dict[str, bytes]
    main: str


def make_paper(doc: Doc, index: int, rng: random.Random) -> Paper:
    """The layout cycles with `index`: one file; main + `\\input`/`\\include` children;
    `ms.tex` with its macros in an `\\input` file. Headings, bibliography style and the
    `\\py` definition (`\\newcommand` or `\\def`) vary too."""
    layout, cls = index % 3, "report" if index % 4 == 1 else "article"
    heading = {0: "\\section*", 1: "\\chapter"}.get(index % 4, "\\section")
    paragraphs = [with_macros(p) for p in doc.paragraphs]
    abstract, rest = paragraphs[0], paragraphs[1:]
    cut = max(1, len(rest) - 2)
    sections = _sections(rest[:cut], heading, rng)
    py = "\\def\\py{Python}" if index % 2 else "\\newcommand{\\py}{Python}"
    macros = MACROS % {"py": py}
    title = latex_escape(re.sub(r"^\d+\.\s*", "", doc.title))
    main = "ms.tex" if layout == 2 else "main.tex"
    files = {"tutorial.sty": STYLE.encode(), "figures/diagram.png": tiny_png()}
    if layout == 2:
        files["macros.tex"] = (macros + "\n").encode()
        macros = "\\input{macros}"
    text = PREAMBLE % {"cls": cls, "macros": macros, "title": title, "abstract": abstract}
    if layout == 1:
        files["sections/intro.tex"] = sections[0].encode()
        files["sections/body.tex"] = "\n".join(sections[1:]).encode()
        text += "\\input{sections/intro}\n\\include{sections/body}\n"
    else:
        text += "\n".join(sections)
    text += _back_matter(rest[cut:], index, files)
    files[main] = text.encode()
    return Paper(files, main)


def _sections(paragraphs: list[str], heading: str, rng: random.Random) -> list[str]:
    """Two sections (the second with a subsection), comments and a figure sprinkled in."""
    half = max(1, len(paragraphs) // 2)
    out = []
    for n, chunk in enumerate((paragraphs[:half], paragraphs[half:])):
        lines = [f"{heading}{{{'Overview' if n == 0 else 'Details'}}}\n"]
        for k, paragraph in enumerate(chunk):
            if k == 1 and n == 1:
                lines.append("\\subsection{More}\n")
            if rng.random() < 0.3:
                lines.append("% note to self: shorten this paragraph before submission\n")
            note = " % check wording" if rng.random() < 0.3 else ""
            lines.append(f"{paragraph}{note}\n\n")
        if n == 0:
            lines.append(FIGURE + "About 100\\% of the examples were run.\n\n")
        out.append("".join(lines))
    return out


def _back_matter(appendix: list[str], index: int, files: dict[str, bytes]) -> str:
    """Bibliography (`.bib` or `thebibliography`) then an appendix: neither is kept."""
    if index % 2:
        files["refs.bib"] = b"@book{tutorial, title={The Python Tutorial}, year={2023}}\n"
        bib = "\\bibliographystyle{plain}\n\\bibliography{refs}\n"
    else:
        bib = (
            "\\begin{thebibliography}{9}\n\\bibitem{tutorial} The Python Tutorial, 2023.\n"
            "\\end{thebibliography}\n"
        )
    extra = "\n\n".join(appendix)
    return f"\n{bib}\\appendix\n\\section{{Supplementary material}}\n{extra}\n\\end{{document}}\n"


def tar_gz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A deterministic .tar.gz: members by name, fixed mtime and owner, gzip mtime 0."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), MTIME, 0o644
            tar.addfile(info, io.BytesIO(files[name]))
        for name, target in sorted((links or {}).items()):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, MTIME
            tar.addfile(info)
    return gzip.compress(out.getvalue(), mtime=0)


def hostile(kind: str, n: int, paper: Paper, max_member_bytes: int) -> bytes:
    """A good paper plus one member the stage must refuse."""
    if kind == "hostile_symlink":
        return tar_gz(paper.files, {"sections/passwd.tex": "../../../etc/passwd"})
    if kind == "hostile_oversize":  # spaces: tiny once compressed
        return tar_gz({**paper.files, "data/huge.tex": b" " * (max_member_bytes + 1)})
    evil = "../evil.tex" if n == 0 else "/tmp/evil.tex"
    return tar_gz({**paper.files, evil: b"\\documentclass{article}\n"})


def tutorial_docs(cache_dir: Path) -> tuple[list[Doc], str]:
    spec = next(s for s in PACKAGES if s.name == PACKAGE)
    package = fetch_package(spec, cache_dir)
    root = package.root / TUTORIAL
    docs = [python_doc(p, f"tutorial/{p.name}") for p in sorted(root.glob("*.html"))]
    docs = [d for d in docs if len(d.paragraphs) >= MIN_PARAGRAPHS]
    return docs, f"{PACKAGE} {package.version} ({package.license()})"


def build_arxiv(
    out_dir: Path, cache_dir: Path, seed: int, max_member_bytes: int | None = None
) -> dict:
    """Write the archives and `arxiv.jsonl`; return counts and provenance for the README.

    `max_member_bytes` is the limit the oversized member exceeds (the stage's default)."""
    limit = max_member_bytes or ArxivClean.max_member_bytes
    rng = random.Random(seed)
    docs, provenance = tutorial_docs(Path(cache_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth: list[dict] = []

    def write(name: str, data: bytes, kind: str, main: str | None) -> None:
        (out_dir / name).write_bytes(data)
        truth.append({"file": name, "kind": kind, "main_tex": main})

    papers = [make_paper(doc, i, rng) for i, doc in enumerate(docs[:-1])]
    for i, paper in enumerate(papers):
        write(f"2301.{i + 1:05d}.tar.gz", tar_gz(paper.files), "paper", paper.main)
    single = make_paper(docs[-1], 0, rng)  # layout 0: one file, nothing to \input
    single_tex = gzip.compress(single.files[single.main], mtime=0)
    write(f"2301.{len(docs):05d}.gz", single_tex, "single_tex", single.main)
    for n, kind in enumerate(HOSTILE):
        paper = papers[n]
        write(f"2302.{n + 1:05d}.tar.gz", hostile(kind, n, paper, limit), kind, paper.main)
    write("2302.00099.tar.gz", b"%PDF-1.4\n% a PDF-only submission\n", "not_gzip", None)
    with open(out_dir / "arxiv.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(t, sort_keys=True) + "\n" for t in truth)
    return {
        "archives": len(truth),
        "kinds": dict(sorted(Counter(t["kind"] for t in truth).items())),
        "prose": provenance,
    }
