"""LaTeX source to training text, the way the LLaMA paper describes arXiv processing.

Each rule is a small function on strings so it can be tested alone. Two bugs of RedPajama's
reproduction are avoided on purpose: its section regex lacked a `|` (so one alternative never
matched), and its inline-comment regex `[^\\\\]%.+$` ate the character before the `%`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

# A `%` starts a comment unless escaped, i.e. unless preceded by an odd number of backslashes
# (`\\%` is a line break followed by a comment). The lookbehind keeps the preceding character.
_COMMENT = re.compile(r"(?<!\\)((?:\\\\)*)%.*$", re.MULTILINE)
_COMMENT_LINE = re.compile(r"^[ \t]*%.*(?:\n|$)", re.MULTILINE)
_HEADING = re.compile(
    r"\\(?:part|chapter|section|subsection|subsubsection)(?![A-Za-z])\*?", re.MULTILINE
)
_BACK_MATTER = re.compile(
    r"\\(?:appendix|bibliography|bibliographystyle|printbibliography)(?![A-Za-z])"
    r"|\\begin\s*\{(?:thebibliography|appendix|appendices)\}|\\end\s*\{document\}"
)
_INPUT = re.compile(r"\\(?:input|include)(?![A-Za-z])\s*(?:\{([^{}]*)\}|([^\s{}\\%]+))")
_CONTROL = re.compile(r"\\(?:([A-Za-z]+)|.)", re.DOTALL)
_DEFINITION = re.compile(r"\\(?:(?:new|renew|provide)command\*?|g?def)(?![A-Za-z])", re.MULTILINE)
_HEADING_LINE = re.compile(_HEADING.pattern + r".*$", re.MULTILINE)
_PARAM = re.compile(r"#([#1-9])")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
DOCUMENTCLASS = re.compile(r"\\document(?:class|style)(?![A-Za-z])")


class LatexError(Exception):
    """A paper that cannot be cleaned; `reason` becomes the dropped row's reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


def strip_comments(text: str) -> str:
    """Remove `%` comments; whole-line comments take their newline with them (as in TeX, so
    they do not split paragraphs), inline ones keep the text before them and escaped `\\%`."""
    return _COMMENT.sub(r"\1", _COMMENT_LINE.sub("", text))


def body(text: str) -> str:
    """From the first sectioning command up to the bibliography, the appendix or the end of
    the document (TeX ignores what follows `\\end{document}`). No heading at all raises
    `no_section`: the paper has no body we can recognise."""
    start = _HEADING.search(text)
    if start is None:
        raise LatexError("no_section", "no \\part, \\chapter or \\section")
    end = _BACK_MATTER.search(text, start.start())
    return text[start.start() : end.start() if end else len(text)]


@dataclass
class Inputs:
    """What `resolve_inputs` did, for the document's meta."""

    resolved: int = 0
    unresolved: list[str] = field(default_factory=list)


def resolve_inputs(
    name: str, read: Callable[[str], str | None], max_depth: int, report: Inputs
) -> str:
    """`name`'s text with every `\\input`/`\\include` replaced by the (comment-free) child,
    recursively. Missing files, cycles and nesting deeper than `max_depth` are left out and
    listed in `report.unresolved` as `path (why)`; a paper is still usable without them."""
    return _resolve(name, read, max_depth, report, ())


def _resolve(
    name: str, read: Callable[[str], str | None], max_depth: int, report: Inputs, chain: tuple
) -> str:
    def child(match: re.Match) -> str:
        target = posixpath.normpath((match.group(1) or match.group(2)).strip())
        found = next((p for p in (target, f"{target}.tex") if read(p) is not None), None)
        why = _skip_reason(found, (*chain, name), max_depth)
        if why:
            report.unresolved.append(f"{target} ({why})")
            return ""
        report.resolved += 1
        return _resolve(found, read, max_depth, report, (*chain, name))

    return _INPUT.sub(child, strip_comments(read(name) or ""))


def _skip_reason(found: str | None, chain: tuple, max_depth: int) -> str:
    if found is None:
        return "missing"
    if found in chain:
        return "cycle"
    return "too_deep" if len(chain) > max_depth else ""  # the child would be that deep


def read_group(text: str, i: int, open_: str = "{", close: str = "}") -> tuple[str, int] | None:
    """The balanced group starting at `text[i]` (after spaces), without its delimiters, and
    the index after it. Without a group, TeX takes one token: a control word or one char.
    Escaped delimiters (`\\{`) do not count. None at the end of the text."""
    while i < len(text) and text[i] in " \t\n":
        i += 1
    if i >= len(text):
        return None
    if text[i] != open_:
        if open_ != "{":
            return None
        token = _CONTROL.match(text, i) if text[i] == "\\" else None
        end = token.end() if token else i + 1
        return text[i:end], end
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        depth += (c == open_) - (c == close)
        if depth == 0:
            return text[i + 1 : j], j + 1
        j += 1
    return None


@dataclass(frozen=True)
class Macro:
    """A user macro: `n_args` mandatory-or-optional arguments, the first optional (in `[]`)
    when `default` is set, as `\\newcommand{\\m}[n][default]{body}` declares it."""

    body: str
    n_args: int = 0
    default: str | None = None


