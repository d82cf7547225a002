"""The gateway serves /media/... from the media directory beside its SQLite file (the default)."""
from __future__ import annotations

from reapi.media import media_dir
from reapi.media.local import LocalStore
from reapi.mock_upstream import media as files


async def test_the_gateway_serves_stored_files_at_media(gateway, tmp_path):
    assert media_dir(gateway.settings) == tmp_path / "media"
    png = files.png(4, 4)
    await LocalStore(tmp_path / "media").put("tasks/task_G/0.png", png, "image/png")
    async with gateway.http.get(gateway.url + "/media/tasks/task_G/0.png") as r:
        assert r.status == 200 and await r.read() == png
        assert r.headers["content-type"] == "image/png" and r.headers["x-content-type-options"] == "nosniff"
        assert len(r.headers.getall("x-request-id")) == 1
    async with gateway.http.get(gateway.url + "/media/tasks/task_G/1.png") as r:
        assert r.status == 404 and len(r.headers.getall("x-request-id")) == 1
    async with gateway.http.get(gateway.url + "/media/../reapi.db") as r:
        assert r.status == 404
