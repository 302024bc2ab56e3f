"""Parse docs/schema.md and compare it with the models and the real database tables.

`schema_differences(doc_text)` returns one readable line per mismatch (empty list = parity), so
a test can also feed it a deliberately broken copy of the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db import connection as default_connection
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

SCHEMA_DOC = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
OUR_APPS = (
    "accounts_app",
    "pipelines_app",
    "runs_app",
    "secrets_app",
    "fastflow_site",
    "notifications_app",
    "audit_app",
    "gitsync_app",
)
COLUMN_HEADER = ["Column", "Type", "Null", "Key", "Description"]
PLAIN_FAMILIES = {"text", "integer", "bigint", "float", "boolean", "datetime", "json", "uuid"}

FIELD_FAMILY = {
    "CharField": "string",
    "TextField": "text",
    "AutoField": "integer",
    "SmallAutoField": "integer",
    "IntegerField": "integer",
    "SmallIntegerField": "integer",
    "PositiveIntegerField": "integer",
    "PositiveSmallIntegerField": "integer",
    "BigAutoField": "bigint",
    "BigIntegerField": "bigint",
    "PositiveBigIntegerField": "bigint",
    "FloatField": "float",
    "BooleanField": "boolean",
    "DateTimeField": "datetime",
    "JSONField": "json",
    "UUIDField": "uuid",
}
# What information_schema.columns.data_type must say on PostgreSQL for each family.
POSTGRES_DATA_TYPE = {
    "string": "character varying",
    "text": "text",
    "integer": "integer",
    "bigint": "bigint",
    "float": "double precision",
    "boolean": "boolean",
    "datetime": "timestamp with time zone",
    "json": "jsonb",
    "uuid": "uuid",
}


class SchemaDocError(ValueError):
    """docs/schema.md does not follow its own format."""


@dataclass(frozen=True)
class ColumnType:
    family: str
    length: int | None = None
    choices: tuple[str, ...] | None = None

    def __str__(self) -> str:
        if self.choices is not None:
            return f"enum({', '.join(self.choices)})"
        if self.length is not None:
            return f"{self.family}({self.length})"
        return self.family

    @property
    def storage(self) -> ColumnType:
        """The type as the database sees it: an enum is a plain string column."""
        return ColumnType("string") if self.choices is not None else self


@dataclass(frozen=True)
class DocColumn:
    name: str
    type: ColumnType
    null: bool
    key: str
    description: str
    line: int

    @property
    def inherited(self) -> bool:
        return self.description.startswith("Inherited:")


@dataclass
class DocTable:
    heading: str
    db_table: str
    columns: dict[str, DocColumn] = field(default_factory=dict)
    composite_indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class DocEnum:
    name: str
    used_by: tuple[tuple[str, str], ...]
    values: tuple[str, ...]


@dataclass
class SchemaDoc:
    tables: dict[str, DocTable]
    enums: list[DocEnum]


# --- Parsing ------------------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _unquote(text: str) -> str:
    return text.strip().strip("`").strip()


def parse_type(text: str, *, line: int) -> ColumnType:
    text = text.strip()
    if m := re.fullmatch(r"string\((\d+)\)", text):
        return ColumnType("string", int(m.group(1)))
    if m := re.fullmatch(r"enum\((.+)\)", text):
        return ColumnType("string", choices=tuple(v.strip() for v in m.group(1).split(",")))
    if text in PLAIN_FAMILIES:
        return ColumnType(text)
    raise SchemaDocError(
        f"line {line}: unknown type {text!r} (expected string(n), enum(A, B), "
        f"or one of {', '.join(sorted(PLAIN_FAMILIES))})"
    )


def _parse_key(text: str, *, line: int) -> str:
    text = text.strip().replace("->", "→")
    if text in {"", "PK", "UNIQUE", "INDEX"}:
        return text
    if m := re.fullmatch(r"FK\s*→\s*(\w+)\.(\w+)", text):
        return f"FK → {m.group(1)}.{m.group(2)}"
    raise SchemaDocError(f"line {line}: unknown key {text!r} (PK, UNIQUE, FK → t.c, INDEX)")


def _sections(lines: list[str], prefix: str) -> list[tuple[str, int, list[str]]]:
    """Split lines at headings with exactly this prefix: (title, first line number, body)."""
    found: list[tuple[str, int, list[str]]] = []
    for number, line in enumerate(lines, start=1):
        if line.startswith(prefix) and not line.startswith(prefix + "#"):
            found.append((line[len(prefix) :].strip(), number, []))
        elif found:
            found[-1][2].append(line)
    return found


def _table_rows(body: list[str], first_line: int) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The first Markdown table in body: its header and (line number, cells) per row."""
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    for offset, line in enumerate(body, start=1):
        if not line.lstrip().startswith("|"):
            if header:
                break
            continue
        cells = _cells(line)
        if not header:
            header = cells
        elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
            rows.append((first_line + offset, cells))
    return header, rows


