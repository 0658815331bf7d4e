"""The playground page: served without a key, each file with its media type, and nothing from elsewhere."""

import re

import pytest

from service.routes.playground import PLAYGROUND_DIR, PLAYGROUND_FILES

# Any absolute or scheme-relative URL: a page that loads one depends on a server other than the API.
EXTERNAL_URL = re.compile(r"https?://|//cdn", re.IGNORECASE)


@pytest.mark.anyio
async def test_the_page_loads_without_a_key_with_its_media_types(client):
    root = await client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/playground"

    page = await client.get("/playground")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]

    script = await client.get("/playground/app.js")
    assert script.status_code == 200 and script.headers["content-type"] == "text/javascript; charset=utf-8"
    style = await client.get("/playground/style.css")
    assert style.status_code == 200 and style.headers["content-type"] == "text/css; charset=utf-8"


@pytest.mark.anyio
async def test_only_the_pages_own_files_are_served(client):
    for name in ("routes.py", "..%2Fapp.py", "missing.js", "%2E%2E%2Fsettings.py"):
        answer = await client.get(f"/playground/{name}")
        assert answer.status_code == 404, name
        assert answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.anyio
async def test_every_file_the_page_uses_is_served_and_names_no_other_server(client):
    # Every file in the folder is one the route serves (none forgotten, none left over).
    assert sorted(p.name for p in PLAYGROUND_DIR.iterdir()) == sorted(PLAYGROUND_FILES)
    page = (await client.get("/playground")).text
    used = [path for path in re.findall(r'(?:src|href)="([^"]+)"', page) if path != "data:,"]  # "no icon"
    assert used, "the page loads no script or style"
    for path in used:
        assert path.startswith("/playground/"), path
        assert path.removeprefix("/playground/") in PLAYGROUND_FILES, path

    for name in PLAYGROUND_FILES:
        body = (await client.get("/playground" if name == "index.html" else f"/playground/{name}")).text
        found = [m.group(0) for m in EXTERNAL_URL.finditer(body)]
        assert not found, f"{name} names an external URL: {found}"
