"""``adpipe models ...``: list, show, compare, promote, roll back and delete stored models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from adpipe.core.cli import CONTEXT, _console, _options, cli, store_option, trust_options


def _store(store: str | None):
    from adpipe.core.store import ModelStore

    return ModelStore(store)


def _metrics_text(validation: dict[str, Any]) -> str:
    metrics = validation.get("metrics") or {}
    if not metrics:
        return "no held-out labels"
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())


def _verdict(validation: dict[str, Any]) -> str:
    if not validation:
        return "-"
    if validation.get("passed"):
        return "[green]passed[/green]"
    return "[red]not fit for promotion[/red]: " + escape("; ".join(validation.get("reasons", [])))


def render_fit(console, ref: str, path: Path, meta: dict[str, Any]) -> None:
    training, validation = meta["training"], meta.get("validation") or {}
    console.print(f"[bold]{escape(ref)}[/bold] saved to {escape(str(path))}")
    console.print(f"  fitted on {training['rows']:,} rows in {training['seconds']:.2f} s"
                  + (f", {validation['holdout_rows']:,} held out" if validation.get("holdout_rows") else ""))
    console.print(f"  validation: {escape(_metrics_text(validation))}; {_verdict(validation)}")
    for check in validation.get("checks", []):
        if check["status"] != "ok":
            console.print(f"  [yellow]{check['status']}[/yellow] {check['check']}: {escape(check['detail'])}")


@cli.group(context_settings=CONTEXT)
def models() -> None:
    """The model store: versions, stage labels, promotion and rollback.

    References: NAME (newest version), NAME@latest, NAME@VERSION, NAME@STAGE, or a model file path.
    """


@models.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def models_list(store: str | None, as_json: bool) -> None:
    """Every stored model: versions, stage labels, newest version."""
    st = _store(store)
    rows = []
    for name in st.names():
        versions = st.versions(name)
        if not versions:
            continue
        latest = versions[-1]
        stages = {s: sv.version for sv in versions for s in sv.stages}
        meta = latest.metadata()
        rows.append({"name": name, "versions": [sv.version for sv in versions], "latest": latest.version,
                     "stages": stages, "created_at": meta.get("created_at"),
                     "detector": (meta.get("config") or {}).get("detector", {}).get("type")})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    console = _console()
    if not rows:
        console.print(f"no models in {escape(str(st.root))}")
        return
    table = Table(title=f"models in {escape(str(st.root))}", title_justify="left")
    for col in ("name", "versions", "latest", "stages", "detector", "latest created"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], str(len(r["versions"])), str(r["latest"]),
                      ", ".join(f"{s}={v}" for s, v in sorted(r["stages"].items())) or "-",
                      r["detector"] or "-", (r["created_at"] or "")[:19])
    console.print(table)


def _open(ref: str, store: str | None):
    """(stored version or None, path, metadata) of a reference, reading metadata only."""
    from adpipe.core import modelfile
    from adpipe.core.model import is_path_ref

    if is_path_ref(ref):
        return None, Path(ref), modelfile.read(ref, payload=False)
    sv = _store(store).resolve(ref)
    return sv, sv.path, modelfile.read(sv.path, payload=False)


@models.command("show")
@click.argument("ref")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the full metadata as JSON.")
def models_show(ref: str, store: str | None, as_json: bool) -> None:
    """A model's metadata: config, features, training, validation, versions, signature (nothing is unpickled)."""
    from adpipe.core import modelfile
    from adpipe.core.model import version_differences

    sv, path, mf = _open(ref, store)
    meta = mf.metadata
    if as_json:
        click.echo(json.dumps({"ref": sv.ref if sv else str(path), "path": str(path), "signed": mf.signed,
                               "signer": mf.signer, **meta}, indent=2, default=str))
        return
    console = _console()
    cfg = meta.get("config") or {}
    console.print(f"[bold]{escape(sv.ref if sv else str(path))}[/bold]  ({escape(meta['model_version'])}, "
                  f"created {meta['created_at'][:19]})")
    console.print(f"file: {escape(str(path))} ({path.stat().st_size:,} bytes, sha256 of payload "
                  f"{meta['payload']['sha256'][:16]}…)")
    key = modelfile.model_key()
    trust = ("signed with this machine's key" if mf.signed else
             f"signed with another key ({mf.signer})" if mf.signer else "unsigned")
    console.print(f"signature: {trust}" + ("" if key or mf.signed else " (this machine has no model key yet)"))
    if sv is not None:
        console.print(f"stages: {', '.join(sv.stages) or '-'}")
    det = cfg.get("detector") or {}
    console.print(f"detector: {escape(json.dumps(det))}")
    console.print(f"preprocess: {escape(', '.join(p['type'] for p in cfg.get('preprocess', [])) or '-')}; "
                  f"threshold: {escape(json.dumps(cfg.get('threshold')))}")
    feats = meta.get("features") or {}
    table = Table(title="input columns", title_justify="left")
    for col in ("column", "dtype", "kind", "role", "categories"):
        table.add_column(col)
    for c in feats.get("columns", []):
        role = ("feature" if c["name"] in feats["features"] else "label" if c["name"] == feats.get("label")
                else "id" if c["name"] in feats["id_columns"] else "-")
        cats = c.get("categories") or []
        table.add_row(escape(c["name"]), c["dtype"], c["kind"] or "-", role,
                      escape(", ".join(cats[:6]) + (f", … ({len(cats)})" if len(cats) > 6 else "")))
    console.print(table)
    tr = meta["training"]
    sc = tr.get("scores", {})
    console.print(f"training: {tr['rows']:,} rows ({tr.get('held_out', 0):,} held out, {tr['rejected']:,} rejected), "
                  f"{tr['seconds']:.2f} s; scores p50 {sc.get('p50', float('nan')):.4g}, "
                  f"p99 {sc.get('p99', float('nan')):.4g}, max {sc.get('max', float('nan')):.4g}; "
                  f"{tr.get('flagged', 0):,} training rows flagged")
    combined = tr.get("detector")
    if combined and combined.get("members"):
        names = [m if isinstance(m, str) else m.get("label") or m.get("type") for m in combined["members"]]
        console.print(f"detector: {escape(' + '.join(map(str, names)))} combined by {escape(str(combined['method']))}")
    tuning = tr.get("tuning")
    if tuning:
        console.print(f"tuning: {tuning['method']} search, {tuning['trials']} trials ({tuning['stopped']}); best "
                      f"{tuning['objective']} {tuning['best_value']:.4f} with "
                      + escape(", ".join(f"{k}={v}" for k, v in tuning["best_params"].items())))
    chosen = tr.get("threshold")
    if chosen:
        console.print(f"threshold: probability >= {chosen['cutoff']:.4g} chosen by {escape(str(chosen['method']))}"
                      + (f" on {escape(Path(chosen['data']).name)}" if chosen.get("data") else "")
                      + f" ({escape(str(chosen.get('chosen_at', ''))[:10])})")
    validation = meta.get("validation") or {}
    console.print(f"validation: {escape(_metrics_text(validation))}; {_verdict(validation)}")
    refused, tolerated = version_differences(meta)
    libs = ", ".join(f"{k} {v}" for k, v in (meta.get("libraries") or {}).items())
    console.print(f"made with adpipe {meta.get('adpipe_version')}, Python {meta.get('python')}, {escape(libs)}")
    for text in refused:
        console.print(f"[red]incompatible here[/red]: {escape(text)}")
    for text in tolerated:
        console.print(f"[yellow]differs here[/yellow]: {escape(text)}")
    if sv is not None:
        events = _store(store).history(sv.name)[-8:]
        console.print("recent events: " + escape("; ".join(
            f"{e['at'][:19]} {e['action']} {e.get('version', '')}" + (f" -> {e['stage']}" if e.get("stage") else "")
            for e in events)))