def _parse_table(title: str, start: int, body: list[str]) -> DocTable:
    text = "\n".join(body)
    m = re.search(r"Table `(\w+)`", text)
    if not m:
        raise SchemaDocError(f"line {start}: section '{title}' does not name its Table `…`")
    table = DocTable(heading=title, db_table=m.group(1))
    header, rows = _table_rows(body, start)
    if header != COLUMN_HEADER:
        raise SchemaDocError(
            f"line {start}: table of '{title}' must have columns {' | '.join(COLUMN_HEADER)}, "
            f"found {' | '.join(header) or 'none'}"
        )
    for number, cells in rows:
        if len(cells) != len(COLUMN_HEADER):
            raise SchemaDocError(f"line {number}: expected 5 cells, found {len(cells)}")
        name, type_text, null_text, key_text, description = cells
        name = _unquote(name)
        if null_text not in {"yes", "no"}:
            raise SchemaDocError(f"line {number}: Null must be yes or no, got {null_text!r}")
        if name in table.columns:
            raise SchemaDocError(f"line {number}: column {name!r} is listed twice")
        table.columns[name] = DocColumn(
            name=name,
            type=parse_type(type_text, line=number),
            null=null_text == "yes",
            key=_parse_key(key_text, line=number),
            description=description,
            line=number,
        )
    for line in body:
        if m := re.match(r"- `(\w+)`: \(([^)]*)\)", line.strip()):
            parts = [p.strip() for p in m.group(2).split(",")]
            table.composite_indexes[m.group(1)] = tuple(
                ("-" if p.upper().endswith(" DESC") else "") + _unquote(p.split()[0]) for p in parts
            )
    return table


def _parse_enums(start: int, body: list[str]) -> list[DocEnum]:
    header, rows = _table_rows(body, start)
    if header != ["Enum", "Used by", "Values"]:
        raise SchemaDocError(f"line {start}: the Enums table must have Enum | Used by | Values")
    enums = []
    for _, (name, used_by, values) in rows:
        columns = tuple(
            tuple(_unquote(ref).split(".", 1)) for ref in used_by.split(",") if ref.strip()
        )
        enums.append(
            DocEnum(
                name=name.strip(),
                used_by=columns,  # type: ignore[arg-type]
                values=tuple(v.strip() for v in values.split(",")),
            )
        )
    return enums


def parse_schema_doc(text: str) -> SchemaDoc:
    lines = text.splitlines()
    chapters = {title: (start, body) for title, start, body in _sections(lines, "## ")}
    if "Tables" not in chapters:
        raise SchemaDocError("no '## Tables' section")
    start, body = chapters["Tables"]
    tables: dict[str, DocTable] = {}
    for title, table_start, table_body in _sections(body, "### "):
        table = _parse_table(title, start + table_start, table_body)
        tables[table.db_table] = table
    enums = _parse_enums(*chapters["Enums"]) if "Enums" in chapters else []
    return SchemaDoc(tables=tables, enums=enums)


# --- What the models say ------------------------------------------------------------------------


def model_column_type(f: models.Field) -> ColumnType:
    if f.is_relation:
        return model_column_type(f.target_field).storage
    family = FIELD_FAMILY.get(f.get_internal_type(), f"unknown({f.get_internal_type()})")
    if f.choices:
        return ColumnType("string", choices=tuple(str(v) for v, _ in f.flatchoices))
    return ColumnType(family, f.max_length if family == "string" else None)


def model_key(f: models.Field) -> str:
    if f.primary_key:
        return "PK"
    if f.unique:
        return "UNIQUE"
    if f.is_relation:
        return f"FK → {f.related_model._meta.db_table}.{f.target_field.column}"
    single = {i.fields[0].lstrip("-") for i in f.model._meta.indexes if len(i.fields) == 1}
    return "INDEX" if f.db_index or f.name in single else ""


