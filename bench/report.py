"""Render benchmark records (the JSON lines driver.py writes) as Markdown tables and target
checks, between the result markers of bench/README.md.

    python bench/report.py bench/results/raw/<run>.jsonl   # re-render README.md from a run
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections import defaultdict
from typing import Any

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

# Published peer figures (shared/bench, same machine kind, same harness, pinned): used only
# when a peer could not be run in this sitting.
REFERENCE = {
    "kserve": {"req_s": 986.0, "p99_ms": 96.58},
    "naive": {"req_s": 1472.0, "p99_ms": 89.06},
}


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _cells(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "cell":
            key = (r["server"], r["model"], r["batch"], r["conc"], r["encoding"])
            cells[key].append(r)
    return cells


def _median(reps: list[dict[str, Any]], field: str) -> float:
    return float(statistics.median(r[field] for r in reps))


def tables(records: list[dict[str, Any]]) -> str:
    meta = next((r for r in records if r["kind"] == "meta"), {})
    raw = {(r["model"], r["batch"]): r for r in records if r["kind"] == "raw"}
    cells = _cells(records)
    lines = [
        f"Run `{meta.get('run', '?')}`: {meta.get('cpu', '?')}, {meta.get('nproc', '?')} CPUs, "
        f"server on CPU {meta.get('server_cpus', '?')} (1 ONNX Runtime thread), wrk on CPU "
        f"{meta.get('load_cpus', '?')} (1 thread), {meta.get('secs', '?')} s per cell, "
        f"load average at start {meta.get('loadavg', 0):.2f}. Cells with several runs show the "
        "median (all runs are in the noise table).",
        "",
        "### Raw ONNX Runtime ceiling (in-process, 1 thread, pinned to the server core)",
        "",
        "| model | batch | calls/s | rows/s | p50 us | p99 us |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (model, batch), r in sorted(raw.items()):
        lines.append(
            f"| {model} | {batch} | {_fmt(r['calls_s'])} | {_fmt(r['rows_s'])} | "
            f"{_fmt(r['p50_us'])} | {_fmt(r['p99_us'])} |"
        )
    lines += [
        "",
        "### Servers (closed loop; rows/s ÷ raw = against the 1-thread ceiling at the same batch)",
        "",
        "| server | model | batch | conc | tensors | req/s | rows/s | p50 ms | p99 ms | non-2xx "
        "| rows/s ÷ raw |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    order = {"kiln": 0, "kiln-asgi": 1, "kserve": 2, "kserve-quiet": 3, "naive": 4,
             "null-kiln": 5, "null-uvicorn": 6, "null-granian": 7}  # fmt: skip
    for key in sorted(cells, key=lambda k: (k[1], k[2], k[4], k[3], order.get(k[0], 9))):
        server, model, batch, conc, encoding = key
        reps = cells[key]
        rows_s = _median(reps, "rows_s")
        ceiling = raw.get((model, batch), {}).get("rows_s")
        ratio = f"{rows_s / ceiling:.2f}" if ceiling else "n/a"
        lines.append(
            f"| {server} | {model} | {batch} | {conc} | {encoding} | "
            f"{_fmt(_median(reps, 'req_s'))} | {_fmt(rows_s)} | "
            f"{_median(reps, 'p50_ms'):.2f} | {_median(reps, 'p99_ms'):.2f} | "
            f"{sum(r['non2xx'] for r in reps)} | {ratio} |"
        )
    unsupported = [r for r in records if r["kind"] == "unsupported"]
    for r in unsupported:
        lines.append(
            f"| {r['server']} | {r['model']} | {r['batch']} | - | {r['encoding']} | "
            f"unsupported: {r['why'][:60]} | | | | | |"
        )
    lines += _ceiling(cells)
    lines += _pairs_table(records)
    lines += _http_layer(cells)
    lines += ["", "### Target checks", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += _checks(records, cells, raw)
    repeated = {k: v for k, v in cells.items() if len(v) > 1}
    if repeated:
        lines += [
            "",
            "### Noise: repeated cells",
            "",
            "| server | model | batch | conc | tensors | req/s per run | spread | p99 ms per run |",
            "|---|---|---:|---:|---|---|---:|---|",
        ]
        for key, reps in sorted(repeated.items()):
            values = [r["req_s"] for r in reps]
            spread = (max(values) - min(values)) / statistics.mean(values)
            lines.append(
                f"| {' | '.join(str(k) for k in key)} | "
                f"{', '.join(_fmt(v) for v in values)} | {spread:.0%} | "
                f"{', '.join(format(r['p99_ms'], '.2f') for r in reps)} |"
            )
    batches = [r for r in records if r["kind"] == "batch_sizes"]
    if batches:
        lines += [
            "",
            "Rows per ONNX Runtime call in kiln-server over the whole grid "
            "(from its batch-size histogram): "
            + ", ".join(f"{r['model']} {_mean_rows(r['metrics']):.1f}" for r in batches)
            + ".",
        ]
    return "\n".join(lines)


def _measure(
    cells: dict[tuple[Any, ...], list[dict[str, Any]]], server: str, *cell: Any
) -> tuple[float, float] | None:
    """Median req/s and p99 ms of one cell, or None if it was not run."""
    reps = cells.get((server, *cell))
    if not reps:
        return None
    return _median(reps, "req_s"), _median(reps, "p99_ms")


def _tabular_cells(cells: dict[tuple[Any, ...], list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    found = {key[1:] for key in cells if key[1] == "tabular"}
    return sorted(found, key=lambda k: (k[1], k[3], k[2]))


def _ceiling(cells: dict[tuple[Any, ...], list[dict[str, Any]]]) -> list[str]:
    """Kiln beside null servers: the most any Python server on one core can answer."""
    if not any(key[0].startswith("null-") for key in cells):
        return []
    lines = [
        "",
        "### The ceiling: null servers (parse the request, answer a fixed result, no model)",
        "",
        "req/s (p99 ms). `null-uvicorn` is a raw ASGI app on uvicorn with httptools and uvloop,",
        "`null-granian` the same app on granian, `null-kiln` a handler on kiln-server's own HTTP",
        "layer; all parse the body with orjson. Kiln's share is against `null-uvicorn`, the",
        "ceiling for a Python server on one core, and against its own layer's null server.",
        "",
        "| batch | conc | tensors | kiln | null-uvicorn | null-granian | null-kiln "
        "| kiln ÷ null-uvicorn | kiln ÷ null-kiln |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in _tabular_cells(cells):
        figures = {s: _measure(cells, s, *cell) for s in
                   ("kiln", "null-uvicorn", "null-granian", "null-kiln")}  # fmt: skip
        if figures["null-uvicorn"] is None and figures["null-kiln"] is None:
            continue
        shown = [f"{_fmt(f[0])} ({f[1]:.2f})" if f else "-" for f in figures.values()]
        kiln = figures["kiln"]

        def share(null: tuple[float, float] | None, kiln: tuple[float, float] | None) -> str:
            return f"{kiln[0] / null[0]:.0%}" if kiln and null else "-"

        _, batch, conc, encoding = cell
        lines.append(
            f"| {batch} | {conc} | {encoding} | {' | '.join(shown)} | "
            f"{share(figures['null-uvicorn'], kiln)} | {share(figures['null-kiln'], kiln)} |"
        )
    return lines


def _paired(records: list[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """The paired rounds' runs: round -> "server encoding" -> result."""
    rounds: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if r["kind"] == "pair":
            rounds[r["round"]][f"{r['server']} {r['encoding']}"] = r
    return dict(sorted(rounds.items()))