@models.command("compare")
@click.argument("ref_a")
@click.argument("ref_b")
@store_option
@click.option("--data", type=click.Path(exists=True, dir_okay=False), help="Score this CSV/Parquet/JSONL file with "
              "both models and compare scores, flags and (with labels) metrics.")
@click.option("--label", help="Ground-truth column in --data (default: the models' columns.label).")
@_options(trust_options)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def models_compare(ref_a: str, ref_b: str, store: str | None, data: str | None, label: str | None, trust: bool,
                   strict_versions: bool, as_json: bool) -> None:
    """Differences between two models: metadata, and on --data their scores and metrics."""
    from adpipe.core.comparison import compare_on_data, metadata_differences
    from adpipe.core.frames import to_frame
    from adpipe.core.model import load_model

    metas = {}
    for ref in (ref_a, ref_b):
        sv, _, mf = _open(ref, store)
        metas[sv.ref if sv else ref] = mf.metadata
    (na, ma), (nb, mb) = metas.items()
    diffs = metadata_differences(ma, mb)
    out: dict[str, Any] = {"a": na, "b": nb, "differences": [{"key": k, "a": a, "b": b} for k, a, b in diffs]}
    if data:
        loaded = {n: load_model(r, store=store, trusted=trust, strict_versions=strict_versions)
                  for n, r in zip((na, nb), (ref_a, ref_b))}
        label = label or (ma.get("features") or {}).get("label") or (mb.get("features") or {}).get("label")
        out["data"] = {"path": data, "label": label, **compare_on_data(loaded, to_frame(data), label)}
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    console = _console()
    table = Table(title=f"{na} vs {nb}: metadata differences", title_justify="left")
    for col in ("field", na, nb):
        table.add_column(escape(col))
    for k, a, b in diffs:
        table.add_row(escape(k), escape(_short(a)), escape(_short(b)))
    console.print(table if diffs else "no metadata differences besides times and hashes")
    if data:
        d = out["data"]
        table = Table(title=f"on {data} ({d['rows']:,} rows)", title_justify="left")
        table.add_column("")
        for n in (na, nb):
            table.add_column(escape(n))
        ea, eb = d["models"][na], d["models"][nb]
        table.add_row("anomalies", f"{ea['anomalies']:,} ({ea['anomaly_rate']:.2%})",
                      f"{eb['anomalies']:,} ({eb['anomaly_rate']:.2%})")
        for q in ea["probability_quantiles"]:
            table.add_row(f"probability p{int(q * 100)}", f"{ea['probability_quantiles'][q]:.4f}",
                          f"{eb['probability_quantiles'][q]:.4f}")
        for m in ea.get("metrics", {}):
            va, vb = ea["metrics"][m], eb["metrics"].get(m, float("nan"))
            table.add_row(m, f"{va:.4f}", f"{vb:.4f} ({vb - va:+.4f})")
        console.print(table)
        ag = d["agreement"]
        console.print(f"agreement: same flag on {ag['same_flag']:.2%} of rows, {ag['flagged_by_both']:,} flagged by "
                      f"both, Jaccard {ag['jaccard'] if ag['jaccard'] is None else round(ag['jaccard'], 4)}, "
                      f"score rank correlation {ag['score_rank_correlation']}")


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[:width - 1] + "…"


