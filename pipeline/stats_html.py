"""`tfpipe stats ... --html FILE`: the statistics of a data drop as one self-contained HTML page.

Per feature, one chart comparing the splits and, where the validator had one, the previous drop's train split
(its drift baseline): for numbers, the standard histograms re-binned onto common edges (inline SVG, one
`<g class="histogram">` per split); for strings, the most frequent values' shares (CSS bars). Features with an
anomaly, and those whose drift or skew measure went over its threshold, are marked and listed first. No
script, font or stylesheet is fetched: the page works offline and as an e-mail attachment.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

from components.example_validator import frequencies

_BINS = 20
_TOP = 12
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
_PREVIOUS = "#7f7f7f"
_W, _H, _PAD = 520, 150, 28

_STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 28px; }
.feature { border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.feature.anomalous { border: 2px solid #d62728; background: #fff5f5; }
.feature.drifted { border: 2px solid #d62728; background: #fff0e6; }
.feature h3 { margin: 0 0 6px; font-size: 15px; }
.tag { display: inline-block; font-size: 12px; padding: 1px 6px; border-radius: 3px; margin-left: 6px; }
.tag.error { background: #d62728; color: #fff; } .tag.warn { background: #ffbf00; color: #222; }
.tag.drift { background: #ff7f0e; color: #fff; }
.reasons { margin: 4px 0 8px 18px; color: #8b0000; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: middle; }
table.values { border-collapse: collapse; font-size: 12px; }
table.values td { padding: 1px 6px; } table.values td.v { max-width: 200px; overflow: hidden; }
.bar { display: inline-block; height: 10px; vertical-align: middle; margin-right: 4px; }
.summary td, .summary th { padding: 2px 8px; text-align: left; border-bottom: 1px solid #eee; font-size: 12px; }
svg text { font-size: 10px; fill: #555; }
"""


@dataclass
class _Series:
    label: str  # "train", "eval", "previous drop (train)"
    color: str
    feature: Any  # a FeatureNameStatistics
    examples: int


@dataclass
class _Verdict:
    reasons: list[str] = field(default_factory=list)  # "split: description"
    severity: str = ""  # "error", "warn" or ""
    drifted: list[str] = field(default_factory=list)  # "drift (train) 0.39 > 0.2"


def _name(feature) -> str:
    return ".".join(feature.path.step) if feature.path.step else feature.name


def _standard(feature) -> list[tuple[float, float, float]]:
    from tensorflow_metadata.proto.v0 import statistics_pb2 as sp

    for h in feature.num_stats.histograms:
        if h.type == sp.Histogram.STANDARD:
            return [(b.low_value, b.high_value, b.sample_count) for b in h.buckets]
    return []


def _rebin(buckets: list, edges: list[float]) -> list[float]:
    """A histogram's share on each interval between `edges` (spread evenly within its buckets)."""
    total = sum(c for _, _, c in buckets) or 1.0
    out = [0.0] * (len(edges) - 1)
    for lo, hi, count in buckets:
        if hi <= lo:  # a point: the bin that holds it
            i = max(0, min(len(out) - 1, next((k for k in range(len(out)) if lo < edges[k + 1]), len(out) - 1)))
            out[i] += count / total
            continue
        for i in range(len(out)):
            overlap = min(edges[i + 1], hi) - max(edges[i], lo)
            if overlap > 0:
                out[i] += count / total * overlap / (hi - lo)
    return out


def _g(x: float) -> str:
    return f"{x:.4g}"


