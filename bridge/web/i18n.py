"""Which language a page speaks: the ``lang`` cookie (the switch link), else Accept-Language, else German."""

from __future__ import annotations

from starlette.requests import Request

from bridge.web import text_de, text_en

LANGS = ("de", "en")
_TEXTS = {"de": text_de.TEXT, "en": text_en.TEXT}


def texts(lang: str) -> dict[str, str]:
    return _TEXTS.get(lang, text_de.TEXT)


def pick_language(request: Request) -> str:
    chosen = request.cookies.get("lang")
    if chosen in LANGS:
        return chosen
    best, best_q = "de", -1.0
    for part in request.headers.get("accept-language", "")[:500].split(","):
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if code in LANGS and q > best_q:
            best, best_q = code, q
    return best
