"""The demo data set through the registry services, on both databases."""

from __future__ import annotations

from sqlalchemy import func, select

from idnode import demo
from registry import schema, store
from registry.services import Registry
from tests.factories import ADMIN_AK, ADMIN_SK


async def test_seed_is_complete_linked_and_resumable(registry: Registry) -> None:
    admin = (ADMIN_AK, ADMIN_SK)
    first = await demo.seed(registry, enterprises=5, identifiers=200, admin=admin)
    assert (first.enterprises, first.modes, first.identifiers, first.seeded) == (5, 5, 200, True)
    # A larger target resumes instead of failing on what is already there.
    second = await demo.seed(registry, enterprises=6, identifiers=240, admin=admin)
    assert (second.enterprises, second.identifiers, second.seeded) == (6, 240, True)
    kept = await demo.seed(registry, enterprises=6, identifiers=240, admin=admin)
    assert not kept.seeded
    async with registry.services.read() as conn:
        product = await store.get_identifier(
            conn, demo.example_handle(demo.demo_enterprises(1)[0], 1)
        )
        assert product is not None
        values = {v.type: v for v in product.values}
        # Traceability records link to their batch, and the batch exists.
        batch = values["parentBatch"].data.decode()
        assert await store.get_identifier(conn, batch) is not None
        assert not values["inspector"].public  # restricted by the template
        templates = (
            await conn.execute(select(func.count()).select_from(schema.templates))
        ).scalar_one()
    assert templates == 6
    assert await registry.verify_audit() == []


def test_credit_codes_of_demo_enterprises_are_valid() -> None:
    from registry.services.enterprises import check_credit_code

    enterprises = demo.demo_enterprises(32)
    assert len({e.credit_code for e in enterprises}) == 32
    assert all(check_credit_code(e.credit_code) == e.credit_code for e in enterprises)
    assert len({e.mode.key for e in enterprises}) == 5
