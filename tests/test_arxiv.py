import gzip
import json
import os
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from archives import tar_gz, tar_member
from conftest import REPO

from curation.core.documents import document_id
from curation.core.inputs import archive_shards
from curation.core.runner import run_stage
from curation.sources.arxiv import SUFFIXES, ArxivClean, verify_arxiv
from curation.sources.latex import LatexError, strip_comments
from sample_world.arxiv import build_arxiv

PREAMBLE = "\\documentclass{article}\n\\title{PREAMBLE}\n\\begin{document}\n"


def clean(tex: str, stage: ArxivClean | None = None, **files: str) -> tuple[str, dict]:
    """Clean a paper whose main.tex is `tex` (other .tex files by keyword: `a__b` is a/b.tex)."""
    contents = {"main.tex": tex, **{f"{k.replace('__', '/')}.tex": v for k, v in files.items()}}
    encoded = {name: text.encode() for name, text in contents.items()}
    return (stage or ArxivClean()).clean_paper(encoded, "main.tex")


def body_text(body: str, defs: str = "") -> str:
    """The cleaned text of a paper with `defs` in its preamble and `body` in one section."""
    return clean(f"{PREAMBLE}{defs}\n\\section{{Intro}}\n{body}\n\\end{{document}}\n")[0]


@pytest.mark.parametrize(
    "heading", ["\\part{A}", "\\chapter{A}", "\\section{A}", "\\section*{A}", "\\subsection{A}"]
)
def test_everything_before_the_first_heading_is_removed(heading):
    text, _ = clean(PREAMBLE + "\\maketitle\nAbstract words.\n" + heading + "\nBody.\n")
    assert text == heading + "\nBody."


def test_a_paper_without_any_heading_is_refused():
    with pytest.raises(LatexError) as err:
        clean(PREAMBLE + "\\sectionmark{A}\nBody.\n")
    assert err.value.reason == "no_section"


@pytest.mark.parametrize(
    "back",
    [
        "\\bibliography{refs}",
        "\\begin{thebibliography}{9}\\bibitem{a} A.\\end{thebibliography}",
        "\\appendix\\section{Proofs}",
        "\\printbibliography",
    ],
)
def test_bibliography_and_appendix_are_cut(back):
    text = body_text(f"Kept.\n{back}\nAFTER the end.\n")
    assert text == "\\section{Intro}\nKept."


def test_comments_are_removed_keeping_escaped_percent_and_the_character_before():
    tex = "50\\% of cases% note\n% a full line\nnext line\n\\\\% after a line break\n"
    assert strip_comments(tex) == "50\\% of cases\nnext line\n\\\\\n"
    assert body_text("a%b\nc") == "\\section{Intro}\na\nc"


def test_macros_without_arguments_are_expanded():
    text = body_text(
        "\\foo{} and \\bar, not \\foobar.",
        defs="\\newcommand{\\foo}{Debian}\\newcommand\\bar{GNU}",
    )
    assert text == "\\section{Intro}\nDebian and GNU, not \\foobar."


def test_definitions_anywhere_are_removed_and_the_last_one_wins():
    tex = PREAMBLE + "\\newcommand{\\x}{old}\n\\section{A}\n\\renewcommand{\\x}{new}\\x{} x.\n"
    assert clean(tex)[0] == "\\section{A}\nnew x."


def test_macros_with_arguments_take_balanced_groups():
    defs = (
        "\\newcommand{\\pair}[2]{(#1, #2)}"
        "\\newcommand{\\ver}[1][3.11]{v#1}"
        "\\renewcommand{\\emph}[1]{\\textit{#1}}"
    )
    text = body_text("\\pair{a {b}}{\\emph{c}} \\ver{} \\ver[3.12] \\pair x y", defs=defs)
    assert text == "\\section{Intro}\n(a {b}, \\textit{c}) v3.11 v3.12 (x, y)"


