"""Render :func:`hstlab.train.card.card_data` as Markdown and as one self-contained HTML page.

Both come from the same list of sections (paragraphs, bullet lists, tables, code), so they
carry the same content. The HTML has inline CSS only: no script, no external link.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

from hstlab.units import format_joules

Block = tuple  # ("p", text) | ("ul", [text]) | ("table", header, rows, bold_row_indices) | ("code", text)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #1f77b4;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:1.6em;color:#1f4e79}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#eef3f8}
tr.hl td{background:#fff3cd;font-weight:600}
code,pre{background:#f5f5f5;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
pre{padding:.6em;overflow-x:auto}
.note{color:#555;font-size:.92em}
"""


# ----------------------------------------------------------------------------------- formatting
def joules(value: Any) -> str:
    """``3.6e-05`` -> ``'36 µJ'`` (4 significant digits)."""
    return format_joules(value, digits=4, missing="–")


def num(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, spec) if math.isfinite(value) else "–"
    return str(value)


def ratio(value: Any) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3g}×"


# ----------------------------------------------------------------------------------- sections
def sections(d: dict[str, Any]) -> list[tuple[str, list[Block]]]:
    """The card as (heading, blocks) pairs, shared by both renderers."""
    return [("Summary", _summary(d)), ("Model", _model(d)), ("Data and split", _data(d)),
            ("Training", _training(d)), ("Metrics", _metrics(d)), ("Energy per sample", _energy(d)),
            ("Against standard-mode twins", _comparison(d)), ("Spike-domain fairness (test split)", _fairness(d)),
            ("Software", [("ul", [f"{k} {v}" for k, v in sorted(d.get("versions", {}).items())])])]


def _summary(d: dict[str, Any]) -> list[Block]:
    m, e, c = d["metrics"], d["energy"], d["comparison"]
    items = [f"run: `{d['run_dir']}`", (f"parameters: {d['parameters']:,}; modes per layer: **{d['modes']}** "
             "(S spiking, T standard, H mixed)"),
             f"validation accuracy {num(m['val'].get('accuracy'))}, test accuracy {num(m['test'].get('accuracy'))}",
             f"energy per sample: **{joules(e['val']['total_j'])}** ({e['val']['preset']}, {e['val_indices']})",
             f"lowest energy of the compared variants: **{c['winner']}**"]
    fair = d.get("fairness")
    if fair and "accuracy" in fair["gaps"]:
        g = fair["gaps"]["accuracy"]
        items.append(f"largest per-class accuracy gap: **{num(g['gap'], '.3f')}** "
                     f"(class {g['low']} {num(g['low_value'], '.3f')} vs class {g['high']} {num(g['high_value'], '.3f')})")
    return [("ul", items)]


def _model(d: dict[str, Any]) -> list[Block]:
    cfg = d["config"]
    shape = (f"{cfg['n_layer']} layers, width {cfg['n_embd']}, {cfg['n_head']} heads, MLP ratio {cfg['mlp_ratio']:g}, "
             f"T = {cfg['num_steps']} steps, tokenizer {cfg['tokenizer']}, input {tuple(cfg['input_shape'])}, "
             f"{cfg['num_classes']} outputs ({cfg['head']} head)")
    comps = [[k, v] for k, v in d["components"].items()]
    header = ["layer", "attention mode", "MLP mode", "attention", "residual", "TIM", "mask ratio", "mask policy"]
    return [("p", shape), ("table", ["component", "setting"], comps, set()),
            ("table", header, d["layers"], set()),
            ("code", json.dumps(cfg, indent=1, sort_keys=True))]


def _data(d: dict[str, Any]) -> list[Block]:
    data = d["data"]
    used, full = data["used_sizes"], data.get("full_sizes") or {}
    rows = [[s, used.get(s), full.get(s, "–")] for s in ("train", "val", "test")]
    items = [f"dataset: **{data['dataset']}** ({data.get('kind')}): {data.get('description')}",
             f"source: {data.get('source')}", f"input: {data.get('x_shape')}, {data['time_bins']} time bins",
             (f"limit: {data['limit'] if data['limit'] is not None else 'none (full splits)'}; options: "
             f"{data['options'] or 'none'}")]
    return [("ul", items), ("table", ["split", "samples used by this run", "samples in the dataset"], rows, set())]


def _training(d: dict[str, Any]) -> list[Block]:
    t = d["training"]
    rows = [[k, num(v)] for k, v in t.items() if k != "notes"]
    blocks: list[Block] = [("table", ["setting", "value"], rows, set())]
    if t.get("notes"):
        blocks.append(("ul", [f"note: {n}" for n in t["notes"]]))
    return blocks


