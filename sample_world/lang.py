"""A tiny stopword/script language check, so planted language labels can be trusted.

The sample builder must not depend on fastText, yet a handbook page in ``fr-FR`` that is still
half English must not be labelled ``fr``. Function words are a cheap, reliable signal for the few
languages the sample uses; scripts decide Japanese and Russian outright.
"""

from __future__ import annotations

import re
from collections import Counter

# ISO 639-1 (as fastText lid.176 names them) -> ISO 639-3 (as Common Crawl's WET headers do).
ISO3 = {
    "en": "eng",
    "fr": "fra",
    "de": "deu",
    "es": "spa",
    "it": "ita",
    "pt": "por",
    "nl": "nld",
    "ja": "jpn",
    "ru": "rus",
    "la": "lat",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "the of and to in is that for it as with are be this by on not or from an which can you at "
        "have was if will its they their has but all also when these one may other more should "
        "what there would been only into than then them so such any each used"
    ),
    "fr": _words(
        "le la les de des du et est un une en que qui dans pour pas sur au aux par plus ce cette "
        "ces il elle ils sont ou avec se sa son ses leur leurs mais être été comme peut fait tout "
        "aussi lorsque dont si nous vous on même entre sans"
    ),
    "de": _words(
        "der die das und ist nicht ein eine einen einem einer zu den dem des mit von im für auf "
        "sich auch es wird werden wenn oder als bei aus nach sind kann nur wie dass zum zur durch "
        "diese dieser dieses wurde noch über unter sie"
    ),
    "es": _words(
        "el la los las de del y en un una que es por para con no se su sus al lo como más pero "
        "este esta estos estas ser son puede también cuando si entre sin sobre hay todo muy ya "
        "desde donde otros"
    ),
    "it": _words(
        "il lo la gli le di del della dei delle e è un una che per con non si su sono da al alla "
        "nel nella come più anche questo questa quando se tra ma essere può ad ed degli dalla sul "
        "sulla viene"
    ),
    "pt": _words(
        "o a os as de do da dos das e é um uma que em no na nos nas para com não se por ao mais "
        "como mas ser são pode também quando entre sem sobre este esta isso seu sua pelo pela ou "
        "já"
    ),
    "nl": _words(
        "de het een en van is dat in op te met voor niet zijn die er aan als ook door om bij of "
        "naar uit wordt worden kan dit deze wel nog maar dan tot moet hebben heeft zo meer"
    ),
    "la": _words(
        "et in est ad non cum sed ut quis quod sit amet dolor ipsum lorem eu nec vel nulla aliquam "
        "enim pellentesque id ac at"
    ),
}

# word -> the languages it is a stopword of: one dictionary look-up per distinct word.
_WORD_LANGS: dict[str, tuple[str, ...]] = {}
for _lang, _words in _STOPWORDS.items():
    for _w in _words:
        _WORD_LANGS[_w] = (*_WORD_LANGS.get(_w, ()), _lang)

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_KANA = re.compile(r"[\u3040-\u30ff]")
_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\uff66-\uff9f]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def detect(text: str) -> tuple[str | None, float]:
    """Best language and a confidence in [0, 1]; ``(None, 0.0)`` when there is no signal.

    Script first (kana -> ja, Cyrillic -> ru), then the share of stopwords of each Latin-script
    language among all words.
    """
    if _CJK.search(text) or _CYRILLIC.search(text):
        letters = len(_LATIN.findall(text))
        cjk = len(_CJK.findall(text))
        cyr = len(_CYRILLIC.findall(text))
        total = letters + cjk + cyr
        if cjk / total > 0.3 and _KANA.search(text):
            return "ja", cjk / total
        if cyr / total > 0.5:
            return "ru", cyr / total
    words = _WORD.findall(text.lower())
    if not words:
        return None, 0.0
    scores = dict.fromkeys(_STOPWORDS, 0)
    for word, n in Counter(words).items():
        for lang in _WORD_LANGS.get(word, ()):
            scores[lang] += n
    scores = {lang: n / len(words) for lang, n in scores.items()}
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    best, best_score = ranked[0]
    runner_up = ranked[1][1]
    if best_score < 0.08:
        return None, 0.0
    # Confidence: how far the winner is ahead of the runner-up, relative to its own score.
    return best, (best_score - runner_up) / best_score


def is_language(text: str, lang: str, min_confidence: float = 0.35) -> bool:
    """True when ``text`` is confidently in ``lang`` (used to drop untranslated paragraphs)."""
    best, conf = detect(text)
    return best == lang and conf >= min_confidence