def extract_macros(text: str) -> tuple[str, dict[str, Macro]]:
    """The text without its macro definitions, and the definitions (a later definition of
    a name replaces an earlier one: one global table, as no paper relies on scoping here).
    A `\\def` with delimited parameters is removed but not recorded: it cannot be expanded
    without TeX's matcher, and its leftover uses are harmless text."""
    macros: dict[str, Macro] = {}
    out, pos = [], 0
    for match in _DEFINITION.finditer(text):
        if match.start() < pos:
            continue  # inside a definition already consumed
        parsed = _parse_definition(text, match)
        out.append(text[pos : match.start()])
        if parsed is None:
            pos = match.end()  # malformed: drop the command word only
            continue
        name, macro, pos = parsed
        if macro is not None:
            macros[name] = macro
    out.append(text[pos:])
    return "".join(out), macros


def _parse_definition(text: str, match: re.Match) -> tuple[str, Macro | None, int] | None:
    if match.group(0).endswith("def"):
        return _parse_def(text, match.end())
    return _parse_newcommand(text, match.end())


def _parse_newcommand(text: str, i: int) -> tuple[str, Macro | None, int] | None:
    name = read_group(text, i)
    if name is None or not name[0].strip().startswith("\\"):
        return None
    n_args, default, i = 0, None, name[1]
    count = read_group(text, i, "[", "]")
    if count is not None:
        if not count[0].strip().isdigit():
            return None
        n_args, i = int(count[0]), count[1]
        optional = read_group(text, i, "[", "]")
        if optional is not None:
            default, i = optional
    body = read_group(text, i)
    if body is None:
        return None
    return name[0].strip()[1:], Macro(body[0], n_args, default), body[1]


def _parse_def(text: str, i: int) -> tuple[str, Macro | None, int] | None:
    name = _CONTROL.match(text, i)
    if name is None:
        return None
    brace = text.find("{", name.end())
    if brace < 0:
        return None
    params = text[name.end() : brace]
    body = read_group(text, brace)
    if body is None:
        return None
    numbered = re.fullmatch(r"(?:#[1-9])*", params.strip())
    macro = Macro(body[0], len(params.strip()) // 2) if numbered else None
    return name.group(0)[1:], macro, body[1]


class MacroLimit(LatexError):
    def __init__(self, name: str, limit: str):
        super().__init__("macro_expansion_limit", f"\\{name}: {limit}")


@dataclass
class Expander:
    """Inline expansion of user macros, arguments substituted, results expanded again.

    TeX would loop forever on `\\def\\a{\\a}` and blow up on `\\def\\a{\\a\\a}`; here the
    nesting depth and the total number of expansions are bounded and exceeding either raises
    `MacroLimit`, so such a paper is dropped with a reason instead of hanging the worker.
    Each nesting level is one Python frame: keep `max_depth` far below the recursion limit.
    """

    macros: dict[str, Macro]
    max_depth: int
    max_expansions: int
    expanded: int = 0

    def expand(self, text: str, depth: int = 0) -> str:
        out, pos = [], 0
        for match in _CONTROL.finditer(text):
            if match.start() < pos:
                continue  # inside arguments already consumed
            macro = self.macros.get(match.group(1) or "")
            parsed = macro and _arguments(text, match.end(), macro)
            if not parsed:
                continue
            args, end = parsed
            self._count(match.group(1), depth)
            out.append(text[pos : match.start()])
            out.append(self.expand(_substitute(macro.body, args), depth + 1))
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _count(self, name: str, depth: int) -> None:
        self.expanded += 1
        if depth >= self.max_depth:
            raise MacroLimit(name, f"nested deeper than {self.max_depth}")
        if self.expanded > self.max_expansions:
            raise MacroLimit(name, f"more than {self.max_expansions} expansions")


def _arguments(text: str, i: int, macro: Macro) -> tuple[list[str], int] | None:
    """The macro's arguments and the index after them. A macro without mandatory arguments
    also takes a directly following `{}`, the idiom that ends a control word before a space."""
    args: list[str] = []
    if macro.default is not None:
        optional = read_group(text, i, "[", "]")
        args.append(macro.default if optional is None else optional[0])
        i = optional[1] if optional else i
    mandatory = macro.n_args - len(args)
    while len(args) < macro.n_args:
        group = read_group(text, i)
        if group is None:
            return None
        args.append(group[0])
        i = group[1]
    if not mandatory and text.startswith("{}", i):
        i += 2
    return args, i


def _substitute(body: str, args: list[str]) -> str:
    def param(match: re.Match) -> str:
        key = match.group(1)
        if key == "#":
            return "#"
        return args[int(key) - 1] if int(key) <= len(args) else match.group(0)

    return _PARAM.sub(param, body)


def tidy(text: str) -> str:
    """At most one blank line in a row, no trailing spaces (left by inline comments)."""
    return _BLANK_LINES.sub("\n\n", _TRAILING_SPACE.sub("", text)).strip()


def has_content(text: str) -> bool:
    """Whether anything but sectioning commands is left: a paper of bare headings is empty."""
    return bool(_HEADING_LINE.sub("", text).strip())


def has_comment(text: str) -> bool:
    """Whether an unescaped `%` is left (the check behind `verify_arxiv`)."""
    return _COMMENT.search(text) is not None