def _metrics(d: dict[str, Any]) -> list[Block]:
    m = d["metrics"]
    keys = [k for k in ("accuracy", "loss", "firing_rate", "bits_per_spike") if k in m["val"] or k in m["test"]]
    rows = [[k.replace("_", " "), num(m["val"].get(k)), num(m["test"].get(k))] for k in keys]
    return [("table", ["metric (best validation checkpoint)", "val", "test"], rows, set()),
            ("p", "Model selection used the validation split only; the test split was scored once, on the best checkpoint.")]


def _energy(d: dict[str, Any]) -> list[Block]:
    e = d["energy"]
    rows = [[f"{split} ({e[split + '_indices']})", joules(e[split]["total_j"]), joules(e[split]["compute_j"]),
             joules(e[split]["memory_j"]), num(e[split]["macs"]), num(e[split]["acs"]), e[split]["memory_level"]]
            for split in ("val", "test")]
    top = [[r[0], r[1], r[2], num(r[3]), num(r[4]), num(r[5], ".3f"), joules(r[6]), joules(r[7])]
           for r in e["top_layers"]]
    return [
        ("p", (f"`energy_report(best model, batch, preset=\"{e['val']['preset']}\")` on real samples; "
              "every number is per sample (batch total / batch size).")),
        ("table", ["measured on", "total", "compute", "memory", "MACs", "ACs", "memory level"], rows, set()),
        ("p", "Costliest layers (validation batch):"),
        ("table", ["layer", "kind", "mode", "MACs", "ACs", "input rate", "compute", "memory"], top, set()),
        ("p", "Assumptions:"), ("ul", list(e["assumptions"]) + [e["baseline_note"]]),
        ("p", "Not priced (left out of every total above):" if e.get("unpriced") else
         "Not priced: nothing; the engine priced every module and product it saw."),
        *((("ul", list(e["unpriced"])),) if e.get("unpriced") else ()),
    ]


def _comparison(d: dict[str, Any]) -> list[Block]:
    c = d["comparison"]
    rows, bold = [], set()
    for i, r in enumerate(c["rows"]):
        rows.append([r["variant"], r["modes"], r["steps"], r["bits"], r["preset"], joules(r["total_j"]),
                     ratio(r["ratio_to_this"]), joules(r["total_j_time_batched"]),
                     ratio(r["ratio_to_this_time_batched"]), joules(r["total_j_fused"]),
                     ratio(r["ratio_to_this_fused"]), num(r["macs"]), num(r["acs"]),
                     num(r["accuracy"], ".3f")])
        if r["variant"] == c["winner"]:
            bold.add(i)
    this = c["rows"][0]
    verdict = ("this model needs the least energy per sample." if c["winner"] == this["variant"] else
               f"**{c['winner']}** needs less energy per sample than this model "
               f"({ratio(min(r['ratio_to_this'] for r in c['rows']))} of its energy).")
    indep = ("verified: two random initializations of the standard twin give identical MACs and energy "
             f"({joules(c['twin_seeds_total_j'][0])} and {joules(c['twin_seeds_total_j'][1])})"
             if c["weight_independent"] else
             "NOT verified: two random initializations of the standard twin gave different energy "
             f"({joules(c['twin_seeds_total_j'][0])} vs {joules(c['twin_seeds_total_j'][1])})")
    blocks: list[Block] = [
        ("p", ("Twins come from `hstlab.twins.twins(cfg)`: this run's config with every layer and the stem "
              "standard, measured on the same validation batch. A dense model's MACs, and so its energy, do not depend on "
              f"its trained weight values, so untrained twins are measured: {indep}. The int8 twin sets "
              "`weight_bits=8` and uses the 45nm-int8 preset (8-bit weights and activations); it was not trained, "
              "so its accuracy is unknown (quantization usually costs some). The bit-matched twin (weight bits / "
              "activation bits) quantizes activations to ceil(log2(T+1)) bits, the information a spiking neuron's "
              "T binary outputs carry, and is priced at that width (Yan et al. 2024); it was not trained either."
              + (" The T=1 rows run the standard twin once on the frames summed over time, the cheapest way "
                 "to run an ANN on these inputs." if any(r["steps"] == 1 for r in c["rows"][1:]) else ""))),
        ("table", ["variant", "modes", "steps", "bits (weights/activations)", "preset", "energy / sample", "ratio to this model",
                   "time-batched energy", "time-batched ratio", "fused energy", "fused ratio", "MACs", "ACs",
                   "test accuracy"], rows, bold),
        ("p", ("Energy / sample and the lowest-energy verdict use the step-major dataflow (weights and membranes "
               "moved every time step); the time-batched columns price the same runs with each layer run over "
               "all its steps at once (weights and membranes moved once per layer call), and the fused columns "
               "add activations and neurons run in the epilogue of the Linear/Conv before them (that output is "
               "not read, nor written when nothing else reads it). Compute is the same.")),
        ("p", f"Lowest energy: {verdict}"),
    ]
    twin = c.get("twin_run")
    if twin is None:
        blocks.append(("p", ("Twin accuracy: not shown (no trained twin run given; pass `twin_run_dir` / "
                            "`hstlab card RUN --twin TWIN_RUN`).")))
    else:
        same = "the same config" if twin["same_config"] else "a DIFFERENT config than this run's standard twin"
        blocks.append(("ul", [f"trained twin run `{twin['run_dir']}` (modes {twin['modes']}, {same})",
                              (f"twin accuracy: val {num(twin['val_accuracy'], '.3f')}, "
                              f"test {num(twin['test_accuracy'], '.3f')}"),
                              f"energy of the twin's trained weights on the same batch: {joules(twin['trained_total_j'])}"]))
    return blocks


