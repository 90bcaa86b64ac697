"""``churn-schema`` / ``python -m churnstream.cli.schema``: check an event schema file, and write its reference page.

The schema is the pipeline's contract (docs/reference/event-schema.md says which subset of JSON Schema
it may use): check yours before you train or import a model with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging
from churnstream.contract.schema import EventSchema
from churnstream.settings import ENV_EVENT_SCHEMA, load_settings

PROG = "python -m churnstream.cli.schema"


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        PROG,
        "Check an event schema file against the subset of JSON Schema the pipeline implements, and print\n"
        "what the pipeline makes of it (the key, the features and how the model reads them), or its\n"
        "reference page in Markdown.",
        epilog="Examples:\n  churn-schema check my.schema.json\n  churn-schema doc my.schema.json > docs/my-events.md",
    )
    add_logging_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, what in (
        ("check", "check the file; print its key, features and sha256 (exit 3 with the reason when it is refused)"),
        ("doc", "print the file's reference page (Markdown): every field, its constraints, the envelope's rules"),
    ):
        sub = commands.add_parser(name, help=what)
        sub.add_argument("schema", nargs="?", type=Path, metavar="FILE", help=f"default: {ENV_EVENT_SCHEMA}")
    return parser


def describe(schema: EventSchema) -> str:
    """What the pipeline makes of a schema, a line each."""
    lines = [
        f"schema: {schema.source} ({schema.title})",
        f"sha256: {schema.sha256}",
        f"key: {schema.key_field} (the record key and the prediction's first field)",
        f"extra fields: {'ignored' if schema.allows_extra_fields else 'refused'}",
        f"features ({len(schema.features)}, in the model's order):",
    ]
    for field in schema.features:
        how = "one-hot" if field.categorical else "standardized number"
        nullable = ", null allowed" if field.allows_null else ""
        required = "" if field.required else ", optional"
        lines.append(f"  {field.name}: {field.kind} ({how}{nullable}{required})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        from churnstream.contract.jsonschema import schema_reference  # noqa: PLC0415
        from churnstream.contract.schema import load_schema  # noqa: PLC0415

        schema = load_schema(args.schema or load_settings().schema_path)
        if args.command == "check":
            print(describe(schema))
        else:
            print(schema_reference(schema), end="")
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
