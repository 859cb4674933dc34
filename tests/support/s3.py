"""An S3 for tests: moto's server on 127.0.0.1 and a free port, reached the way a real run reaches MinIO or
AWS: through the standard environment (AWS_ENDPOINT_URL and credentials), which child processes inherit."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from swirl.system import free_port


@contextmanager
def moto_s3() -> Iterator[str]:
    """Run moto's S3 server while the block runs, with this process's AWS environment pointing at it; yields
    the endpoint URL."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        S3FileSystem.clear_instance_cache()  # an instance made for another endpoint must not be reused
        try:
            yield endpoint
        finally:
            S3FileSystem.clear_instance_cache()
            server.stop()


def fresh_bucket_url() -> str:
    """A store root in a bucket no other test uses (the store creates the bucket)."""
    return f"s3://swirl-{uuid.uuid4().hex[:12]}/store"


def child_env() -> dict[str, str]:
    """The environment for a child process: this one's (the AWS settings included), with the project first
    on the path."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {**os.environ, "PYTHONPATH": root}