def _round_ratios(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """One round's ratios that it has the runs for: kiln JSON ÷ null-uvicorn ("ceiling") and
    kiln binary ÷ kiln JSON ("binary")."""
    ratios: dict[str, float] = {}
    kiln = runs.get("kiln json")
    if kiln is None or not kiln["req_s"]:
        return ratios
    null = runs.get("null-uvicorn json")
    if null is not None and null["req_s"]:
        ratios["ceiling"] = kiln["req_s"] / null["req_s"]
    if "kiln binary" in runs:
        ratios["binary"] = runs["kiln binary"]["req_s"] / kiln["req_s"]
    return ratios


def _paired_ratios(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Every round's ratios, by name (see ``_round_ratios``)."""
    ratios: dict[str, list[float]] = {"ceiling": [], "binary": []}
    for runs in _paired(records).values():
        for name, ratio in _round_ratios(runs).items():
            ratios[name].append(ratio)
    return ratios


def _pairs_table(records: list[dict[str, Any]]) -> list[str]:
    rounds = _paired(records)
    if not rounds:
        return []
    lines = [
        "",
        "### Paired rounds: tabular b1 c64, kiln JSON, kiln binary and the ceiling in turn",
        "",
        "Each round runs the three one after another (a fresh server each, the order rotating",
        "from round to round), so a ratio compares runs seconds apart; the grid above runs the",
        "servers minutes apart. The target checks take the median of the rounds' ratios.",
        "",
        "| round | kiln JSON req/s (p99 ms) | kiln binary | null-uvicorn "
        "| kiln ÷ null-uvicorn | binary ÷ JSON |",
        "|---:|---:|---:|---:|---:|---:|",
    ]

    def shown(run: dict[str, Any] | None) -> str:
        return f"{_fmt(run['req_s'])} ({run['p99_ms']:.2f})" if run else "-"

    for number, runs in rounds.items():
        kiln, binary, null = (runs.get(k) for k in
                              ("kiln json", "kiln binary", "null-uvicorn json"))  # fmt: skip
        ratios = {k: f"{v:.0%}" for k, v in _round_ratios(runs).items()}
        lines.append(
            f"| {number} | {shown(kiln)} | {shown(binary)} | {shown(null)} | "
            f"{ratios.get('ceiling', '-')} | {ratios.get('binary', '-')} |"
        )
    median = {
        k: f"{statistics.median(v):.0%}" if v else "-" for k, v in _paired_ratios(records).items()
    }
    lines.append(f"| median | | | | {median['ceiling']} | {median['binary']} |")
    return lines


def _http_layer(cells: dict[tuple[Any, ...], list[dict[str, Any]]]) -> list[str]:
    """The HTTP-layer decision: kiln-server's data plane on its own layer and on uvicorn."""
    if not any(key[0] == "kiln-asgi" for key in cells):
        return []
    lines = [
        "",
        "### HTTP layer: kiln-server's data plane on its own layer and behind uvicorn",
        "",
        "`kiln-asgi` runs the same `App` and `DataPlane` as a raw ASGI app on uvicorn",
        "(`bench/peers/kiln_asgi.py`). Adopting uvicorn needs ≥ 90% of the req/s with a p99",
        "no worse.",
        "",
        "| batch | conc | tensors | kiln req/s | kiln p99 ms | kiln-asgi req/s | kiln-asgi p99 ms "
        "| kiln-asgi ÷ kiln |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for cell in _tabular_cells(cells):
        own, asgi = _measure(cells, "kiln", *cell), _measure(cells, "kiln-asgi", *cell)
        if own and asgi:
            _, batch, conc, encoding = cell
            lines.append(
                f"| {batch} | {conc} | {encoding} | {_fmt(own[0])} | {own[1]:.2f} | "
                f"{_fmt(asgi[0])} | {asgi[1]:.2f} | {asgi[0] / own[0]:.0%} |"
            )
    return lines


def _checks(
    records: list[dict[str, Any]],
    cells: dict[tuple[Any, ...], list[dict[str, Any]]],
    raw: dict[tuple[str, int], dict[str, Any]],
) -> list[str]:
    rows = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    kiln = cells.get(("kiln", "tabular", 1, 64, "json"))
    if kiln:
        kiln_req, kiln_p99 = _median(kiln, "req_s"), _median(kiln, "p99_ms")
        for peer, factor in (("kserve", 5), ("naive", 3)):
            reps = cells.get((peer, "tabular", 1, 64, "json"))
            source = "this run"
            if reps:
                peer_req, peer_p99 = _median(reps, "req_s"), _median(reps, "p99_ms")
            else:
                peer_req, peer_p99 = REFERENCE[peer]["req_s"], REFERENCE[peer]["p99_ms"]
                source = "shared/bench reference"
            rows.append(
                f"| tabular b1 c64 JSON: ≥ {factor}x {peer} req/s ({source}) | "
                f"{_fmt(kiln_req)} vs {_fmt(peer_req)} = {kiln_req / peer_req:.1f}x | "
                f"{verdict(kiln_req >= factor * peer_req)} |"
            )
            rows.append(
                f"| tabular b1 c64 JSON: p99 below {peer}'s | {kiln_p99:.2f} ms vs "
                f"{peer_p99:.2f} ms | {verdict(kiln_p99 < peer_p99)} |"
            )
    key = ("tabular", 1, 64, "json")
    kiln_json, null = _measure(cells, "kiln", *key), _measure(cells, "null-uvicorn", *key)
    kiln_binary = _measure(cells, "kiln", "tabular", 1, 64, "binary")
    paired = _paired_ratios(records)
    if paired["ceiling"]:
        share = statistics.median(paired["ceiling"])
        rows.append(
            f"| tabular b1 c64 JSON: ≥ 80% of the ceiling's req/s (null app on uvicorn; median "
            f"of {len(paired['ceiling'])} paired rounds) | {share:.0%} | {verdict(share >= 0.8)} |"
        )
    elif kiln_json and null:
        rows.append(
            f"| tabular b1 c64 JSON: ≥ 80% of the ceiling's req/s (null app on uvicorn) | "
            f"{_fmt(kiln_json[0])} / {_fmt(null[0])} = {kiln_json[0] / null[0]:.0%} | "
            f"{verdict(kiln_json[0] >= 0.8 * null[0])} |"
        )
    if paired["binary"]:
        ratio = statistics.median(paired["binary"])
        rows.append(
            f"| tabular b1 c64: binary tensors at least as fast as JSON (median of "
            f"{len(paired['binary'])} paired rounds) | binary ÷ JSON = {ratio:.0%} | "
            f"{verdict(ratio >= 1.0)} |"
        )
    elif kiln_json and kiln_binary:
        rows.append(
            f"| tabular b1 c64: binary tensors at least as fast as JSON | "
            f"{_fmt(kiln_binary[0])} vs {_fmt(kiln_json[0])} req/s | "
            f"{verdict(kiln_binary[0] >= kiln_json[0])} |"
        )
    asgi = _measure(cells, "kiln-asgi", *key)
    if kiln_json and asgi:
        adopt = asgi[0] >= 0.9 * kiln_json[0] and asgi[1] <= kiln_json[1]
        decision = "adopt uvicorn" if adopt else "keep kiln-server's own layer"
        rows.append(
            f"| HTTP layer: uvicorn ≥ 90% of kiln's req/s, p99 no worse (else keep kiln's) | "
            f"{asgi[0] / kiln_json[0]:.0%}, p99 {asgi[1]:.2f} vs {kiln_json[1]:.2f} ms | "
            f"{decision} |"
        )
    ceiling = raw.get(("wide", 32), {}).get("rows_s")
    for encoding, share in (("binary", 0.85), ("json", 0.50)):
        for conc in (16, 64):
            reps = cells.get(("kiln", "wide", 32, conc, encoding))
            if reps and ceiling:
                rows_s = _median(reps, "rows_s")
                rows.append(
                    f"| wide b32 c{conc} {encoding}: ≥ {share:.0%} of raw 1-thread rows/s | "
                    f"{_fmt(rows_s)} / {_fmt(ceiling)} = {rows_s / ceiling:.0%} | "
                    f"{verdict(rows_s >= share * ceiling)} |"
                )
    for r in records:
        if r["kind"] == "rss" and r["server"] == "kiln" and r["model"] == "tabular":
            rows.append(
                f"| idle RSS with the tabular model < 150 MB | {r['idle_mb']:.0f} MB | "
                f"{verdict(r['idle_mb'] < 150)} |"
            )
    return rows


def _mean_rows(metrics: dict[str, float]) -> float:
    return metrics.get("sum", 0.0) / max(metrics.get("count", 1.0), 1.0)


def sittings(runs: list[list[dict[str, Any]]]) -> str:
    """One line per sitting: its load and how each target check came out."""
    lines = [
        "### Target checks across sittings (same code unless noted; the machine is shared)",
        "",
        "| run | servers | s per cell | load avg at start | checks met | checks missed |",
        "|---|---|---:|---:|---|---|",
    ]
    for records in runs:
        if not any(r["kind"] == "cell" for r in records):
            continue  # not a model-server sitting (the operator bench writes here too)
        meta = next((r for r in records if r["kind"] == "meta"), {})
        checks = _checks(
            records,
            _cells(records),
            {(r["model"], r["batch"]): r for r in records if r["kind"] == "raw"},
        )
        met = [c.split(" | ")[0].lstrip("| ") for c in checks if "**met**" in c]
        missed = [
            c.split(" | ")[0].lstrip("| ") + " (" + c.split(" | ")[1] + ")"
            for c in checks
            if "**missed**" in c
        ]
        servers = sorted({r["server"] for r in records if r["kind"] == "cell"})
        lines.append(
            f"| `{meta.get('run', '?')}` | {', '.join(servers)} | {meta.get('secs', '?')} | "
            f"{meta.get('loadavg', 0):.2f} | {len(met)} of "
            f"{len(met) + len(missed)} | {'; '.join(missed) or 'none'} |"
        )
    return "\n".join(lines)


def render(
    readme: str, records: list[dict[str, Any]], history: list[list[dict[str, Any]]] | None = None
) -> str:
    body = tables(records)
    if history and len(history) > 1:
        body += "\n\n" + sittings(history)
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in readme and END in readme:
        head, _, rest = readme.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + block + tail
    return readme.rstrip() + "\n\n" + block + "\n"


def load(path: str) -> list[dict[str, Any]]:
    with open(path) as source:
        return [json.loads(line) for line in source if line.strip()]


if __name__ == "__main__":
    # report.py PRIMARY.jsonl [OTHER.jsonl ...]: tables of the first, target checks of all
    runs = [load(path) for path in sys.argv[1:]]
    readme_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
    with open(readme_path) as source:
        text = source.read()
    with open(readme_path, "w") as out:
        out.write(render(text, runs[0], runs))
