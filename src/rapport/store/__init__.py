"""The one SQL store: tables, engine, migrations. Imports no domain."""
