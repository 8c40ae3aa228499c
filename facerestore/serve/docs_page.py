"""``/docs``: the OpenAPI description as one self-contained HTML page.

FastAPI's Swagger UI and ReDoc pages load their scripts from a CDN, which an offline server
cannot reach (and should not ask); this page is rendered on the server from ``app.openapi()``
with no script, font or stylesheet from anywhere. The machine-readable schema is ``/openapi.json``.
"""

from __future__ import annotations

import html
import json

STYLE = ("body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}"
         "code,pre{font-family:ui-monospace,monospace;background:#f4f4f5;padding:.1rem .3rem}"
         "pre{padding:.6rem;overflow:auto}table{border-collapse:collapse;margin:.5rem 0}"
         "td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}"
         ".m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}")


def render(schema: dict) -> str:
    """The whole page: title, then one section per operation."""
    info = schema.get("info", {})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(info.get('title', 'API'))} API"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>{_e(info.get('title', ''))} {_e(info.get('version', ''))}</h1>",
             f"<p>{_e(info.get('description', ''))} Schema: <a href='openapi.json'>/openapi.json</a>.</p>"]
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            parts.append(_operation(schema, path, method, op))
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation(schema: dict, path: str, method: str, op: dict) -> str:
    anchor = _e(op.get("operationId", path))
    out = [f"<h2 id='{anchor}'><span class='m'>{_e(method)}</span><code>{_e(path)}</code></h2>",
           f"<p>{_e(op.get('description') or op.get('summary', ''))}</p>"]
    rows = [(p["name"], p.get("in", ""), _type(p.get("schema", {})), p.get("description", ""))
            for p in op.get("parameters", [])]
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        ref = _resolve(schema, content.get("schema", {}))
        for name, prop in ref.get("properties", {}).items():
            rows.append((name, media, _type(prop), prop.get("description", "")))
    if rows:
        out.append("<table><tr><th>name</th><th>in</th><th>type</th><th>description</th></tr>"
                   + "".join(f"<tr><td><code>{_e(n)}</code></td><td>{_e(w)}</td><td>{_e(t)}</td><td>{_e(d)}</td></tr>"
                             for n, w, t, d in rows) + "</table>")
    responses = op.get("responses", {})
    out.append("<table><tr><th>status</th><th>meaning</th></tr>"
               + "".join(f"<tr><td>{_e(code)}</td><td>{_e(r.get('description', ''))}</td></tr>"
                         for code, r in responses.items()) + "</table>")
    return "\n".join(out)


def _resolve(schema: dict, node: dict) -> dict:
    ref = node.get("$ref", "")
    if ref.startswith("#/"):
        for key in ref[2:].split("/"):
            schema = schema.get(key, {})
        return schema
    return node


def _type(node: dict) -> str:
    if "anyOf" in node:
        return " | ".join(_type(n) for n in node["anyOf"])
    text = node.get("type", "")
    if "enum" in node:
        text += " " + "/".join(map(str, node["enum"]))
    limits = [f"{k} {node[k]}" for k in ("minimum", "maximum", "exclusiveMinimum") if k in node]
    if "default" in node:
        limits.append(f"default {json.dumps(node['default'])}")
    return text + (f" ({', '.join(limits)})" if limits else "")


def _e(value) -> str:
    return html.escape(str(value))
