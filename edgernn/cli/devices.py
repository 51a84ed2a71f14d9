"""The targets commands: list, show and check target definitions and their devices."""

from __future__ import annotations

from pathlib import Path

import click

from edgernn.cli.app import out
from edgernn.errors import EdgeRNNError
from edgernn.names import shown


def esc(text: str) -> str:
    """Text from a target file, safe in rich markup and on a terminal."""
    from rich.markup import escape

    return escape(shown(text))


@click.group(invoke_without_command=True)
@click.pass_context
def targets(ctx: click.Context) -> None:
    """List target definitions (targets/*.yaml)."""
    if ctx.invoked_subcommand:
        return
    from edgernn.runners.target import load_target, target_listing

    for name, path in target_listing():
        try:
            t = load_target(str(path))
            out.print(f"[bold]{esc(name)}[/] ({t.runner}; formats {esc(', '.join(t.formats))}): "
                      f"{esc(t.description)}  [dim]{esc(str(path))}[/]")
        except EdgeRNNError as e:
            out.print(f"[bold]{esc(name)}[/] [red]invalid[/]: {esc(str(e))}")


@targets.command("show")
@click.argument("name")
def targets_show(name: str) -> None:
    """Validate and print target NAME (a name or a .yaml path) without connecting."""
    from dataclasses import asdict

    from edgernn.runners.inventory import devices
    from edgernn.runners.target import load_target

    t = load_target(name)
    for k, v in asdict(t).items():
        if k not in ("group", "count", "device_id"):
            out.print(shown(f"{k:>12}: {v}"), highlight=False, markup=False)
    devs = devices(t)
    out.print(f"{'devices':>12}: {len(devs)}", highlight=False)
    for d in devs:  # each board of a group, with what differs from the group's keys
        diff = {k: v for k, v in d.target.extra.items() if t.extra.get(k) != v}
        if d.target.cpus != t.cpus:
            diff["cpus"] = d.target.cpus
        out.print(shown(f"{'':>12}  {d.id}" + (f"  {diff}" if diff else "")), highlight=False,
                  markup=False)


@targets.command("check")
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True,
              help="Check every device of every target on the search path, in parallel.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write each device's row (status, arch, runtimes, start/end times) here.")
def targets_check(name: str | None, all_: bool, json_path: Path | None) -> None:
    """Connect to target NAME (every device of a group), or with --all to every device;
    report what each device has and what is missing."""
    import json
    import time

    from edgernn.runners import get_runner
    from edgernn.runners import inventory as inv
    from edgernn.runners.target import load_target

    if bool(name) == all_:
        raise EdgeRNNError("targets check takes a target NAME or --all (not both)")
    t = load_target(name) if name else None
    if t is not None and not json_path and len(inv.devices(t)) == 1:
        t = inv.devices(t)[0].target  # one device: its facts in full
        runner = get_runner(t)
        try:
            facts = runner.facts()
        finally:
            runner.close()
        pip = " ".join(getattr(runner, "python", ["python3"])) + " -m pip install"
        versions = facts.pop("runtimes", {}) or {}
        thermal = facts.pop("thermal", {}) or {}
        for k, v in facts.items():
            out.print(f"{k:>12}: {v}", highlight=False)
        for k, v in versions.items():
            out.print(f"{k:>12}: {v or '[red]missing[/]'}", highlight=False)
        for k, v in thermal.items():
            out.print(f"{k:>12}: {v}", highlight=False)
        missing = inv.missing_runtimes(t, versions)
        if missing:
            pkgs = " ".join(sorted({m[2] for m in missing}))
            raise EdgeRNNError(
                f"{t.name} lacks {', '.join(f'{m[1]} (for {m[0]})' for m in missing)}; on the "
                f"device run: {pip} {pkgs}")
        out.print(f"[green]{t.name} has every runtime its target file names[/]")
        return
    entries = inv.inventory() if all_ else inv.inventory([name])
    t0 = time.time()
    rows = inv.check_all(entries)
    wall = time.time() - t0
    out.print(inv.check_table(rows), width=min(out.width, 120))
    for r in rows:
        if r.install:
            out.print(f"{r.device}: on the device run: {r.install}", highlight=False)
    if json_path:
        json_path.write_text(json.dumps({"wall_seconds": round(wall, 3),
                                         "devices": [r.as_dict() for r in rows]}, indent=1))
    line = inv.failure_line(rows)
    if line:
        raise EdgeRNNError(line)
    n = sum(1 for r in rows if r.device)
    out.print(f"[green]{n} device{'s' * (n != 1)} ok[/] in {wall:.1f} s")