@models.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--stage", default="production", show_default=True, help="Stage label to move to VERSION.")
@click.option("--force", is_flag=True, help="Promote even a model whose validation did not pass.")
@store_option
def models_promote(name: str, version: int, stage: str, force: bool, store: str | None) -> None:
    """Label VERSION of NAME with a stage (production, staging, ...)."""
    sv = _store(store).promote(name, version, stage, force=force)
    click.echo(f"{name}@{stage} -> version {sv.version}")


@models.command("rollback")
@click.argument("name")
@click.option("--stage", default="production", show_default=True, help="Stage label to move back.")
@store_option
def models_rollback(name: str, stage: str, store: str | None) -> None:
    """Move a stage label back to the version it held before its last promotion."""
    old, new = _store(store).rollback(name, stage)
    click.echo(f"{name}@{stage}: version {old} -> {new}")


@models.command("delete")
@click.argument("name")
@click.argument("version", type=int, required=False)
@click.option("--force", is_flag=True, help="Also delete versions that hold a stage label.")
@store_option
def models_delete(name: str, version: int | None, force: bool, store: str | None) -> None:
    """Delete one version of NAME, or every version when VERSION is left out."""
    gone = _store(store).delete(name, version, force=force)
    click.echo(f"deleted {name} version(s) {', '.join(map(str, gone))}")


@models.command("register")
@click.argument("ref")
@click.option("--as", "registered", help="MLflow registered-model name (default: the model's own name).")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI [env MLFLOW_TRACKING_URI].")
@store_option
def models_register(ref: str, registered: str | None, tracking_uri: str | None, store: str | None) -> None:
    """Log a model to MLflow as a pyfunc model and register it (needs the mlflow extra).

    Afterwards mlflow.pyfunc.load_model("models:/NAME/N") scores with it, and so does
    adpipe score model=models:/NAME/N config=...
    """
    from adpipe.integrations.mlflow import log_model_ref

    _, _, mf = _open(ref, store)
    name = registered or mf.metadata["name"]
    out = log_model_ref(ref, store=store, registered_model_name=name, tracking_uri=tracking_uri)
    click.echo(f"{ref} -> {out['model_uri']} (run {out['run_id']})")
