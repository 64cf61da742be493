"""The widget bundle (`/widget.js`, `/widget.css`) and the `/demo` company page.

The bundle is `widget/widget.js` with `widget/widget.css` inlined into it, built
once per process: one request puts the widget on a page, with no flash of
unstyled content. Host pages load it cross-origin with a plain script tag, so it
is served to any origin, revalidated cheaply (ETag) and precompressed.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from app.context import AppContext
from app.models import Inbox
from app.services.demo import demo_widget_inbox
from app.services.origins import normalize_origin
from app.services.widget import origin_allowed, pick_locale

WIDGET_DIR = Path(__file__).resolve().parents[2] / "widget"
CSS_PLACEHOLDER = '"__HD_CSS__"'
# The embed URL never changes, so the file cannot be cached forever: browsers may use
# it for 5 minutes, then revalidate with the ETag (a 304 costs a few bytes).
CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=86400"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    content_type: str


def _asset(body: bytes, content_type: str) -> Asset:
    digest = hashlib.sha256(body).hexdigest()[:20]
    return Asset(
        body=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        etag=f'"{digest}"',
        content_type=content_type,
    )


def minify_css(css: str) -> str:
    """Drop comments and layout whitespace; CSS has no whitespace-sensitive syntax we use."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"\s+", " ", css)
    css = re.sub(r"\s*([{};,>])\s*", r"\1", css)
    css = re.sub(r":\s+", ":", css)  # never before a colon: `a :hover` is a selector
    return css.replace(";}", "}").strip()


def build_bundle(widget_dir: Path = WIDGET_DIR) -> tuple[Asset, Asset]:
    """(widget.js with the CSS inlined, widget.css)."""
    js = (widget_dir / "widget.js").read_text(encoding="utf-8")
    css = minify_css((widget_dir / "widget.css").read_text(encoding="utf-8"))
    if CSS_PLACEHOLDER not in js:
        raise RuntimeError("widget.js lost its CSS placeholder")
    # json.dumps escapes quotes, backslashes and line terminators: a valid JS string.
    bundle = js.replace(CSS_PLACEHOLDER, json.dumps(css), 1)
    # Voice calls (channels/voice) ship as a separate source file in the same bundle.
    call_js = widget_dir / "call.js"
    if call_js.exists():
        bundle += "\n" + call_js.read_text(encoding="utf-8")
    return (
        _asset(bundle.encode(), "text/javascript; charset=utf-8"),
        _asset(css.encode(), "text/css; charset=utf-8"),
    )


SOURCES = ("widget.js", "widget.css", "call.js")
_built: dict[tuple[float, ...], tuple[Asset, Asset]] = {}


def _bundle() -> tuple[Asset, Asset]:
    """Built once per version of the sources (an edit shows up without a restart)."""
    paths = [WIDGET_DIR / name for name in SOURCES]
    key = tuple(p.stat().st_mtime if p.exists() else 0.0 for p in paths)
    found = _built.get(key)
    if found is None:
        _built.clear()
        found = _built[key] = build_bundle()
    return found


def _serve(request: Request, asset: Asset) -> Response:
    gz = "gzip" in request.headers.get("accept-encoding", "").lower()
    etag = asset.etag[:-1] + '-gz"' if gz else asset.etag
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        # Loaded by other sites' pages: readable by any origin (also with crossorigin=
        # and under COEP), and it carries no credentials or per-user data.
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    match = request.headers.get("if-none-match", "")
    if etag in {tag.strip() for tag in match.split(",")} or match.strip() == "*":
        return Response(status_code=304, headers=headers)
    if gz:
        headers["Content-Encoding"] = "gzip"
    return Response(
        asset.gzipped if gz else asset.body, headers=headers, media_type=asset.content_type
    )


async def widget_js(request: Request) -> Response:
    return _serve(request, _bundle()[0])


async def widget_css(request: Request) -> Response:
    return _serve(request, _bundle()[1])


# -- /demo: a sample company page carrying the one-line embed ---------------------------

