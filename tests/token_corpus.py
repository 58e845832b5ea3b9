"""Test corpora for the tokenizer, the shard writer and the loader: generated multilingual text
plus a few real paragraphs, written as contract Parquet parts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.core.documents import document_id

# Article 1 of the Universal Declaration of Human Rights, in the languages of the sample world
# and a few scripts it lacks.
PARAGRAPHS = {
    "en": "All human beings are born free and equal in dignity and rights. They are endowed "
    "with reason and conscience and should act towards one another in a spirit of brotherhood.",
    "fr": "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont "
    "doués de raison et de conscience et doivent agir les uns envers les autres dans un esprit "
    "de fraternité.",
    "de": "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit "
    "Vernunft und Gewissen begabt und sollen einander im Geist der Brüderlichkeit begegnen.",
    "es": "Todos los seres humanos nacen libres e iguales en dignidad y derechos y, dotados "
    "como están de razón y conciencia, deben comportarse fraternalmente los unos con los otros.",
    "ru": "Все люди рождаются свободными и равными в своем достоинстве и правах. Они наделены "
    "разумом и совестью и должны поступать в отношении друг друга в духе братства.",
    "zh": "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。",
}
CODE = '''def fibonacci(n: int) -> list[int]:
    """The first n Fibonacci numbers."""
    values = [0, 1]
    while len(values) < n:
        values.append(values[-1] + values[-2])
    return values[:n]
'''
_SYLLABLES = {
    "en": ["the", "and", "ing", "tion", "er", "al", "str", "pro", "con", "ment", "ly"],
    "fr": ["le", "la", "les", "ment", "eau", "ét", "ç", "qu", "oi", "ère", "eux"],
    "de": ["sch", "ein", "ung", "ä", "ö", "ü", "ß", "keit", "lich", "ver", "zu"],
    "ru": ["при", "вет", "ость", "ние", "ка", "ст", "ов", "ый", "ра", "ль", "ж"],
    "zh": ["中", "文", "字", "国", "人", "大", "学", "生", "的", "是", "了"],
}


def generated_text(rng: random.Random, language: str, words: int) -> str:
    """Words of a language's syllables, with numbers and punctuation, in lines."""
    syllables = _SYLLABLES[language]
    out = []
    for i in range(words):
        if rng.random() < 0.08:
            out.append(str(rng.randrange(10 ** rng.randint(1, 7))))
        else:
            out.append("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))))
        if i % 12 == 11:
            out.append(".\n" if rng.random() < 0.5 else ",")
    sep = "" if language == "zh" else " "
    return sep.join(out)


def documents(n: int, seed: int = 0) -> list[dict]:
    """`n` contract rows: generated text in five languages, the real paragraphs, code."""
    rng = random.Random(seed)
    rows = []
    languages = list(_SYLLABLES)
    for i in range(n):
        kind = i % 7
        if kind < 5:
            language = languages[kind]
            text = generated_text(rng, language, rng.randint(20, 120))
            if rng.random() < 0.3:
                text = PARAGRAPHS.get(language, PARAGRAPHS["en"]) + "\n\n" + text
            rows.append(_row("commoncrawl", i, text, language))
        elif kind == 5:
            language = rng.choice(list(PARAGRAPHS))
            rows.append(_row("wikipedia", i, PARAGRAPHS[language], language))
        else:
            rows.append(_row("github", i, CODE.replace("fibonacci", f"fibonacci_{i}"), None))
    return rows


def _row(source: str, i: int, text: str, language: str | None) -> dict:
    return {
        "id": document_id(source, str(i)),
        "source": source,
        "text": text,
        "url": None,
        "meta": json.dumps({"n": i}),
        "language": language,
    }


def write_parts(directory: Path, rows: list[dict], rows_per_part: int) -> list[str]:
    """Contract Parquet parts `part-NNNNN.parquet` of `rows_per_part` rows each, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(rows), rows_per_part):
        path = directory / f"part-{start // rows_per_part:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[start : start + rows_per_part]), path)
        paths.append(str(path))
    return paths