def test_def_with_and_without_parameters():
    defs = "\\def\\baz{qux}\\def\\swap#1#2{#2#1}\\def\\delim#1.{#1}"
    assert body_text("\\baz{} \\swap{a}{b}", defs=defs) == "\\section{Intro}\nqux ba"


LAUGHS = "".join(
    f"\\def\\{b}{{\\{a}\\{a}}}" for a, b in zip("abcdefghijkl", "bcdefghijklm", strict=True)
)


@pytest.mark.parametrize(
    ("definition", "limit"),
    [
        ("\\def\\m{\\m}", "\\m: nested deeper than 32"),
        ("\\def\\a{x}" + LAUGHS, "\\a: more than 1000 expansions"),  # 2**12 expansions
    ],
)
def test_recursive_and_exploding_macros_hit_a_limit_instead_of_hanging(definition, limit):
    stage = ArxivClean(max_macro_depth=32, max_macro_expansions=1000)
    with pytest.raises(LatexError) as err:
        clean(PREAMBLE + definition + "\\section{A}\n\\m\n", stage)
    assert err.value.reason == "macro_expansion_limit"
    assert err.value.detail == limit


def test_inputs_and_includes_are_resolved_recursively_and_cycles_cut():
    text, meta = clean(
        PREAMBLE + "% \\input{commented}\n\\input{sections/a}\n\\include{c}\n\\input{missing}\n",
        sections__a="\\section{A}\nfrom a\n\\input sections/b.tex\n",
        sections__b="from b % comment in a child\n",
        c="from c\n\\input{main}\\input{c}\n",
    )
    assert text == "\\section{A}\nfrom a\nfrom b\n\nfrom c"
    assert meta["inputs_resolved"] == 3
    assert meta["inputs_unresolved"] == ["main (cycle)", "c (cycle)", "missing (missing)"]


def test_input_nesting_is_limited():
    tex = PREAMBLE + "\\section{A}\n\\input{one}"
    text, meta = clean(
        tex, ArxivClean(max_input_depth=2), one="1 \\input{two}", two="2 \\input{three}", three="3"
    )
    assert text == "\\section{A}\n1 2"
    assert meta["inputs_unresolved"] == ["three (too_deep)"]


GOOD_TEX = (PREAMBLE + "\\section{Intro}\nGood paper.\n\\end{document}\n").encode()
GOOD = tar_member("main.tex", GOOD_TEX)
HOSTILE = {
    "traversal.tar.gz": (tar_gz(GOOD, tar_member("../evil.tex", b"x")), "unsafe_member"),
    "absolute.tar.gz": (tar_gz(GOOD, tar_member("/etc/evil.tex", b"x")), "unsafe_member"),
    "symlink.tar.gz": (
        tar_gz(GOOD, tar_member("a/l.tex", kind=tarfile.SYMTYPE, link="../../x")),
        "unsafe_member",
    ),
    "hardlink.tar.gz": (
        tar_gz(GOOD, tar_member("l.tex", kind=tarfile.LNKTYPE, link="../x")),
        "unsafe_member",
    ),
    "fifo.tar.gz": (tar_gz(GOOD, tar_member("f", kind=tarfile.FIFOTYPE)), "unsafe_member"),
    "big.tar.gz": (tar_gz(GOOD, tar_member("big.tex", b" " * 5000)), "member_too_large"),
    "bomb.tar.gz": (
        tar_gz(GOOD, *[tar_member(f"{i}.tex", b" " * 4000) for i in range(7)]),
        "archive_too_large",
    ),
    "many.tar.gz": (tar_gz(*[tar_member(f"{i}.sty", b"%") for i in range(12)]), "too_many_members"),
    "pdf.tar.gz": (b"%PDF-1.4\n", "not_gzip"),
    "truncated.tar.gz": (tar_gz(GOOD)[:60], "corrupt_gzip"),
    "nomain.tar.gz": (tar_gz(tar_member("a.tex", b"\\section{A} text")), "no_main_tex"),
    "nosection.gz": (gzip.compress(PREAMBLE.encode() + b"words", mtime=0), "no_section"),
    "empty.tar.gz": (tar_gz(tar_member("m.tex", PREAMBLE.encode() + b"\\section*{}")), None),
}