def _numeric_svg(name: str, series: list[_Series]) -> str:
    hists = [(s, _standard(s.feature)) for s in series]
    hists = [(s, h) for s, h in hists if h]
    if not hists:
        return '<p class="empty">no values</p>'
    lo = min(b[0] for _, h in hists for b in h)
    hi = max(b[1] for _, h in hists for b in h)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return '<p class="empty">no finite values</p>'
    if hi <= lo:
        hi = lo + 1.0
    edges = [lo + (hi - lo) * i / _BINS for i in range(_BINS + 1)]
    shares = [(s, _rebin(h, edges)) for s, h in hists]
    top = max(max(v) for _, v in shares) or 1.0
    plot_w, plot_h = _W - 2 * _PAD, _H - 2 * _PAD + 8
    slot = plot_w / _BINS
    width = slot / (len(shares) + 0.5)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'role="img" aria-label="{html.escape(name)} histogram by split">',
        f'<line x1="{_PAD}" y1="{_PAD + plot_h}" x2="{_PAD + plot_w}" y2="{_PAD + plot_h}" stroke="#999"/>',
    ]
    for k, (s, values) in enumerate(shares):
        parts.append(
            f'<g class="histogram" data-feature="{html.escape(name)}" data-split="{html.escape(s.label)}" '
            f'fill="{s.color}">'
        )
        for i, v in enumerate(values):
            h = plot_h * v / top
            x = _PAD + i * slot + k * width + width / 4
            parts.append(
                f'<rect x="{x:.1f}" y="{_PAD + plot_h - h:.1f}" width="{width:.1f}" height="{h:.1f}">'
                f"<title>{html.escape(s.label)}: {v:.1%} in [{_g(edges[i])}, {_g(edges[i + 1])})</title></rect>"
            )
        parts.append("</g>")
    for i in (0, _BINS // 2, _BINS):
        x = _PAD + i * slot
        anchor = "start" if i == 0 else "end" if i == _BINS else "middle"
        parts.append(f'<text x="{x:.1f}" y="{_H - 4}" text-anchor="{anchor}">{_g(edges[i])}</text>')
    parts.append(f'<text x="{_PAD}" y="{_PAD - 8}">max share {top:.1%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _string_table(name: str, series: list[_Series]) -> str:
    freqs = [(s, frequencies(s.feature)) for s in series]
    order: dict[str, float] = {}
    for _, f in freqs:
        for value, share in f.items():
            order[value] = max(order.get(value, 0.0), share)
    values = sorted(order, key=lambda v: (-order[v], v))[:_TOP]
    if not values:
        return '<p class="empty">no values</p>'
    head = "".join(f"<th>{html.escape(s.label)}</th>" for s, _ in freqs)
    rows = []
    for value in values:
        cells = []
        for s, f in freqs:
            share = f.get(value, 0.0)
            cells.append(
                f'<td><span class="bar" style="width:{max(1, round(160 * share))}px;background:{s.color}"></span>'
                f"{share:.1%}</td>"
            )
        rows.append(f'<tr><td class="v">{html.escape(value[:40])}</td>{"".join(cells)}</tr>')
    more = len(order) - len(values)
    tail = f'<tr><td colspan="{len(freqs) + 1}">... and {more} more value(s)</td></tr>' if more > 0 else ""
    return (
        f'<table class="values" data-feature="{html.escape(name)}"><tr><th>value</th>{head}</tr>'
        + "".join(rows)
        + tail
        + "</table>"
    )


def _verdicts(anomalies: dict) -> dict[str, _Verdict]:
    """{feature: what the validator said}: anomaly reasons by split, and drift / skew over threshold."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2 as ap

    out: dict[str, _Verdict] = {}
    for split, proto in anomalies.items():
        for feature, info in proto.anomaly_info.items():
            v = out.setdefault(feature, _Verdict())
            v.reasons += [f"{split}: {r.description}" for r in info.reason]
            severity = "error" if info.severity == ap.AnomalyInfo.ERROR else "warn"
            v.severity = "error" if "error" in (v.severity, severity) else severity
        for entry in proto.drift_skew_info:
            feature = ".".join(entry.path.step)
            for kind, measures in (("drift", entry.drift_measurements), ("skew", entry.skew_measurements)):
                for m in measures:
                    if m.value > m.threshold:
                        v = out.setdefault(feature, _Verdict())
                        v.drifted.append(f"{kind} ({split}) {m.value:.3g} > {m.threshold:.3g}")
    return out


def render(drops: list[dict], title: str) -> str:
    """The page. Each drop: {"title", "statistics": DatasetFeatureStatisticsList, "anomalies": {split: Anomalies},
    "previous": the baseline's DatasetFeatureStatisticsList or None, "train_split": name}."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for drop in drops:
        train_split = drop.get("train_split", "train")
        # the train split first (the reference the others are read against), then the rest in their order
        splits = {d.name: d for d in sorted(drop["statistics"].datasets, key=lambda d: d.name != train_split)}
        previous = None
        if drop.get("previous") is not None:
            prev = {d.name: d for d in drop["previous"].datasets}
            previous = prev.get(train_split) or next(iter(prev.values()), None)
        verdicts = _verdicts(drop.get("anomalies") or {})
        labels = [(name, _COLORS[i % len(_COLORS)]) for i, name in enumerate(splits)]
        if previous is not None:
            labels.append(("previous drop (train)", _PREVIOUS))
        body.append(f"<h2>{html.escape(drop['title'])}</h2>")
        counts = ", ".join(f"{name} {d.num_examples} examples" for name, d in splits.items())
        if previous is not None:
            counts += f"; previous drop's train split {previous.num_examples} examples"
        body.append(f"<p>{html.escape(counts)}</p>")
        body.append(
            '<p class="legend">'
            + "".join(f'<span><i style="background:{c}"></i>{html.escape(n)}</span>' for n, c in labels)
            + "</p>"
        )
        names: list[str] = []
        for d in [*splits.values(), *([previous] if previous is not None else [])]:
            names += [_name(f) for f in d.features if _name(f) not in names]
        flagged = [n for n in names if n in verdicts]
        body.append(
            "<p>"
            + (
                f"{len(flagged)} feature(s) flagged: "
                + ", ".join(f'<a href="#f-{html.escape(n)}">{html.escape(n)}</a>' for n in flagged)
                if flagged
                else "no anomaly, drift or skew found"
                if drop.get("anomalies")
                else "not validated (no anomalies artifact)"
            )
            + "</p>"
        )
        for name in sorted(names, key=lambda n: (n not in verdicts, n)):
            series = []
            for (split, color), d in zip(labels, [*splits.values(), *([previous] if previous is not None else [])]):
                f = next((f for f in d.features if _name(f) == name), None)
                if f is not None:
                    series.append(_Series(split, color, f, d.num_examples))
            body.append(_feature_section(name, series, verdicts.get(name)))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _feature_section(name: str, series: list[_Series], verdict: _Verdict | None) -> str:
    numeric = any(s.feature.HasField("num_stats") for s in series)
    classes = ["feature"]
    tags = []
    if verdict is not None:
        if verdict.drifted:
            classes.append("drifted")
            tags.append(
                '<span class="tag drift">DRIFTED</span>'
                if any(d.startswith("drift") for d in verdict.drifted)
                else '<span class="tag drift">SKEWED</span>'
            )
        if verdict.reasons:
            classes.append("anomalous")
            tags.append(
                f'<span class="tag {verdict.severity}">{"ERROR" if verdict.severity == "error" else "warning"}</span>'
            )
    rows = []
    for s in series:
        common = s.feature.num_stats.common_stats if numeric else s.feature.string_stats.common_stats
        missing = common.num_missing / s.examples if s.examples else 0.0
        if numeric:
            n = s.feature.num_stats
            extra = f"<td>mean {_g(n.mean)}</td><td>std {_g(n.std_dev)}</td><td>min {_g(n.min)}</td><td>max {_g(n.max)}</td>"
        else:
            extra = f"<td>{int(s.feature.string_stats.unique)} unique</td>"
        rows.append(f"<tr><th>{html.escape(s.label)}</th><td>missing {missing:.1%}</td>{extra}</tr>")
    reasons = ""
    if verdict is not None and (verdict.reasons or verdict.drifted):
        reasons = (
            '<ul class="reasons">'
            + "".join(f"<li>{html.escape(r)}</li>" for r in [*verdict.drifted, *verdict.reasons])
            + "</ul>"
        )
    chart = _numeric_svg(name, series) if numeric else _string_table(name, series)
    kind = "numeric" if numeric else "string"
    return (
        f'<section class="{" ".join(classes)}" id="f-{html.escape(name)}" data-feature="{html.escape(name)}" '
        f'data-kind="{kind}"><h3>{html.escape(name)}{"".join(tags)}</h3>{reasons}'
        f'<table class="summary">{"".join(rows)}</table>{chart}</section>'
    )
