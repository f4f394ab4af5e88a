"""The registry: the node's source of truth — schema, migrations, store, identifier
grammar, templates, permissions and the SNMS-compatible admin API."""