def inherited_field_names(model: type[models.Model]) -> set[str]:
    """Fields a model takes from abstract parents (for User: AbstractBaseUser's)."""
    names: set[str] = set()
    for base in model.__mro__[1:]:
        meta = getattr(base, "_meta", None)
        if meta is not None and meta.abstract:
            names |= {f.column for f in meta.local_fields}
    return names


# --- What the database says ---------------------------------------------------------------------


@dataclass
class DbColumn:
    type: ColumnType
    null: bool
    key: str
    indexed: bool
    raw_type: str


def _db_family(conn: BaseDatabaseWrapper, desc: Any) -> ColumnType:
    if conn.vendor == "sqlite" and str(desc.type_code).lower() == "char(32)":
        return ColumnType("uuid")  # Django stores UUIDs as 32 hex chars on SQLite
    try:
        django_type = conn.introspection.get_field_type(desc.type_code, desc)
    except KeyError:
        return ColumnType(f"unknown({desc.type_code})")
    family = FIELD_FAMILY.get(django_type, f"unknown({django_type})")
    return ColumnType(family, desc.display_size if family == "string" else None)


def postgres_data_types(conn: BaseDatabaseWrapper, table: str) -> dict[str, str]:
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            [table],
        )
        return dict(cursor.fetchall())


def database_columns(conn: BaseDatabaseWrapper, table: str) -> dict[str, DbColumn]:
    introspection = conn.introspection
    with conn.cursor() as cursor:
        description = introspection.get_table_description(cursor, table)
        constraints = introspection.get_constraints(cursor, table)
        relations = introspection.get_relations(cursor, table)
    single = [c for c in constraints.values() if len(c["columns"]) == 1]
    pks = {c["columns"][0] for c in single if c["primary_key"]}
    uniques = {c["columns"][0] for c in single if c["unique"] and not c["primary_key"]}
    indexed = {c["columns"][0] for c in single if c["index"] or c["unique"] or c["primary_key"]}
    # A foreign key is served by any index it leads, e.g. (pipeline_name, queued_at).
    leading = {
        c["columns"][0]
        for c in constraints.values()
        if c["columns"] and (c["index"] or c["unique"] or c["primary_key"])
    }
    raw = postgres_data_types(conn, table) if conn.vendor == "postgresql" else {}
    columns = {}
    for desc in description:
        if desc.name in pks:
            key = "PK"
        elif desc.name in uniques:
            key = "UNIQUE"
        elif desc.name in relations:
            target_column, target_table = relations[desc.name]
            key = f"FK → {target_table}.{target_column}"
        else:
            key = "INDEX" if desc.name in indexed else ""
        columns[desc.name] = DbColumn(
            type=_db_family(conn, desc),
            null=bool(desc.null_ok),
            key=key,
            indexed=desc.name in leading,
            raw_type=raw.get(desc.name, str(desc.type_code)),
        )
    return columns


def database_composite_indexes(conn: BaseDatabaseWrapper, table: str) -> set[tuple[str, ...]]:
    with conn.cursor() as cursor:
        constraints = conn.introspection.get_constraints(cursor, table)
    found = set()
    for c in constraints.values():
        if c["index"] and len(c["columns"]) > 1:
            orders = c.get("orders") or ["ASC"] * len(c["columns"])
            found.add(
                tuple(
                    ("-" if order == "DESC" else "") + column
                    for column, order in zip(c["columns"], orders, strict=True)
                )
            )
    return found


# --- The comparison -----------------------------------------------------------------------------


def _describe(type_: ColumnType | None, null: bool | None, key: str | None) -> str:
    if type_ is None:
        return "(missing)"
    parts = [str(type_), "null" if null else "not null"]
    if key:
        parts.append(key)
    return ", ".join(parts)