DEMO_PAGE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo Company</title>
<style>
  body {{ margin: 0; font: 16px/1.6 Georgia, serif; color: #222; background: #faf8f4; }}
  header {{ padding: 18px 8vw; background: #1f2a44; color: #fff; display: flex;
           justify-content: space-between; align-items: center; }}
  header a {{ color: #fff; margin-left: 18px; }}
  main {{ padding: 40px 8vw; max-width: 760px; }}
  h1 {{ font-size: 2.2em; margin: 0 0 .3em; }}
  .cta {{ font: inherit; padding: 10px 18px; border: 0; border-radius: 6px;
          background: #3454d1; color: #fff; cursor: pointer; }}
  pre {{ background: #fff; border: 1px solid #ddd; padding: 12px; overflow-x: auto;
         font-size: 13px; }}
  .warn {{ background: #fff4e5; border: 1px solid #f0c36d; padding: 10px 14px; }}
</style>
</head>
<body>
<header><strong>Demo Company</strong>
  <nav><a href="?locale=en">English</a><a href="?locale=de">Deutsch</a></nav></header>
<main>
  <h1>{headline}</h1>
  <p>{lead}</p>
  <p><button class="cta" type="button" onclick="Helpdesk.open()">{cta}</button></p>
  {warning}
  <h2>{snippet_title}</h2>
  <p>{snippet_text}</p>
  <pre>{snippet}</pre>
</main>
{tag}
</body>
</html>
"""

DEMO_TEXT = {
    "en": {
        "headline": "Widgets for every occasion",
        "lead": "We make the finest widgets in the land. Questions? Our team is one click "
        "away: use the chat button in the corner.",
        "cta": "Talk to us",
        "snippet_title": "This page's embed",
        "snippet_text": "The chat on this page is this one tag, pasted into the HTML:",
        "missing": "The demo workspace has no widget inbox yet. Run <code>make run</code> "
        "(or <code>helpdesk demo</code>) first.",
        "origin": "This page is open at {here}, which the demo inbox does not allow. Open "
        '<a href="{there}">{there}</a> instead.',
    },
    "de": {
        "headline": "Widgets für jeden Anlass",
        "lead": "Wir bauen die besten Widgets im Land. Fragen? Unser Team ist nur einen Klick "
        "entfernt: über den Chat-Knopf in der Ecke.",
        "cta": "Schreiben Sie uns",
        "snippet_title": "Die Einbindung dieser Seite",
        "snippet_text": "Der Chat auf dieser Seite ist genau dieses eine Tag im HTML:",
        "missing": "Der Demo-Arbeitsbereich hat noch keinen Widget-Posteingang. Bitte zuerst "
        "<code>make run</code> (oder <code>helpdesk demo</code>) ausführen.",
        "origin": "Diese Seite ist unter {here} geöffnet, was der Demo-Posteingang nicht "
        'erlaubt. Bitte <a href="{there}">{there}</a> öffnen.',
    },
}


async def demo_inbox(ctx: AppContext) -> Inbox | None:
    async with ctx.read_sessions() as session:
        return await demo_widget_inbox(session)


def embed_tag(base_url: str, public_key: str, locale: str | None = None) -> str:
    src = html.escape(base_url.rstrip("/") + "/widget.js", quote=True)
    key = html.escape(public_key, quote=True)
    loc = f' data-locale="{html.escape(locale, quote=True)}"' if locale else ""
    return f'<script src="{src}" data-inbox="{key}"{loc} async></script>'


async def demo_page(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    raw_locale = request.query_params.get("locale")
    lang = pick_locale(raw_locale or request.headers.get("accept-language"))
    text = DEMO_TEXT[lang]
    inbox = await demo_inbox(ctx)
    public = ctx.settings.public_url.rstrip("/")
    here = normalize_origin(str(request.base_url)) or ""
    tag = warning = ""
    if inbox is None or not inbox.public_key:
        warning = f'<p class="warn">{text["missing"]}</p>'
        snippet = html.escape(embed_tag(public, "PUBLIC_KEY"))
    else:
        tag = embed_tag(public, inbox.public_key, lang if raw_locale else None)
        snippet = html.escape(embed_tag(public, inbox.public_key))
        if not origin_allowed(inbox, here):
            warning = '<p class="warn">{}</p>'.format(
                text["origin"].format(
                    here=html.escape(here), there=html.escape(public + "/demo", quote=True)
                )
            )
    page = DEMO_PAGE.format(
        lang=lang,
        headline=html.escape(text["headline"]),
        lead=html.escape(text["lead"]),
        cta=html.escape(text["cta"]),
        snippet_title=html.escape(text["snippet_title"]),
        snippet_text=html.escape(text["snippet_text"]),
        snippet=snippet,
        warning=warning,
        tag=tag,
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


routes = [
    Route("/widget.js", widget_js, methods=["GET"]),
    Route("/widget.css", widget_css, methods=["GET"]),
    Route("/demo", demo_page, methods=["GET"]),
]
