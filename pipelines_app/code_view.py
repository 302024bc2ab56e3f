"""A pipeline's code on its admin page: `main.py` (or a notebook pipeline's `main.ipynb`, its
cells as one script) and `requirements.txt` as read from its folder (under discovery's rules),
and the normalised pipeline.json with credentials hidden,
each highlighted by Pygments on the server (CSS classes only; the colours are in
static/pipelines_app/pygments.css, generated from `pygments_css()`), so no script or CDN is
involved and the code is never executed or sent anywhere."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import JsonLexer, PythonLexer, TextLexer

from pipelines_app.discovery import pipeline_file_read
from pipelines_app.models import Pipeline

# More than anyone reads on a page; a longer file is cut with a note.
MAX_SHOWN_BYTES = 256 * 1024
LIGHT_STYLE, DARK_STYLE = "default", "github-dark"
CSS_CLASS = "ff-hl"


@dataclass(frozen=True)
class CodeFile:
    name: str
    html: SafeString | None  # None: absent or unreadable (see `problem`)
    lines: int = 0
    truncated: bool = False
    problem: str = ""

    @property
    def slug(self) -> str:
        return self.name.replace(".", "-")


def _formatter() -> HtmlFormatter:
    return HtmlFormatter(cssclass=CSS_CLASS, linenos="table", wrapcode=True)


def highlighted(text: str, lexer: Lexer) -> SafeString:
    # Pygments escapes the text it emits: the result is safe to mark so.
    return mark_safe(highlight(text, lexer, _formatter()))  # noqa: S308


def _requirements_lexer() -> Lexer:
    try:
        from pygments.lexers import PythonRequirementsLexer  # Pygments >= 2.17
    except ImportError:  # pragma: no cover - older Pygments
        return TextLexer()
    return PythonRequirementsLexer()


def notebook_as_script(data: bytes) -> str | None:
    """A notebook's cells in order as one script, each after a `# %%` line (code as is,
    markdown as comments), the way editors show a notebook as Python; None if it is not a
    notebook's JSON (discovery reports why)."""
    try:
        cells = json.loads(data.decode("utf-8-sig"))["cells"]
        parts = []
        for index, cell in enumerate(cells, start=1):
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            if cell.get("cell_type") == "code":
                parts.append(f"# %% cell {index}\n{source.rstrip()}\n")
            else:
                commented = "\n".join(f"# {line}".rstrip() for line in source.splitlines())
                parts.append(
                    f"# %% [{cell.get('cell_type', 'markdown')}] cell {index}\n{commented}\n"
                )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return "\n".join(parts)


def _file(pipeline: Pipeline, name: str, lexer: Lexer) -> CodeFile | None:
    data, problem = pipeline_file_read(pipeline.pipeline_name, name, limit=MAX_SHOWN_BYTES + 1)
    if data is None:
        return CodeFile(name=name, html=None, problem=problem) if problem else None
    truncated = len(data) > MAX_SHOWN_BYTES
    text = data[:MAX_SHOWN_BYTES].decode("utf-8", errors="replace")
    if name.endswith(".ipynb"):
        script = None if truncated else notebook_as_script(data)
        text, lexer = (script, lexer) if script is not None else (text, JsonLexer())
    if truncated:
        text = text[: text.rfind("\n") + 1]
    return CodeFile(
        name=name,
        html=highlighted(text, lexer),
        lines=text.count("\n") + (0 if text.endswith("\n") or not text else 1),
        truncated=truncated,
    )


def pipeline_code_files(pipeline: Pipeline) -> list[CodeFile]:
    """The entry file (main.py, or main.ipynb for a notebook pipeline), requirements.txt (when
    present) and the normalised pipeline.json. The file itself is never shown: it may hold
    webhook keys and encrypted values."""
    files = [
        _file(pipeline, pipeline.spec.entry_file, PythonLexer()),
        _file(pipeline, "requirements.txt", _requirements_lexer()),
    ]
    metadata = json.dumps(pipeline.metadata_redacted(), indent=2, ensure_ascii=False) + "\n"
    files.append(
        CodeFile(
            name="pipeline.json",
            html=highlighted(metadata, JsonLexer()),
            lines=metadata.count("\n"),
        )
    )
    return [f for f in files if f is not None]


def pygments_css() -> str:
    """The token colours for both themes, scoped to the code view (pygments.css is this)."""

    def rules(style: str, *scopes: str) -> str:
        return "\n".join(HtmlFormatter(style=style).get_token_style_defs(list(scopes)))

    light = rules(LIGHT_STYLE, f'html[data-theme="light"] .{CSS_CLASS}', f":root .{CSS_CLASS}")
    dark_explicit = rules(DARK_STYLE, f'html[data-theme="dark"] .{CSS_CLASS}')
    dark_auto = rules(DARK_STYLE, f':root:not([data-theme="light"]) .{CSS_CLASS}')
    return (
        "/* Generated by `python scripts/pygments_css.py` from "
        f"pipelines_app/code_view.py (Pygments styles {LIGHT_STYLE!r} and {DARK_STYLE!r}). */\n"
        f"{light}\n{dark_explicit}\n"
        f"@media (prefers-color-scheme: dark) {{\n{dark_auto}\n}}\n"
    )
