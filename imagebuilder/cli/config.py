"""`imgbuild config show`: every effective setting, where it came from, secrets masked."""

from __future__ import annotations

import click

from imagebuilder.cli.output import Ui, common_options, emit


@click.group("config")
def config() -> None:
    """Configuration: one key, many sources; the most specific wins.

    flag > IMGBUILD_<KEY> > METAFLOW_IMGBUILD_<KEY> > ./imgbuild.toml >
    ~/.config/imgbuild/config.toml > Metaflow config file > conda/pip/uv settings > default.
    """


@config.command("show")
@common_options
def show(ui: Ui) -> None:
    """Show each configuration value and its source (passwords and tokens as ***).

    Besides imgbuild's keys it shows the credentials configured per host (masked), the CA
    bundle every client will trust and the proxies in effect.

    \b
    Examples:
      imgbuild config show
      IMGBUILD_STORE=s3://bucket/imgbuild imgbuild config show --json
    """
    from imagebuilder.sources import credentials, tls
    from imagebuilder.urls import redact

    cfg = ui.config()
    rows = cfg.show()
    for host, cred in sorted(credentials.all_known().items()):
        if cred.source.endswith((".toml",)):
            continue  # already listed by cfg.show() with its fields
        kind = "token" if cred.token or cred.conda_token else "username/password"
        rows.append({"key": f"auth.{host}", "value": f"*** ({kind})", "source": cred.source})
    found = tls.ca_sources()
    if found:
        value = tls.ca_bundle() if len(found) > 1 else found[0][1]
        rows.append(
            {"key": "ca_bundle", "value": value, "source": ", ".join(f"env {v}" for v, _ in found)}
        )
    for name, (value, var) in sorted(tls.proxy_settings().items()):
        rows.append(
            {"key": f"proxy.{name.lower()}", "value": redact(value), "source": f"env {var}"}
        )
    emit(ui, {"config": rows}, _human)


def _human(data: dict) -> str:
    rows = data["config"]
    width = max(len(r["key"]) for r in rows)
    out = []
    for r in rows:
        value = r["value"]
        shown = (
            "-"
            if value in (None, "", [])
            else ",".join(value)
            if isinstance(value, list)
            else value
        )
        out.append(f"{r['key']:<{width}}  {shown}  ({r['source']})")
    return "\n".join(out)
