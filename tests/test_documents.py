"""The database layout every process relies on: collection names and indexes as the
documents declare them, created by opening the resources (existing deployments keep
their data under these names)."""

from __future__ import annotations

from pocketquant.resources import Resources

EXPECTED_INDEXES = {
    "symbols": {"symbol_key": True, "tracked": False},
    "bar_chunks": {"chunk_key": True},
    "sync_status": {"status_key": True},
    "watched_symbols": {"watched_key": True, "watched_slot": True},
    "api_keys": {"key_id": True},
}


async def test_collections_and_their_indexes(resources: Resources) -> None:
    db = resources.mongo[resources.settings.mongodb_database]
    for collection, indexes in EXPECTED_INDEXES.items():
        found = {ix["name"]: bool(ix.get("unique")) async for ix in await db[collection].list_indexes()}
        for name, unique in indexes.items():
            assert found.get(name) == unique, f"{collection}: index {name} (unique={unique}) not in {found}"
    names = set(await db.list_collection_names())
    assert names >= set(EXPECTED_INDEXES), names
    assert "SymbolRecord" not in names  # a document class without its Settings falls back to its class name
