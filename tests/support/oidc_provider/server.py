"""Start the test OpenID Connect provider as its own process (Django's runserver on a free port, a fresh
SQLite database and a fresh RSA signing key), seed it, stop it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.servers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = "tests.support.oidc_provider.settings"


class OidcProvider:
    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.base}/o"
        self.dir = Path(tempfile.mkdtemp(prefix="oidc-provider-"))
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
        env.update(
            DJANGO_SETTINGS_MODULE=SETTINGS,
            OIDC_PROVIDER_DB=str(self.dir / "provider.sqlite3"),
            OIDC_PROVIDER_RSA_KEY_FILE=str(self.dir / "signing-key.pem"),
            OIDC_PROVIDER_ISSUER=self.issuer,
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        )
        return env

    def endpoints(self) -> dict[str, str]:
        """The platform's OIDC_* settings for this provider, read from its discovery document."""
        found = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).json()
        return {
            "OIDC_OP_ISSUER": found["issuer"],
            "OIDC_OP_AUTHORIZATION_ENDPOINT": found["authorization_endpoint"],
            "OIDC_OP_TOKEN_ENDPOINT": found["token_endpoint"],
            "OIDC_OP_USER_ENDPOINT": found["userinfo_endpoint"],
            "OIDC_OP_JWKS_ENDPOINT": found["jwks_uri"],
        }

    def start(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (self.dir / "signing-key.pem").write_bytes(pem)
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, timeout=30, what=f"the OIDC provider on {self.base} (log: {self.log})")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the OIDC provider exited:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.issuer}/.well-known/jwks.json", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def seed(self, spec: dict) -> None:
        """Register the client and set people's passwords and groups (see seed.py)."""
        subprocess.run(
            [sys.executable, "-m", "tests.support.oidc_provider.seed", json.dumps(spec)],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
