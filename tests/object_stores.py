"""Local servers speaking the object stores' real protocols, for the object connector tests.

S3 cannot run here, so `moto` serves the S3 API (and IAM) in server mode on a free port
of 127.0.0.1: the fixture creates an IAM user with an access key and an `s3:*` policy, the
test buckets and objects, then turns moto's request authentication on, so a wrong secret
key is refused with `SignatureDoesNotMatch` as AWS would. Azure Blob Storage is Microsoft's
`azurite` emulator (npm, tests/emulators/package.json, installed by scripts/test-deps.sh
with `npm ci`), in memory on a free port, with its well-known development account.
Both stop with the fixture.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from azure.storage.blob import BlobServiceClient
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer

EMULATORS = Path(__file__).parent / "emulators"
AZURITE = EMULATORS / "node_modules" / ".bin" / "azurite-blob"
# Azurite's development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# What each store holds at the start: a bucket with reports and a private bucket.
OBJECTS = {
    ("docs", "reports/q1.txt"): b"q1 revenue: 10",
    ("docs", "reports/q2.txt"): b"q2 revenue: 20",
    ("docs", "reports/q3.txt"): b"q3 revenue: 30",
    ("docs", "drafts/plan.txt"): b"a plan",
    ("docs", "big.bin"): bytes(range(256)) * 40,  # 10240 bytes, not UTF-8
    ("secret", "payroll.csv"): b"ada,100000",
}
BUCKETS = ("docs", "secret", "inbox")
_S3_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    url: str
    access_key_id: str
    secret_access_key: str

    def read(self, bucket: str, key: str) -> bytes | None:
        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )
        try:
            body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return body


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Server]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        # moto's backends and its authentication switch are global to the process.
        httpx.post(f"{url}/moto-api/reset").raise_for_status()
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
        setup = {
            "endpoint_url": url,
            "region_name": "us-east-1",
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
        }
        iam = boto3.client("iam", **setup)  # type: ignore[call-overload]
        iam.create_user(UserName="connector")
        iam.put_user_policy(UserName="connector", PolicyName="s3-all", PolicyDocument=_S3_ALL)
        key = iam.create_access_key(UserName="connector")["AccessKey"]
        s3 = boto3.client("s3", **setup)  # type: ignore[call-overload]
        for bucket in BUCKETS:
            s3.create_bucket(Bucket=bucket)
        for (bucket, name), content in OBJECTS.items():
            s3.put_object(Bucket=bucket, Key=name, Body=content, ContentType="text/plain")
        # From now on every request is signed and checked against IAM, as at AWS.
        httpx.post(f"{url}/moto-api/reset-auth", content=b"0").raise_for_status()
        yield S3Server(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.stop()


@dataclass(frozen=True)
class AzuriteServer:
    url: str  # the account URL: http://127.0.0.1:<port>/devstoreaccount1
    account_name: str
    account_key: str

    def read(self, container: str, name: str) -> bytes | None:
        blob = self._client().get_blob_client(container, name)
        if not blob.exists():
            return None
        return blob.download_blob().readall()

    def _client(self) -> BlobServiceClient:
        return BlobServiceClient(
            self.url,
            credential={"account_name": self.account_name, "account_key": self.account_key},
        )


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    if not AZURITE.exists():
        pytest.fail(
            f"azurite is not installed at {AZURITE}: run scripts/test-deps.sh "
            "(it runs `npm ci` in tests/emulators)"
        )
    port = free_port()
    home = tmp_path_factory.mktemp("azurite")
    log = (home / "azurite.log").open("wb")
    process = subprocess.Popen(
        [
            str(AZURITE),
            "--inMemoryPersistence",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--skipApiVersionCheck",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=home,  # whatever it writes besides memory
    )
    server = AzuriteServer(
        f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}", AZURITE_ACCOUNT, AZURITE_KEY
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"azurite did not start: {(home / 'azurite.log').read_text()[-2000:]}")
            time.sleep(0.1)
        client = server._client()
        for container in BUCKETS:
            client.create_container(container)
        for (container, name), content in OBJECTS.items():
            client.get_blob_client(container, name).upload_blob(content)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
