"""Task output files in an S3-compatible bucket: moto's S3 server (ThreadedMotoServer) on
127.0.0.1, started by the test, spoken to over HTTP by boto3 exactly as a real bucket is."""
from __future__ import annotations

import re
import uuid

import aiohttp
import boto3
import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer

from reapi.media import delete_expired, media_app, open_store, save_outputs
from reapi.media.s3 import S3Store, parse_s3_url
from reapi.mock_upstream import media as files
from reapi.settings import Settings, SettingsError
from tests.media.servers import file_host, serve_asgi
from tests.media.test_media_local import Out


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch, tmp_path):
    """A fresh bucket; credentials only from the AWS_* variables (no profile file is read)."""
    for k, v in {"AWS_ACCESS_KEY_ID": "test-access", "AWS_SECRET_ACCESS_KEY": "test-secret",
                 "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                 "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = "media-" + uuid.uuid4().hex[:12]
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    yield name, client
    client.close()


def _keys(client, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", ()))


async def test_put_get_delete_under_the_urls_prefix(bucket, s3_endpoint):
    name, client = bucket
    store = S3Store(f"s3://{name}/reapi/prod?endpoint={s3_endpoint}&region=us-east-1")
    png, mp4 = files.png(), files.mp4()
    await store.put("tasks/task_a/0.png", png, "image/png")
    await store.put("tasks/task_a/1.mp4", mp4, "video/mp4")
    await store.put("tasks/task_b/0.png", png, "image/png")
    assert _keys(client, name) == ["reapi/prod/tasks/task_a/0.png", "reapi/prod/tasks/task_a/1.mp4",
                                   "reapi/prod/tasks/task_b/0.png"]
    head = client.head_object(Bucket=name, Key="reapi/prod/tasks/task_a/1.mp4")
    assert head["ContentType"] == "video/mp4" and head["ContentLength"] == len(mp4)
    assert await store.get("tasks/task_a/0.png") == (png, "image/png")
    assert await store.get("tasks/task_a/1.mp4") == (mp4, "video/mp4")
    assert await store.get("tasks/task_a/9.png") is None
    assert await store.delete_prefix("tasks/task_a/") == 2
    assert _keys(client, name) == ["reapi/prod/tasks/task_b/0.png"]
    with pytest.raises(ValueError):
        await store.get("tasks/../x/0.png")
    with pytest.raises(ValueError):
        await store.delete_prefix("tasks/")
    store.close()


async def test_retention_deletes_more_than_a_page_of_keys(bucket, s3_endpoint):
    name, client = bucket
    store = S3Store(f"s3://{name}?endpoint={s3_endpoint}&region=us-east-1", page_size=10)
    # one task with 25 objects written straight to the bucket: three pages of a listing
    for n in range(25):
        client.put_object(Bucket=name, Key=f"tasks/task_big/{n}.png", Body=b"x")
    await store.put("tasks/task_keep/0.png", files.png(), "image/png")
    await store.put("tasks/task_old/0.png", files.png(), "image/png")
    assert await delete_expired(store, ["task_big", "task_old"]) == 26
    assert _keys(client, name) == ["tasks/task_keep/0.png"]
    store.close()


async def test_save_outputs_into_the_bucket_and_serve_them(bucket, s3_endpoint, monkeypatch):
    name, client = bucket
    monkeypatch.setenv("REAPI_MEDIA_S3_URL", f"s3://{name}/m?endpoint={s3_endpoint}&region=us-east-1")
    store = open_store(Settings.from_env())
    assert isinstance(store, S3Store)
    wav = files.wav()

    async def song(request):
        return web.Response(body=wav)

    async with file_host({"/song": song}) as (base, _), aiohttp.ClientSession() as session:
        saved = await save_outputs(store, session, "task_S3", [Out(url=base + "/song", kind="audio"),
                                                               Out(data=files.png())],
                                   public_base="http://gw", max_bytes=1 << 20)
    assert [f.url for f in saved] == ["http://gw/media/tasks/task_S3/0.wav", "http://gw/media/tasks/task_S3/1.png"]
    assert _keys(client, name) == ["m/tasks/task_S3/0.wav", "m/tasks/task_S3/1.png"]
    async with serve_asgi(media_app(store)) as gw, aiohttp.ClientSession() as s:
        async with s.get(gw + "/media/tasks/task_S3/0.wav") as r:
            assert r.status == 200 and r.headers["content-type"] == "audio/wav" and await r.read() == wav
        async with s.get(gw + "/media/tasks/task_S3/2.png") as r:
            assert r.status == 404
    store.close()


@pytest.mark.parametrize("url, problem", [
    ("http://bucket/x", "must look like s3://"), ("s3:///x", "must look like s3://"),
    ("s3://AKIA:secret@bucket/x", "must not carry credentials"),
    ("s3://bucket?endpoint=ftp://h", "endpoint= must be an http(s) URL"),
    ("s3://bucket?secret_key=x", "unknown parameters: secret_key"),
    ("s3://Bad_Bucket/x", "bucket name"), ("s3://bucket:99/x", "bucket name"),
])
def test_bad_s3_urls_stop_start_up(url, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_s3_url(url)
    with pytest.raises(SettingsError, match=re.escape(problem)):
        Settings.from_env({"REAPI_MEDIA_S3_URL": url})


def test_s3_url_parts():
    loc = parse_s3_url("s3://b-1/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-1")
    assert (loc.bucket, loc.prefix, loc.endpoint, loc.region) == ("b-1", "a/b/", "http://127.0.0.1:9000", "eu-west-1")
    assert parse_s3_url("s3://bkt").prefix == "" and parse_s3_url("s3://bkt").endpoint is None
