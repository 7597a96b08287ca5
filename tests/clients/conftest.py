"""One relay process for the whole suite: the built binary, its own redis-server and a
fake upstream on free loopback ports, and two tenants' keys. Tests keep apart by using
their own sessions and by scripting the fake per test."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import httpx
import openai
import pytest

from fake_upstream import FakeUpstream

ACME_KEY = "clients-acme-key-0001"
GLOBEX_KEY = "clients-globex-key-0002"

CONFIG = """
[server]
listen = "127.0.0.1:{port}"
request_timeout_seconds = 10

[store]
redis_url = "redis://127.0.0.1:{redis_port}"
key_prefix = "clients"

[sessions]
default_model = "gpt-fake"

[[auth.keys]]
name = "acme"
tenant = "acme"
key_env = "CLIENTS_ACME_KEY"

[[auth.keys]]
name = "globex"
tenant = "globex"
key_env = "CLIENTS_GLOBEX_KEY"

[routing]
attempt_timeout_ms = 3000
first_token_timeout_ms = 3000
max_retries = 0
breaker_min_requests = 1000

[[providers]]
name = "fake-openai"
kind = "openai"
base_url = "http://127.0.0.1:{fake_port}/v1"

[[providers]]
name = "fake-anthropic"
kind = "anthropic"
base_url = "http://127.0.0.1:{fake_port}"

[[models]]
name = "gpt-fake"
provider = "fake-openai"
context_tokens = 16000
input_usd_per_mtok = 2.0
output_usd_per_mtok = 8.0

[[models]]
name = "gpt-fake-backup"
provider = "fake-openai"
context_tokens = 16000

[[models]]
name = "gpt-chain"
provider = "fake-openai"
context_tokens = 16000
fallbacks = ["gpt-fake-backup"]

[[models]]
name = "claude-fake"
provider = "fake-anthropic"
context_tokens = 16000
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up")


class Relay:
    def __init__(self, base, redis_port, fake):
        self.base = base
        self.redis_port = redis_port
        self.fake = fake
        self.http = httpx.Client(base_url=base, timeout=10)

    def client(self, key=ACME_KEY):
        return openai.OpenAI(api_key=key, base_url=f"{self.base}/v1", max_retries=0, timeout=10)

    def call(self, method, path, json=None, key=ACME_KEY):
        return self.http.request(method, path, json=json, headers={"authorization": f"Bearer {key}"})

    def session(self, **settings):
        reply = self.call("POST", "/v1/sessions", json=settings)
        assert reply.status_code == 201, reply.text
        return reply.json()["session_id"]

    def history(self, session_id, key=ACME_KEY):
        reply = self.call("GET", f"/v1/sessions/{session_id}/messages", key=key)
        assert reply.status_code == 200, reply.text
        return reply.json()["data"]

    def redis(self, *args):
        """A redis-cli command against the relay's private Redis."""
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), *args], check=True,
                             capture_output=True, text=True)
        return out.stdout.split()


@pytest.fixture(scope="session")
def relay():
    binary = os.environ.get("SESSION_RELAY_BIN")
    assert binary and os.path.exists(binary), "SESSION_RELAY_BIN must name the built binary (see ./run)"
    workdir = tempfile.mkdtemp(prefix="sr-clients-")
    redis_port, port = free_port(), free_port()
    redis_server = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fake = FakeUpstream()
    config = os.path.join(workdir, "relay.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(port=port, redis_port=redis_port, fake_port=fake.port))
    env = {**os.environ, "SESSION_RELAY_CONFIG": config, "CLIENTS_ACME_KEY": ACME_KEY,
           "CLIENTS_GLOBEX_KEY": GLOBEX_KEY, "SESSION_RELAY_LOG_LEVEL": "warn"}
    wait_for(lambda: socket.create_connection(("127.0.0.1", redis_port), 1).close() or True, "redis-server")
    log = open(os.path.join(workdir, "relay.log"), "w")
    process = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/readyz", timeout=1).status_code == 200, "the relay")
        yield Relay(base, redis_port, fake)
    finally:
        process.terminate()
        process.wait(10)
        redis_server.terminate()
        redis_server.wait(10)
        fake.close()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def fake(relay):
    relay.fake.reset()
    return relay.fake


@pytest.fixture
def client(relay):
    return relay.client()