def test_hostile_archives_are_quarantined_and_good_papers_kept(storage, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    names = {"2301.00001.tar.gz": tar_gz(GOOD, tar_member("fig.png", b"\x89PNG"))}
    names["2301.00002.gz"] = gzip.compress(GOOD_TEX, mtime=0)  # a single gzipped .tex
    names.update({name: data for name, (data, _) in HOSTILE.items()})
    for name, data in names.items():
        (inputs / name).write_bytes(data)
    # Tar pads to 10 KiB records: the total limit sits between the good and the bomb archive.
    stage = ArxivClean(max_member_bytes=4096, max_total_bytes=30_000, max_members=10)
    out = str(tmp_path / "out")
    manifest = run_stage(stage, archive_shards(storage, str(inputs), SUFFIXES), out, storage)
    kept, dropped = _read(out), _read(f"{out}/_dropped")
    assert manifest.n_in == len(names) == len(kept) + len(dropped)
    assert {json.loads(d["meta"])["file"] for d in kept} == {"2301.00001.tar.gz", "2301.00002.gz"}
    assert all(d["text"] == "\\section{Intro}\nGood paper." for d in kept)
    assert kept[0]["id"] == document_id("arxiv", "2301.00001")
    reasons = {json.loads(d["meta"])["file"]: d["reason"] for d in dropped}
    expected = {name: reason or "empty_after_cleaning" for name, (_, reason) in HOSTILE.items()}
    assert reasons == expected


def _read(directory: str) -> list[dict]:
    """Every part file of a partition directory (one per shard), in shard order."""
    parts = sorted(n for n in os.listdir(directory) if n.startswith("part-"))
    return pa.concat_tables([pq.read_table(f"{directory}/{n}") for n in parts]).to_pylist()


def test_verify_arxiv_names_leftover_latex():
    ok = pa.table({"id": ["a"], "text": ["50\\% of \\section{A} text"]})
    assert verify_arxiv(ok) == []
    bad = pa.table({"id": ["b", "c"], "text": ["\\input{x} a", "text % comment"]})
    assert verify_arxiv(bad) == [
        "1 documents still contain an unresolved \\input (first: b)",
        "1 documents still contain a comment (first: c)",
    ]


def test_sample_archives_clean_as_their_ground_truth_says(storage, tmp_path):
    limit = 64 << 10  # the oversized member exceeds this, not the 16 MiB default
    summary = build_arxiv(
        tmp_path / "arxiv", REPO / ".cache" / "debian", seed=0, max_member_bytes=limit
    )
    truth = [json.loads(line) for line in (tmp_path / "arxiv" / "arxiv.jsonl").open()]
    assert summary["archives"] == len(truth) >= 20
    shards = archive_shards(storage, str(tmp_path / "arxiv"), SUFFIXES)
    out = str(tmp_path / "out")
    run_stage(ArxivClean(max_member_bytes=limit), shards, out, storage)
    kept, dropped = _read(out), _read(f"{out}/_dropped")
    by_file = {json.loads(d["meta"])["file"]: d for d in kept + dropped}
    expected_reason = {
        "hostile_traversal": "unsafe_member",
        "hostile_symlink": "unsafe_member",
        "hostile_oversize": "member_too_large",
        "not_gzip": "not_gzip",
    }
    for t in truth:
        row = by_file[t["file"]]
        assert row.get("reason") == expected_reason.get(t["kind"]), t
        if "reason" not in row:
            assert json.loads(row["meta"])["main_tex"] == t["main_tex"]
    assert len(kept) == sum(t["kind"] in ("paper", "single_tex") for t in truth)
    assert verify_arxiv(pa.Table.from_pylist(kept)) == []
    texts = "\n".join(d["text"] for d in kept)
    assert "Supplementary material" not in texts and "\\py" not in texts
    assert "100\\% of the examples" in texts and "Python" in texts