def _fairness(d: dict[str, Any]) -> list[Block]:
    f = d.get("fairness")
    if f is None:
        return [("p", "Not applicable: this run predicts sequences, not one class per sample.")]
    gaps = f["gaps"]
    flagged = {gaps["accuracy"]["low"], gaps["accuracy"]["high"]} if "accuracy" in gaps else set()
    rows, bold = [], set()
    for i, r in enumerate(f["rows"]):
        rows.append([r["class"], r["n"], num(r["accuracy"], ".3f"), num(r["firing_rate"], ".4f"), joules(r["energy_j"])])
        if r["class"] in flagged:
            bold.add(i)
    names = {"accuracy": ("accuracy", ".3f"), "firing_rate": ("firing rate", ".4f"), "energy_j": ("energy", None)}
    items = []
    for key, (label, spec) in names.items():
        if key in gaps:
            g = gaps[key]
            def show(v, s=spec):
                return (joules(v) if s is None else num(v, s))
            items.append(f"largest {label} gap: **{show(g['gap'])}** ({100 * g['relative']:.1f}% of the highest) "
                         f"between class {g['low']} ({show(g['low_value'])}) and class {g['high']} "
                         f"({show(g['high_value'])})")
    return [("p", ("Each class's test samples run as their own batches; firing rate is spikes per neuron per step "
                  f"over every spiking neuron; energy is `energy_report` ({f['energy_preset']}) per sample. "
                  "Highlighted rows: the lowest- and highest-accuracy classes.")),
            ("table", ["class", "test samples", "accuracy", "firing rate", "energy / sample"], rows, bold),
            ("ul", items)]


# ----------------------------------------------------------------------------------- renderers
def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(d: dict[str, Any]) -> str:
    lines = [f"# Model card: {d['title']}", ""]
    for heading, blocks in sections(d):
        lines += [f"## {heading}", ""]
        for block in blocks:
            kind = block[0]
            if kind == "p":
                lines += [block[1], ""]
            elif kind == "ul":
                lines += [f"- {item}" for item in block[1]] + [""]
            elif kind == "code":
                lines += ["<details><summary>full config (JSON)</summary>", "", "```json", block[1], "```", "",
                          "</details>", ""]
            else:
                _, header, rows, bold = block
                lines.append("| " + " | ".join(map(_md_cell, header)) + " |")
                lines.append("|" + "---|" * len(header))
                for i, row in enumerate(rows):
                    cells = [_md_cell(v) for v in row]
                    if i in bold:
                        cells = [f"**{c}**" for c in cells]
                    lines.append("| " + " | ".join(cells) + " |")
                lines.append("")
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escape, then ``**bold**`` -> <strong>, ```code``` -> <code>."""
    out = html.escape(str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def render_html(d: dict[str, Any]) -> str:
    title = html.escape(f"Model card: {d['title']}")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1>{title}</h1>"]
    for heading, blocks in sections(d):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for block in blocks:
            kind = block[0]
            if kind == "p":
                parts.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "ul":
                parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "code":
                parts.append(f"<details><summary>full config (JSON)</summary><pre>{html.escape(block[1])}</pre>"
                             "</details>")
            else:
                _, header, rows, bold = block
                parts.append("<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in header)
                             + "</tr></thead><tbody>")
                for i, row in enumerate(rows):
                    cls = ' class="hl"' if i in bold else ""
                    parts.append(f"<tr{cls}>" + "".join(f"<td>{_inline(v)}</td>" for v in row) + "</tr>")
                parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
