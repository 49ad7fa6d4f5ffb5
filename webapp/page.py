"""The page: what the web app shows, as HTML fragments (plain functions of a snapshot) and the Gradio layout.

Element ids the browser tests (and anyone scripting the page) can rely on: ``sw-status`` (one line per source,
``class="sw-ok"`` or ``"sw-error"``), ``sw-count`` (enriched records read), ``sw-rate``, ``sw-e2e-p50``,
``sw-e2e-p99``, ``sw-worker-p50``, ``sw-worker-p99``, ``sw-dead`` (dead letters), ``sw-lag`` (total lag),
``sw-records`` (the latest records, one ``tr.sw-record`` each), ``sw-reasons``, ``sw-lags``, ``sw-mix`` (the plot),
``sw-try-text``, ``sw-try-button`` and ``sw-try-result`` (``data-label`` holds the label).
"""

from __future__ import annotations

import html
import os
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from webapp.classify import ClassifyError, Verdict
from webapp.data import Snapshot
from webapp.feed import Status

if TYPE_CHECKING:
    import pandas as pd

UI_EXTRA = "ui"
# The distributions of pyproject.toml's [ui] extra besides [http] (a unit test keeps the lists equal).
UI_PACKAGES: tuple[str, ...] = ("gradio",)
CSS = """
#sw-status .sw-ok { color: #137333; } #sw-status .sw-error { color: #b3261e; font-weight: 600; }
.sw-cards { display: flex; flex-wrap: wrap; gap: 8px; }
.sw-card { border: 1px solid #ddd; border-radius: 8px; padding: 6px 10px; min-width: 96px; }
.sw-card b { display: block; font-size: 1.3em; } .sw-card small { color: #666; }
table.sw-table { width: 100%; border-collapse: collapse; font-size: 0.9em; }
table.sw-table td, table.sw-table th { border-bottom: 1px solid #eee; padding: 3px 6px; text-align: left; }
.sw-POSITIVE { color: #137333; font-weight: 600; } .sw-NEGATIVE { color: #b3261e; font-weight: 600; }
"""


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def status_html(statuses: Sequence[Status]) -> str:
    lines = []
    for status in statuses:
        css = "sw-ok" if status.ok else "sw-error"
        mark = "●" if status.ok else "⚠"
        lines.append(f'<div class="{css}">{mark} {html.escape(status.message)}</div>')
    return f'<div id="sw-status">{"".join(lines)}</div>'


def _card(element: str, value: str, caption: str) -> str:
    return f'<div class="sw-card"><b id="{element}">{html.escape(value)}</b><small>{html.escape(caption)}</small></div>'


def stats_html(snap: Snapshot, lags: dict[tuple[str, int], int] | None) -> str:
    total_lag = "–" if lags is None else f"{sum(lags.values()):,}"
    cards = [
        _card("sw-count", f"{snap.records:,}", "enriched records read"),
        _card("sw-rate", f"{snap.per_s:,.1f}/s", "throughput (last 10 s)"),
        _card("sw-e2e-p50", _ms(snap.e2e_p50), "end-to-end p50"),
        _card("sw-e2e-p99", _ms(snap.e2e_p99), "end-to-end p99"),
        _card("sw-worker-p50", _ms(snap.worker_p50), "in worker p50"),
        _card("sw-worker-p99", _ms(snap.worker_p99), "in worker p99"),
        _card("sw-dead", f"{snap.dead_letters:,}", "dead letters"),
        _card("sw-lag", total_lag, "consumer lag"),
    ]
    mix = ", ".join(f"{html.escape(label)} {n:,}" for label, n in snap.labels.items()) or "–"
    return f'<div id="sw-stats"><div class="sw-cards">{"".join(cards)}</div><p>Label mix (recent): {mix}</p></div>'


