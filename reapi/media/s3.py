"""Media files in an S3-compatible bucket (REAPI_MEDIA_S3_URL), through boto3 in a thread.

The URL names the bucket and an optional key prefix, and may carry the endpoint of a
non-AWS server and the region:

    s3://BUCKET/PREFIX?endpoint=http://127.0.0.1:9000&region=us-east-1

Credentials are boto3's usual ones (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_SESSION_TOKEN, a profile, an instance role); they are never part of the URL. Keys use
path-style addressing so any S3-compatible server works. Each call has bounded connect and
read timeouts and few retries. boto3 is imported only when an S3 store is opened.
"""
from __future__ import annotations

import asyncio
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from reapi.media.keys import check_key, check_prefix
from reapi.media.sniff import BY_EXT


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"
    endpoint: str | None
    region: str | None


def parse_s3_url(url: str) -> S3Location:
    """The parts of an s3:// URL; ValueError naming what is wrong (never echoing the URL)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or not parts.hostname:
        raise ValueError("REAPI_MEDIA_S3_URL must look like s3://BUCKET/PREFIX?endpoint=...&region=...")
    if parts.username or parts.password:
        raise ValueError("REAPI_MEDIA_S3_URL must not carry credentials: use the AWS_* environment variables")
    if not _BUCKET.fullmatch(parts.netloc):
        raise ValueError("REAPI_MEDIA_S3_URL has an invalid bucket name (3-63 of a-z 0-9 . -)")
    query = urllib.parse.parse_qs(parts.query)
    unknown = set(query) - {"endpoint", "region"}
    if unknown:
        raise ValueError(f"REAPI_MEDIA_S3_URL has unknown parameters: {', '.join(sorted(unknown))}")
    endpoint = query.get("endpoint", [None])[-1]
    if endpoint is not None and urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError("REAPI_MEDIA_S3_URL endpoint= must be an http(s) URL")
    prefix = parts.path.strip("/")
    return S3Location(bucket=parts.netloc, prefix=prefix + "/" if prefix else "",
                      endpoint=endpoint, region=query.get("region", [None])[-1])


class S3Store:
    def __init__(self, url: str, *, timeout_s: float = 30, page_size: int = 1000) -> None:
        import boto3
        from botocore.config import Config

        self.location = loc = parse_s3_url(url)
        self.page_size = page_size  # keys listed (and deleted) per request; 1,000 is S3's most
        config = Config(connect_timeout=min(10, timeout_s), read_timeout=timeout_s,
                        retries={"max_attempts": 3, "mode": "standard"},
                        s3={"addressing_style": "path"}, signature_version="s3v4")
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=loc.endpoint, region_name=loc.region, config=config)

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.location.bucket!r}, prefix={self.location.prefix!r})"

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        check_key(key)
        self._client.put_object(Bucket=self.location.bucket, Key=self.location.prefix + key, Body=data,
                                ContentType=content_type)

    def _get(self, key: str) -> tuple[bytes, str] | None:
        check_key(key)
        try:
            obj = self._client.get_object(Bucket=self.location.bucket, Key=self.location.prefix + key)
        except self._client.exceptions.NoSuchKey:
            return None
        with obj["Body"] as body:
            data = body.read()
        # the type is the one of the name it was stored under, whatever the bucket says
        return data, BY_EXT[key.rsplit(".", 1)[-1]].content_type

    def _delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        n = 0
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.prefix + prefix,
                                       PaginationConfig={"PageSize": self.page_size}):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", ())]
            if objects:
                self._client.delete_objects(Bucket=self.location.bucket,
                                            Delete={"Objects": objects, "Quiet": True})
                n += len(objects)
        return n

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, data, content_type)

    async def get(self, key: str) -> tuple[bytes, str] | None:
        return await asyncio.to_thread(self._get, key)

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, prefix)

    def close(self) -> None:
        self._client.close()