def _compare_column(
    where: str, doc: DocColumn, field_: models.Field, db: DbColumn, vendor: str
) -> list[str]:
    diffs = []
    model_type = model_column_type(field_)
    # The database only knows an enum as a string column of some width.
    db_type = ColumnType(db.type.family) if doc.type.choices else db.type
    checks = [
        ("type", str(doc.type), str(model_type), str(doc.type.storage), str(db_type)),
        ("null", _yes(doc.null), _yes(field_.null), _yes(doc.null), _yes(db.null)),
        ("key", doc.key or "-", model_key(field_) or "-", doc.key or "-", db.key or "-"),
    ]
    for aspect, documented, in_model, documented_db, in_db in checks:
        if documented != in_model:
            diffs.append(f"{where} [{aspect}] documented: {documented} / model: {in_model}")
        if documented_db != in_db:
            diffs.append(f"{where} [{aspect}] documented: {documented_db} / database: {in_db}")
    if doc.key.startswith("FK") and not db.indexed:
        diffs.append(f"{where} [key] documented: indexed foreign key / database: no index")
    if vendor == "postgresql":
        expected = POSTGRES_DATA_TYPE.get(doc.type.storage.family)
        if expected and db.raw_type != expected:
            diffs.append(
                f"{where} [postgres type] documented: {doc.type} → {expected} "
                f"/ database: {db.raw_type}"
            )
    if not doc.description.strip() or doc.description.strip() in {"Added:", "Inherited:"}:
        diffs.append(f"{where} [description] documented: (empty) / expected: why it exists")
    return diffs


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _our_models() -> dict[str, type[models.Model]]:
    return {
        m._meta.db_table: m
        for m in apps.get_models()
        if m._meta.app_label in OUR_APPS and m._meta.managed and not m._meta.proxy
    }


def _compare_table(
    doc: DocTable, model: type[models.Model], conn: BaseDatabaseWrapper
) -> list[str]:
    table = doc.db_table
    diffs = []
    if doc.heading != model.__name__:
        diffs.append(f"{table} [heading] documented: ### {doc.heading} / model: {model.__name__}")
    if table not in conn.introspection.table_names():
        return [*diffs, f"{table} [table] documented: present / database: (missing)"]
    fields = {f.column: f for f in model._meta.concrete_fields}
    db_columns = database_columns(conn, table)
    for name in sorted(set(doc.columns) | set(fields) | set(db_columns)):
        where = f"{table}.{name}"
        d, f, c = doc.columns.get(name), fields.get(name), db_columns.get(name)
        if d is None or f is None or c is None:
            documented = "(missing)" if d is None else _describe(d.type, d.null, d.key)
            in_model = (
                "(missing)" if f is None else _describe(model_column_type(f), f.null, model_key(f))
            )
            in_db = "(missing)" if c is None else _describe(c.type, c.null, c.key)
            diffs.append(
                f"{where} [column] documented: {documented} / model: {in_model} / database: {in_db}"
            )
            continue
        diffs.extend(_compare_column(where, d, f, c, conn.vendor))
    inherited = inherited_field_names(model)
    marked = {name for name, col in doc.columns.items() if col.inherited}
    if marked != inherited:
        diffs.append(
            f"{table} [inherited] documented: {sorted(marked)} / model: {sorted(inherited)}"
        )
    documented_indexes = set(doc.composite_indexes.values())
    db_indexes = database_composite_indexes(conn, table)
    for index in sorted(documented_indexes ^ db_indexes):
        side = "documented" if index in documented_indexes else "database"
        diffs.append(f"{table} [composite index] only in {side}: ({', '.join(index)})")
    return diffs


def _compare_enums(schema: SchemaDoc) -> list[str]:
    diffs = []
    for enum in schema.enums:
        for table, column in enum.used_by:
            where = f"{table}.{column} [enum {enum.name}]"
            doc_column = schema.tables.get(table, DocTable("", table)).columns.get(column)
            if doc_column is None:
                diffs.append(f"{where} documented in Enums / tables: (missing)")
                continue
            if doc_column.type.choices != enum.values:
                diffs.append(
                    f"{where} Enums section: {', '.join(enum.values)} / "
                    f"column type: {doc_column.type}"
                )
    enum_columns = {ref for enum in schema.enums for ref in enum.used_by}
    for table in schema.tables.values():
        for column in table.columns.values():
            if column.type.choices and (table.db_table, column.name) not in enum_columns:
                diffs.append(
                    f"{table.db_table}.{column.name} [enum] documented: {column.type} "
                    "/ Enums section: (missing)"
                )
    return diffs


def schema_differences(doc_text: str, conn: BaseDatabaseWrapper | None = None) -> list[str]:
    """Every mismatch between the document, the models and the database, one line each."""
    conn = conn or default_connection
    schema = parse_schema_doc(doc_text)
    models_by_table = _our_models()
    diffs = []
    for table in sorted(set(schema.tables) | set(models_by_table)):
        if table not in schema.tables:
            model = models_by_table[table]
            diffs.append(f"{table} [table] documented: (missing) / model: {model._meta.label}")
        elif table not in models_by_table:
            diffs.append(f"{table} [table] documented: present / model: (missing)")
        else:
            diffs.extend(_compare_table(schema.tables[table], models_by_table[table], conn))
    diffs.extend(_compare_enums(schema))
    return diffs
