"""``tortie datastore migrate export|import|copy``: move a cluster's data between stores."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tortie.cli.files import read_text
from tortie.cli.settings import cli_settings, track
from tortie.datastore.backends import open_datastore
from tortie.datastore.config import DatastoreSettings
from tortie.errors import InvalidInput


def register(sub: Any) -> None:
    ds = sub.add_parser(
        "datastore",
        help="move data between datastores",
        description="Export, import, or copy every pool, block, affinity, handle, "
        "node and endpoint, e.g. from the embedded SQLite store to etcd.",
    )
    dsub = ds.add_subparsers(dest="datastore_command", metavar="SUBCOMMAND")
    dsub.required = True
    mig = dsub.add_parser("migrate", help="export, import or copy the whole datastore")
    msub = mig.add_subparsers(dest="migrate_command", metavar="ACTION")
    msub.required = True
    exp = msub.add_parser("export", help="write every key of the datastore to FILE (- for stdout)")
    exp.add_argument("file", metavar="FILE")
    exp.set_defaults(handler=_export)
    imp = msub.add_parser("import", help="load an export into an EMPTY datastore")
    imp.add_argument("file", metavar="FILE")
    imp.set_defaults(handler=_import)
    cp = msub.add_parser(
        "copy", help="copy a SQLite store into the configured (e.g. etcd) datastore in one step"
    )
    cp.add_argument(
        "--from-sqlite", required=True, metavar="PATH", help="the SQLite file to copy from"
    )
    cp.set_defaults(handler=_copy)


def _export(args: argparse.Namespace) -> int:
    from tortie.datastore.migrate import export_keys

    doc = export_keys(track(open_datastore(cli_settings(args.config), reading=True)))
    text = json.dumps(doc, indent=1) + "\n"
    if args.file == "-":
        sys.stdout.write(text)
    else:
        try:
            with open(args.file, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise InvalidInput(f"file {args.file}: cannot write it ({exc.strerror})") from None
        print(f"Exported {len(doc['keys'])} keys to {args.file}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from tortie.datastore.migrate import import_keys, parse_export

    text = read_text(args.file, "file", "give a file written by 'tortie datastore migrate export'")
    items = parse_export(text, args.file)
    settings = cli_settings(args.config)
    count = import_keys(track(open_datastore(settings)), items, _describe(settings))
    print(f"Imported {count} keys into {_describe(settings)}")
    return 0


def _copy(args: argparse.Namespace) -> int:
    import os

    from tortie.datastore.migrate import export_keys, import_keys
    from tortie.datastore.sqlite import SqliteDatastore

    if not os.path.exists(args.from_sqlite):
        raise InvalidInput(
            f"--from-sqlite {args.from_sqlite}: no such file; give the path of the SQLite store"
        )
    source = track(SqliteDatastore(args.from_sqlite, reading=True))
    items = [(e["key"], e["value"]) for e in export_keys(source)["keys"]]
    settings = cli_settings(args.config)
    if settings.datastore_type == "sqlite" and os.path.abspath(
        settings.sqlite_path or ""
    ) == os.path.abspath(args.from_sqlite):
        raise InvalidInput(
            "the source and target datastores are the same file; set DATASTORE_TYPE/ETCD_ENDPOINTS or --config for the target"
        )
    count = import_keys(track(open_datastore(settings)), items, _describe(settings))
    print(f"Copied {count} keys from {args.from_sqlite} to {_describe(settings)}")
    return 0


def _describe(settings: DatastoreSettings) -> str:
    if settings.datastore_type == "etcdv3":
        return "etcd at " + ",".join(settings.etcd_endpoints)
    return f"{settings.datastore_type} datastore {settings.sqlite_path}".rstrip()
