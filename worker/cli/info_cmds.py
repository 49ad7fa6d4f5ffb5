"""``sentiment-worker settings``: show the effective settings (secrets masked) or document them all."""

from __future__ import annotations

import argparse
import json

from pydantic.fields import FieldInfo

from worker.cli.common import add_common_flags, add_settings_flags
from worker.settings import SECTIONS, Section, env_name, flag_name, load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "settings",
        help="Print the effective settings (flags > env > config file > defaults), secrets masked.",
        description="Validate and print the effective settings as JSON grouped by section (secrets masked), or "
        "with --markdown the reference: a table per section of every setting with its env var, flag and default.",
    )
    add_common_flags(p)
    p.add_argument("--markdown", action="store_true", help="Print the reference table of all settings.")
    add_settings_flags(p)
    p.set_defaults(func=cmd_settings)


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print(settings_markdown())
        return 0
    overrides = {k.removeprefix("setting_"): v for k, v in vars(args).items() if k.startswith("setting_")}
    settings = load_settings(args.config, **overrides)
    print(json.dumps(settings.sections_dump(), indent=2, default=str))
    return 0


def settings_markdown() -> str:
    """The settings reference (docs/settings.md): one table per section, in the order the sections are shown."""
    parts: list[str] = []
    for section in SECTIONS.values():
        rows = [f"## {section.title}", "", section_doc(section), "", *_TABLE_HEAD]
        rows += [_row(name, info) for name, info in section.model_fields.items()]
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


_TABLE_HEAD = ("| Setting | Env var / flag | Default | Meaning |", "|---|---|---|---|")


def section_doc(section: type[Section]) -> str:
    """The first paragraph of the section's docstring, on one line."""
    first = (section.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in first.splitlines())


def _row(name: str, info: FieldInfo) -> str:
    if info.default_factory is not None:
        default = "`~/.cache/sentiment-worker`" if name == "cache_dir" else "(computed)"
    elif info.default is None:
        default = "unset"
    elif isinstance(info.default, list):
        default = f"`{','.join(info.default)}`" if info.default else "empty"
    elif info.default == " ":
        default = "` ` (a space)"
    else:
        default = f"`{info.default}`"
    desc = (info.description or "").replace("|", "\\|")
    return f"| {name} | `{env_name(name)}` / `{flag_name(name)}` | {default} | {desc} |"
