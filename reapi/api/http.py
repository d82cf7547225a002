"""Moved to reapi.asgi (the call pipeline, reapi.proxy, uses it and may not import reapi.api)."""
from reapi.asgi import (JSON, ClientGone, Receive, Send, bearer, error_headers, header, headers_list,  # noqa: F401
                        read_body, send_bytes, send_error, too_large)
