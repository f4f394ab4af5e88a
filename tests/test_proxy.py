"""The redirect proxy and the lookup page: over HTTP, and in a real headless browser."""

from __future__ import annotations

import shutil

import pytest

from registry.models import PERM_RESTRICTED
from registry.services import Actor, Registry
from tests.conftest import ApiClient
from tests.factories import handle_value as text_value
from tests.factories import hosted_enterprise

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def traceability(registry: Registry, admin: Actor) -> tuple[str, str, str]:
    """A product linked to its batch and to a part of another enterprise."""
    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    supplier = await hosted_enterprise(registry, admin, 2, prefix="88.100.2")
    batch, part, product = f"{prefix}/BATCH-7", f"{supplier}/PART-9", f"{prefix}/SN-42"
    await registry.handles.create(
        admin, batch, [text_value(1, "DESC", "生产批次 7")], overwrite=False
    )
    await registry.handles.create(admin, part, [text_value(1, "DESC", "轴承")], overwrite=False)
    await registry.handles.create(
        admin,
        product,
        [
            text_value(1, "URL", "https://example.org/products/42"),
            text_value(2, "productName", "<script>alert('x')</script>"),
            text_value(3, "parentBatch", batch),
            text_value(4, "parts", f"{part},{batch}"),
            text_value(5, "inspector", "QC-007", permissions=PERM_RESTRICTED),
        ],
        overwrite=False,
    )
    return product, batch, part


async def test_redirects_to_the_url_value(api: ApiClient, registry: Registry, admin: Actor) -> None:
    product, batch, _ = await traceability(registry, admin)
    async with api.session.get(f"{api.base}/{product}", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "https://example.org/products/42"
    # No URL value: the page instead of a redirect.
    async with api.session.get(f"{api.base}/{batch}", allow_redirects=False) as resp:
        assert resp.status == 200 and "生产批次 7" in await resp.text()
    async with api.session.get(f"{api.base}/88.100.1/none", allow_redirects=False) as resp:
        assert resp.status == 404 and "not found" in await resp.text()
    async with api.session.get(f"{api.base}/88.300/x", allow_redirects=False) as resp:
        assert resp.status == 404 and "not served here" in await resp.text()
    async with api.session.get(f"{api.base}/88.100.1/%FF", allow_redirects=False) as resp:
        assert resp.status == 400
    async with api.session.get(f"{api.base}/88..1/x", allow_redirects=False) as resp:
        assert resp.status == 400 and "Invalid identifier" in await resp.text()


async def test_page_shows_values_owner_links_and_escapes(
    api: ApiClient, registry: Registry, admin: Actor
) -> None:
    product, batch, part = await traceability(registry, admin)
    async with api.session.get(f"{api.base}/{product}?noredirect") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        page = await resp.text()
    assert "测试企业1有限公司" in page and "https://example.org/products/42" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert f'href="/{batch}?noredirect"' in page and f'href="/{part}?noredirect"' in page
    assert "QC-007" not in page  # restricted values stay hidden
    async with api.session.get(f"{api.base}/") as resp:
        home = await resp.text()
        assert '<input type="text" name="handle"' in home
    async with api.session.get(f"{api.base}/?handle={product}") as resp:
        assert "https://example.org/products/42" in await resp.text()


async def test_lookup_page_in_a_real_browser(
    api: ApiClient, registry: Registry, admin: Actor
) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing; scripts/test.sh installs Debian's chromium")
    from playwright.async_api import async_playwright

    product, batch, part = await traceability(registry, admin)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{api.base}/")
            await page.fill("#handle", product)
            await page.click("#lookup")
            await page.wait_for_selector("#values")
            assert await page.inner_text("#record-name") == product
            assert "测试企业1有限公司" in await page.inner_text("#owner")
            table = await page.inner_text("#values")
            assert "https://example.org/products/42" in table
            assert "<script>alert('x')</script>" in table  # shown as text, not run
            linked = await page.inner_text("#linked")
            assert batch in linked and part in linked
            await page.click(f"#linked a[href='/{batch}?noredirect']")
            await page.wait_for_selector("#record-name")
            assert await page.inner_text("#record-name") == batch
            assert "生产批次 7" in await page.inner_text("#values")
            await page.fill("#handle", "88.100.1/missing")
            await page.click("#lookup")
            await page.wait_for_selector("#verdict")
            assert "not found" in await page.inner_text("#verdict")
        finally:
            await browser.close()


async def test_names_with_newlines_get_the_error_page(api: ApiClient) -> None:
    async with api.session.get(f"{api.base}/88.100.1/a%0Ab", allow_redirects=False) as resp:
        assert resp.status == 400 and resp.content_type == "text/html"