def records_html(snap: Snapshot) -> str:
    rows = []
    for r in snap.latest:
        when = "" if r.processed_at is None else datetime.fromtimestamp(r.processed_at, UTC).strftime("%H:%M:%S")
        text = r.text if len(r.text) <= 140 else r.text[:137] + "..."
        label = html.escape(r.label)
        rows.append(
            f'<tr class="sw-record" data-label="{label}"><td>{when}</td><td class="sw-{label}">{label}</td>'
            f"<td>{r.score:.3f}</td><td>{html.escape(r.topic)}/{r.partition}@{r.offset}</td>"
            f"<td>{html.escape(text)}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="5">no enriched records yet</td></tr>')
    head = "<tr><th>enriched</th><th>label</th><th>score</th><th>topic/partition@offset</th><th>text</th></tr>"
    return f'<table id="sw-records" class="sw-table">{head}{"".join(rows)}</table>'


def reasons_html(snap: Snapshot) -> str:
    rows = (
        "".join(
            f'<tr data-reason="{html.escape(reason)}"><td>{html.escape(reason)}</td><td>{n:,}</td></tr>'
            for reason, n in snap.reasons.items()
        )
        or '<tr><td colspan="2">no dead letters</td></tr>'
    )
    return f'<table id="sw-reasons" class="sw-table"><tr><th>reason</th><th>dead letters</th></tr>{rows}</table>'


def lags_html(lags: dict[tuple[str, int], int] | None, source: str | None) -> str:
    if source is None:
        body = '<tr><td colspan="3">give the worker\'s /metrics URL (--metrics-url) to see its consumer lag</td></tr>'
    elif lags is None:
        body = '<tr><td colspan="3">no answer from the worker\'s metrics yet</td></tr>'
    else:
        body = (
            "".join(
                f"<tr><td>{html.escape(t)}</td><td>{p}</td><td>{n:,}</td></tr>" for (t, p), n in sorted(lags.items())
            )
            or '<tr><td colspan="3">the worker owns no partitions</td></tr>'
        )
    return f'<table id="sw-lags" class="sw-table"><tr><th>topic</th><th>partition</th><th>lag</th></tr>{body}</table>'


def mix_frame(snap: Snapshot, now: float) -> pd.DataFrame | None:
    """The plot's data; with no recent records, a zero per known label at ``now``; ``None`` before any record
    (Gradio 5.50's LinePlot sent an empty frame first never draws later data, so the plot is left as it is)."""
    import pandas as pd

    rows = [(t, label, n) for t, label, n in snap.mix] or [(now, label, 0) for label in sorted(snap.labels)]
    if not rows:
        return None
    stamped = [(datetime.fromtimestamp(t, UTC).replace(tzinfo=None), label, n) for t, label, n in rows]
    return pd.DataFrame(stamped, columns=["time", "label", "records"])


def verdict_html(verdict: Verdict | None, error: str | None = None) -> str:
    if verdict is None:
        message = html.escape(error or "")
        return f'<div id="sw-try-result" class="sw-error" data-label="">{message}</div>'
    scores = ", ".join(f"{html.escape(k)} {v:.3f}" for k, v in sorted(verdict.scores.items(), key=lambda kv: -kv[1]))
    label = html.escape(verdict.label)
    return (
        f'<div id="sw-try-result" data-label="{label}"><b class="sw-{label}">{label}</b> {verdict.score:.3f}'
        f"<br><small>{scores} — via {html.escape(verdict.via)}</small></div>"
    )


def require_ui() -> None:
    """Raise ``ExtraNotInstalledError`` naming the [ui] extra unless Gradio (and the [http] packages) are there."""
    from worker.model.errors import require_extra
    from worker.serve.front import HTTP_PACKAGES

    require_extra(UI_EXTRA, (*UI_PACKAGES, *HTTP_PACKAGES), "the web app (sentiment-worker ui)")


def gradio() -> Any:
    """``import gradio`` with analytics off (no network), or the error naming the [ui] extra."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from worker.model.errors import extra_imports

    with extra_imports(UI_EXTRA, "the web app (sentiment-worker ui)"):
        import gradio as gr
    return gr


def build_blocks(
    title: str,
    refresh: Callable[[], tuple[Any, ...]],
    try_it: Callable[[str], str],
    *,
    every_s: float = 1.0,
    note: str = "",
) -> Any:
    """The Gradio page: a timer calls ``refresh`` every ``every_s`` (status, cards, plot, records, dead letters,
    lag); the button (or Enter) calls ``try_it``."""
    gr = gradio()
    # System fonts: the default theme links Google Fonts, which a machine without internet can't load.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    with warnings.catch_warnings():  # Gradio 5.50 warns that 6.0 moves theme and css to launch(), which 5.50 lacks
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="gradio")
        warnings.filterwarnings("ignore", message="The '(theme|css)' parameter", category=DeprecationWarning)
        return _layout(gr, gr.Blocks(title=title, theme=theme, css=CSS, analytics_enabled=False), refresh, try_it,
                       every_s=every_s, title=title, note=note)  # fmt: skip


def _layout(
    gr: Any,
    blocks: Any,
    refresh: Callable[[], tuple[Any, ...]],
    try_it: Callable[[str], str],
    *,
    every_s: float,
    title: str,
    note: str,
) -> Any:
    with blocks:
        gr.Markdown(f"# {title}" + (f"\n{note}" if note else ""))
        status = gr.HTML(status_html([]), elem_id="sw-status-box", padding=True)
        stats = gr.HTML(elem_id="sw-stats-box", padding=True)
        with gr.Row():
            with gr.Column(scale=3):
                mix = gr.LinePlot(
                    x="time", y="records", color="label", title="Label mix over time (records per 2 s)",
                    elem_id="sw-mix", height=260, x_title="enriched at (UTC)",
                )  # fmt: skip
            with gr.Column(scale=2):
                gr.Markdown("### Try it")
                text = gr.Textbox(label="Text", placeholder="Type a review ...", lines=2, elem_id="sw-try-text")
                button = gr.Button("Classify", variant="primary", elem_id="sw-try-button")
                result = gr.HTML(verdict_html(None, ""), elem_id="sw-try-box", padding=True)
        gr.Markdown("### Latest enriched records")
        records = gr.HTML(elem_id="sw-records-box", padding=True)
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Dead letters by reason")
                reasons = gr.HTML(elem_id="sw-reasons-box", padding=True)
            with gr.Column():
                gr.Markdown("### Consumer lag (worker /metrics)")
                lags = gr.HTML(elem_id="sw-lags-box", padding=True)
        outputs = [status, stats, mix, records, reasons, lags]
        timer = gr.Timer(every_s)
        timer.tick(refresh, outputs=outputs, show_progress="hidden")
        blocks.load(refresh, outputs=outputs, show_progress="hidden")
        button.click(try_it, inputs=text, outputs=result)
        text.submit(try_it, inputs=text, outputs=result)
    return blocks


def render(
    snap: Snapshot,
    statuses: Sequence[Status],
    lags: dict[tuple[str, int], int] | None,
    lag_source: str | None,
    now: float,
    unchanged: Any = None,
) -> tuple[str, str, Any, str, str, str]:
    """The refresh's outputs, in :func:`build_blocks` order; ``unchanged`` stands for "leave the plot as it is"."""
    frame = mix_frame(snap, now)
    return (
        status_html(statuses),
        stats_html(snap, lags),
        unchanged if frame is None else frame,
        records_html(snap),
        reasons_html(snap),
        lags_html(lags, lag_source),
    )


def try_it_html(classify: Callable[[str], Verdict], text: str) -> str:
    started = time.perf_counter()
    try:
        verdict = classify(text)
    except ClassifyError as exc:
        return verdict_html(None, str(exc))
    return verdict_html(verdict).replace("</small>", f" ({(time.perf_counter() - started) * 1000:.0f} ms)</small>")
