"""Stage 4b, render to PDF: WeasyPrint, fetching nothing but the project's own template assets.

The URL fetcher refuses every URL that is not a `file:` path inside `templates/` (no network, no
`data:`, no `/etc/passwd` through `<link rel="attachment">`), and a refusal stops the rendering:
a sheet never silently ships with a hole in it, or with a file it should not hold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import weasyprint
from weasyprint.urls import FatalURLFetchingError, URLFetcher


class RefusedURL(FatalURLFetchingError):
    pass


class AssetFetcher(URLFetcher):
    """Serves `file:` URLs under `root` and refuses everything else."""

    def __init__(self, root: Path):
        super().__init__(allowed_protocols={"file"}, fail_on_errors=True)
        self.root = root.resolve()

    def fetch(self, url: str, headers: dict[str, str] | None = None):  # type: ignore[override]
        parsed = urlparse(url)
        path = Path(unquote(parsed.path)).resolve() if parsed.scheme == "file" else None
        if path is None or parsed.netloc or not path.is_relative_to(self.root):
            raise RefusedURL(f"refused to fetch {url!r}: sheets may only use files in templates/")
        return super().fetch(url, headers)


@dataclass(frozen=True)
class RenderedPDF:
    data: bytes
    pages: int


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # Subsetting fonts with fontTools instead of HarfBuzz gives the same PDF; whether the
        # system has libharfbuzz-subset is not the sheet author's business.
        if "HarfBuzz-Subset" not in message and message not in self.messages:
            self.messages.append(message)


def render_pdf(html: str, assets: Path, *, title: str) -> tuple[RenderedPDF, list[str]]:
    """PDF bytes and page count, plus WeasyPrint's warnings. Raises RefusedURL."""
    capture = _Warnings()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(capture)
    try:
        document = weasyprint.HTML(
            string=html, base_url=assets.resolve().as_uri() + "/",
            url_fetcher=AssetFetcher(assets)).render()
        document.metadata.title = title
        return RenderedPDF(document.write_pdf(), len(document.pages)), capture.messages
    finally:
        logger.removeHandler(capture)
