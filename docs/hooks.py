"""MkDocs hooks: the pages generated at build time, so that they cannot drift from the sources.

- ``model.md``: the plasticity core's equations (from the docstring of ``src/pkpd/plasticity.py``),
  each driver family's equations (docstrings of ``src/pkpd/modalities/``), the PK structures
  (``src/pkpd/pk.py``), and every parameter value of ``models/core.toml``, ``models/drivers/*.toml``
  and ``models/drugs/*.toml`` with its unit, prior, status and source.
- ``data.md``: every published data row of ``models/data/curves.csv`` by modality, and the list of
  sources (papers) behind the data and the cards.
- ``claims.md``: the review documents' claims (``models/claims.toml``) with their quotes, and the
  current verdicts (the generated block of ``README.md``).
- ``api/*.md``: one API reference page per public module or package of ``src/pkpd`` (found on
  disk, so a module added or split into a package appears without editing this file).
- ``notebooks/*.ipynb`` and ``benchmarks/*.md``: the notebooks (rendered by mkdocs-jupyter, not
  executed) and the benchmark results.

Docstrings are read with :mod:`ast` (nothing is imported); Sphinx roles such as ``:func:`x```
are rendered as code.
"""

from __future__ import annotations

import ast
import csv
import re
import tomllib
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "pkpd"
MODELS = ROOT / "models"
FAMILY_ORDER = ("psychedelic", "ketamine", "ssri", "stimulation", "seizure")
PK_CLASSES = {
    "oral_one_compartment": "OneCompartment",
    "iv_one_compartment": "OneCompartment",
    "oral_one_compartment_metabolite": "ParentMetabolite",
    "iv_two_compartment": "TwoCompartment",
}
ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj|doc|ref):`~?([^`]+)`")
CLAIMS_BEGIN, CLAIMS_END = "<!-- claims:begin -->", "<!-- claims:end -->"


# ---- docstrings -> markdown --------------------------------------------------------------------


def md(text: str) -> str:
    """Docstring text as markdown: reStructuredText simple tables become markdown tables, and
    Sphinx roles and double backticks become code spans."""
    return _inline(_rst_tables(text or ""))


def _inline(text: str) -> str:
    text = ROLE.sub(r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _rst_tables(text: str) -> str:
    lines, out, i = text.splitlines(), [], 0
    rule = re.compile(r"^=+( +=+)+\s*$")
    while i < len(lines):
        if rule.match(lines[i]) and i + 2 < len(lines) and rule.match(lines[i + 2]):
            j = i + 3
            while j < len(lines) and not rule.match(lines[j]):
                j += 1
            out += _table(lines[i], lines[i + 1], lines[i + 3 : j])
            i = j + 1
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


def _table(rule: str, header: str, body: list[str]) -> list[str]:
    """A reST simple table as a markdown table. The first column is cut at the ``====`` rule's
    bound; the last starts at the first code span after a space (so an equation that runs
    past its column's bound stays whole); a line with an empty first column continues the row."""
    bounds = [m.span() for m in re.finditer(r"=+", rule)]
    n = len(bounds)

    def cells(line):
        first, rest = line[: bounds[1][0]].strip(), line[bounds[1][0] :].strip()
        if n == 2:
            return [first, rest]
        m = re.search(r"^(.*?)\s+(``.*)$", rest)
        mid, last = (m.group(1), m.group(2)) if m else (rest, "")
        return [first, mid.strip(), last.strip()] + [""] * (n - 3)

    rows = []
    for line in body:
        c = cells(line)
        if rows and not c[0]:
            rows[-1] = [f"{p} {q}".strip() for p, q in zip(rows[-1], c)]
        else:
            rows.append(c)
    head = [
        line
        for line in (
            header[a:b].strip() for a, b in zip([0] + [x[0] for x in bounds[1:]], [x[0] for x in bounds[1:]] + [None])
        )
    ]
    out = ["", "| " + " | ".join(head) + " |", "|" + "---|" * n]
    for r in rows:
        cells_md = [_inline(r[0]), _code_math(r[1]), _inline(r[2]) if n > 2 else ""][:n]
        out.append("| " + " | ".join(x.replace("|", "\\|") for x in cells_md) + " |")
    return out + [""]


def _code_math(s: str) -> str:
    """An equation cell as a code span (its ``code`` marks dropped)."""
    s = s.replace("``", "")
    return f"`{s}`" if s else ""


def docstrings(path: Path) -> dict[str, str]:
    """``{"": module docstring, "Class": class docstring, "Class.method": ...}`` of a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = {"": ast.get_docstring(tree) or ""}
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            out[node.name] = ast.get_docstring(node) or ""
    return out


# ---- cards -> parameter tables ---------------------------------------------------------------


def _cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _prior(p: dict) -> str:
    if not p:
        return ""
    d = dict(p)
    dist = d.pop("dist", "?")
    return f"{dist}(" + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items()) + ")"


def _source(v: dict) -> str:
    cite = v.get("citation", "")
    ident = next((f"{k}:{v[k]}" for k in ("doi", "pmcid", "pmid") if v.get(k)), "")
    where = ", ".join(x for x in (v.get("location", ""), v.get("extraction", "")) if x)
    parts = []
    if cite:
        parts.append(f"{cite}" + (f" ({ident})" if ident else "") + (f", {where}" if where else ""))
    if v.get("quote"):
        parts.append(f"“{v['quote']}”")
    if v.get("note"):
        parts.append(v["note"])
    return _cell(" ".join(parts))


def parameter_table(card: dict) -> list[str]:
    """Every value of a card: parameter, species, value, unit, prior, status, source/reasoning."""
    rows = ["| parameter | species | value | unit | prior | status | source, quote or reasoning |", "|---" * 7 + "|"]
    for name, entry in card.get("parameters", {}).items():
        for species, v in entry.items():
            if not isinstance(v, dict) or "value" not in v:
                continue
            rows.append(
                f"| `{name}` | {species} | {v['value']:g} | {_cell(v.get('unit', ''))} | {_prior(v.get('prior', {}))} | "
                f"{v.get('status', '')} | {_source(v)} |"
            )
    return rows


def _load(path: Path) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _status_counts(card: dict) -> str:
    n = {}
    for entry in card.get("parameters", {}).values():
        for v in entry.values():
            if isinstance(v, dict) and "status" in v:
                n[v["status"]] = n.get(v["status"], 0) + 1
    return ", ".join(f"{k} {n[k]}" for k in ("sourced", "derived", "assumed") if k in n)


# ---- the generated pages ---------------------------------------------------------------------


def model_page() -> str:
    core_doc = docstrings(SRC / "plasticity.py")
    core = _load(MODELS / "core.toml")
    out = [
        "# The model",
        "",
        "*Generated when the site is built: the equations from the docstrings of `src/pkpd/plasticity.py`,",
        "`src/pkpd/modalities/` and `src/pkpd/pk.py`; every value from the model cards under `models/`.*",
        "",
        "Every modality is one model: linear PK or a device schedule -> a **driver** (one per family) ->",
        "dimensionless signals -> the shared **plasticity core**. Times are hours; every readout is",
        "relative to its pre-treatment baseline (1.0).",
        "",
        "## The plasticity core",
        "",
        md(core_doc[""]),
        "",
        f"### Core parameters (`models/core.toml`: {_status_counts(core)})",
        "",
        md(core.get("core", {}).get("description", "")),
        "",
        *parameter_table(core),
        "",
        "## Drivers",
        "",
        md(docstrings(SRC / "modalities" / "_driver.py")[""]),
        "",
    ]
    drug_cls = docstrings(SRC / "modalities" / "_driver.py")
    out += ["Drug drivers (`DrugDriver`): " + md(drug_cls.get("DrugDriver", "")), ""]
    for fam in FAMILY_ORDER:
        path = SRC / "modalities" / f"{fam}.py"
        card_path = MODELS / "drivers" / f"{fam}.toml"
        if not path.exists() or not card_path.exists():
            continue
        ds = docstrings(path)
        card = _load(card_path)
        out += [f"### {fam}", "", md(ds[""]), ""]
        for cls, doc in ds.items():
            if cls.endswith("Driver") and doc:
                out += [f"**`{cls}`**: " + md(doc), ""]
        out += [f"Parameters (`models/drivers/{fam}.toml`: {_status_counts(card)}):", "", *parameter_table(card), ""]
    pk_doc = docstrings(SRC / "pk.py")
    out += ["## Pharmacokinetics", "", md(pk_doc[""]), ""]
    for cls in sorted(set(PK_CLASSES.values())):
        out += [f"**`{cls}`**: " + md(pk_doc.get(cls, "")), ""]
    for path in sorted((MODELS / "drugs").glob("*.toml")):
        card = _load(path)
        drug = card.get("drug", {})
        structure = drug.get("pk_structure", "")
        out += [
            f"### {drug.get('name', path.stem)}",
            "",
            f"Family `{drug.get('family', '')}`, target {drug.get('target', '')}, PK `{structure}` "
            f"(`{PK_CLASSES.get(structure, '?')}`), species {', '.join(drug.get('species', []))}; "
            f"`models/drugs/{path.name}`: {_status_counts(card)}.",
            "",
            md(drug.get("description", "")),
            "",
            *parameter_table(card),
            "",
        ]
    return "\n".join(out)


def _read_curves() -> list[dict]:
    with open(MODELS / "data" / "curves.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _ident(r: dict) -> str:
    for k, label in (("doi", "doi"), ("pmcid", ""), ("pmid", "PMID ")):
        if r.get(k):
            return f"{label}:{r[k]}" if label == "doi" else f"{label}{r[k]}"
    return ""


def _card_sources() -> dict[str, set]:
    """citation (with identifier) -> the cards and parameters that cite it."""
    out: dict[str, set] = {}
    paths = [
        MODELS / "core.toml",
        *sorted((MODELS / "drivers").glob("*.toml")),
        *sorted((MODELS / "drugs").glob("*.toml")),
    ]
    for path in paths:
        for name, entry in _load(path).get("parameters", {}).items():
            for species, v in entry.items():
                if isinstance(v, dict) and v.get("citation"):
                    key = v["citation"] + (f" ({_ident(v)})" if _ident(v) else "")
                    out.setdefault(key, set()).add(f"{path.stem}.{name}" + ("" if species == "all" else f"@{species}"))
    return out


def data_page() -> str:
    rows = _read_curves()
    papers: dict[str, dict] = {}
    for r in rows:
        key = r["citation"] + (f" ({_ident(r)})" if _ident(r) else "")
        p = papers.setdefault(key, {"modalities": set(), "readouts": set(), "rows": 0})
        p["modalities"].add(r["modality"])
        p["readouts"].add(r["readout"])
        p["rows"] += 1
    out = [
        "# Data",
        "",
        "*Generated when the site is built from `models/data/curves.csv` and the model cards.*",
        "",
        f"`models/data/curves.csv` holds **{len(rows)} published values** from **{len(papers)} papers** "
        f"({len({r['study_id'] for r in rows})} study arms). Every value appears in its row's quote or follows "
        "from it by the arithmetic its note states; no value was read off a figure. Columns and conventions: "
        "`models/data/README.md`. From Python: `pkpd.datasets()`.",
        "",
        "## Sources of the data",
        "",
        "| source | modalities | readouts | rows |",
        "|---|---|---|---:|",
    ]
    for key, p in sorted(papers.items()):
        out.append(
            f"| {_cell(key)} | {', '.join(sorted(p['modalities']))} | {', '.join(sorted(p['readouts']))} | {p['rows']} |"
        )
    out += ["", "## Sources of the model cards' values", "", "| source | parameters |", "|---|---|"]
    for key, used in sorted(_card_sources().items()):
        out.append(f"| {_cell(key)} | {', '.join(f'`{u}`' for u in sorted(used))} |")
    out += ["", "## Every data row, by modality", ""]
    for modality in dict.fromkeys(r["modality"] for r in rows):
        sub = [r for r in rows if r["modality"] == modality]
        out += [
            f"### {modality} ({len(sub)} rows)",
            "",
            "| study | species | readout | statistic | value | dispersion | time | location | quote |",
            "|---" * 9 + "|",
        ]
        for r in sub:
            disp = f"{r['dispersion']} ({r['dispersion_type']})" if r["dispersion"] else ""
            time = f"{r['time']} {r['time_unit']}" if r["time"] else ""
            out.append(
                f"| `{r['study_id']}` | {r['species']} | {r['readout']} | {r['statistic']} | {r['value']} {_cell(r['unit'])} | "
                f"{_cell(disp)} | {time} | {_cell(r['location'])}, {r['extraction']} | {_cell(r['quote'])} |"
            )
        out.append("")
    return "\n".join(out)


def claims_page() -> str:
    claims = _load(MODELS / "claims.toml").get("claim", [])
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    current = readme.split(CLAIMS_BEGIN, 1)[1].split(CLAIMS_END, 1)[0] if CLAIMS_BEGIN in readme else ""
    out = [
        "# Claims",
        "",
        "*Generated when the site is built from `models/claims.toml` and the claims table of `README.md` "
        "(itself written by `python docs/claims_table.py` from the shipped calibration).*",
        "",
        "The review documents' testable statements about time courses. `pkpd compare` evaluates each on every",
        "posterior draw of the joint calibration: its probability is the fraction of draws on which it holds",
        "(for every modality it names); verdict `supported` (P >= 0.9), `contradicted` (P <= 0.1), else",
        "`uncertain`. See [the comparison](comparison.md).",
        "",
        "## Current verdicts",
        "",
        current.strip(),
        "",
        "## The claims and their sources",
        "",
    ]
    for i, c in enumerate(claims, start=1):
        thr = c.get("threshold")
        test = f"{c['metric']} {c['op']} {thr}" if c["op"] != "order" else f"order of {c.get('of', 't50_h')}"
        extra = ", ".join(f"{k} = {c[k]}" for k in ("at_h", "ref_h", "horizon_h") if k in c)
        out += [
            f"### {i}. `{c['id']}`" + (" (required)" if c.get("required") else ""),
            "",
            c["text"],
            "",
            f"- modalities: {', '.join(c['modalities'])}; readout `{c['readout']}`; test `{test}`"
            + (f" ({extra})" if extra else "")
            + (f"; protocol options {c['protocol']}" if c.get("protocol") else ""),
            f"- quote: “{c.get('quote', '')}”" + (f" (English: “{c['quote_en']}”)" if c.get("quote_en") else ""),
            f"- source: {c.get('source', '')}",
        ]
        if c.get("notes"):
            out.append(f"- notes: {c['notes']}")
        out.append("")
    return "\n".join(out)


def public_modules() -> list[str]:
    """``pkpd`` and its public modules and packages (no leading underscore), found on disk."""
    names = [p.stem for p in SRC.glob("*.py") if not p.stem.startswith("_")]
    names += [
        p.name for p in SRC.iterdir() if p.is_dir() and not p.name.startswith("_") and (p / "__init__.py").exists()
    ]
    return ["pkpd"] + [f"pkpd.{n}" for n in sorted(set(names))]


def api_page(module: str) -> str:
    if module == "pkpd":
        return _top_level_page()
    is_package = (SRC / module.split(".", 1)[1] / "__init__.py").exists()
    opts = "\n".join(
        [
            "    options:",
            "      show_root_heading: false",
            f"      show_submodules: {'true' if is_package else 'false'}",
        ]
    )
    return f"# `{module}`\n\n::: {module}\n{opts}\n"


def _top_level_page() -> str:
    """The names ``import pkpd`` exposes, with the module each comes from."""
    tree = ast.parse((SRC / "__init__.py").read_text(encoding="utf-8"))
    out = [
        "# `pkpd`",
        "",
        md(ast.get_docstring(tree) or ""),
        "",
        "| name | from |",
        "|---|---|",
    ]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for a in node.names:
                name = a.asname or a.name
                if name.startswith("_"):
                    continue
                mod = f"pkpd.{node.module}" if node.module else f"pkpd.{a.name}"
                page = mod.split(".")[1]
                out.append(f"| `pkpd.{name}` | [`{mod}`]({page}.md) |")
    out += ["", "`pkpd.check_float64()` raises `RuntimeError` if JAX's 64-bit mode was switched off after import.", ""]
    return "\n".join(out)


def api_nav() -> list[dict]:
    return [{m: f"api/{m.split('.')[-1] if m != 'pkpd' else 'pkpd'}.md"} for m in public_modules()]


# ---- mkdocs events -----------------------------------------------------------------------------


def on_config(config):
    """Fill the nav's "API reference" entry with one page per public module."""
    nav = config.get("nav") or []
    for i, item in enumerate(nav):
        if isinstance(item, dict) and "API reference" in item:
            nav[i] = {"API reference": api_nav()}
    return config


@event_priority(100)  # before mkdocs-jupyter, so that it renders the notebooks added here
def on_files(files, config):
    def add(path: str, content: str):
        files.append(File.generated(config, path, content=content))

    add("model.md", model_page())
    add("data.md", data_page())
    add("claims.md", claims_page())
    for m in public_modules():
        name = "pkpd" if m == "pkpd" else m.split(".")[-1]
        add(f"api/{name}.md", api_page(m))
    for path in [
        *sorted((ROOT / "notebooks").glob("*.ipynb")),
        *sorted((ROOT / "notebooks" / "figures").glob("*.png")),
    ]:
        rel = path.relative_to(ROOT).as_posix()
        files.append(File(rel, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    for name in ("RESULTS.md", "SBC.md"):
        text = (ROOT / "benchmarks" / name).read_text(encoding="utf-8")
        add(f"benchmarks/{name.lower()}", text)
    return files


def on_page_content(html, page, config, files):
    """Sphinx roles left in rendered docstrings (e.g. ``:func:`x``` in code) become plain code."""
    return re.sub(r":(?:func|class|mod|meth|attr|data|exc|obj):(<code>)", r"\1", html)
