"""Protection of personal data at rest (LGPD art. 46).

Customer names, customer ids and reviewers' free text are stored encrypted with Fernet
(`cryptography`: AES-128-CBC with an HMAC-SHA256 tag, a fresh IV per value), so that a copy of the
database reveals none of them. The customer id is also stored as a keyed hash (HMAC-SHA256), so that
a data-subject request can find every record about a customer without decrypting them all.

The keys live in one JSON file (mode 0600), outside the database:

    {"encryption_keys": ["<newest Fernet key>", "<older>", ...], "hash_key": "<base64, 32 bytes>"}

`make run` generates it under var/ on first start; Kubernetes mounts it from a Secret. New values
are encrypted under the first key; any listed key decrypts. `python -m evaluation_api.privacy.key_rotation rotate`
puts a new key first and re-encrypts every stored value; `... keys retire` drops the old ones once
no value needs them (docs/ARCHITECTURE.md, "Protection at rest").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from evaluation_api.secret_files import write_secret_file

HASH_KEY_BYTES = 32


class DataKeyError(RuntimeError):
    """The key file is missing, unreadable or malformed, or a stored value cannot be decrypted with it."""


@dataclass(frozen=True)
class KeyMaterial:
    """What the key file holds: the encryption keys, newest (primary) first, and the hash key."""

    encryption_keys: tuple[str, ...]
    hash_key: str

    @classmethod
    def generate(cls) -> KeyMaterial:
        return cls(
            encryption_keys=(Fernet.generate_key().decode("ascii"),),
            hash_key=base64.urlsafe_b64encode(secrets.token_bytes(HASH_KEY_BYTES)).decode("ascii"),
        )

    @classmethod
    def parse(cls, text: str, *, source: str) -> KeyMaterial:
        try:
            data = json.loads(text)
            keys = tuple(str(k) for k in data["encryption_keys"])
            hash_key = str(data["hash_key"])
            for key in keys:
                Fernet(key)  # raises on a malformed key
            if not keys:
                raise ValueError("encryption_keys is empty")
            if len(base64.urlsafe_b64decode(hash_key)) < HASH_KEY_BYTES:
                raise ValueError(f"hash_key must be at least {HASH_KEY_BYTES} bytes")
        except (ValueError, KeyError, TypeError) as exc:
            raise DataKeyError(f"{source}: not a valid key file ({type(exc).__name__}: {exc})") from None
        return cls(encryption_keys=keys, hash_key=hash_key)

    def dumps(self) -> str:
        return json.dumps({"encryption_keys": list(self.encryption_keys), "hash_key": self.hash_key}, indent=2) + "\n"

    def with_new_primary(self) -> KeyMaterial:
        return KeyMaterial((Fernet.generate_key().decode("ascii"), *self.encryption_keys), self.hash_key)

    def primary_only(self) -> KeyMaterial:
        return KeyMaterial(self.encryption_keys[:1], self.hash_key)


def write_key_file(path: Path, material: KeyMaterial, *, replace: bool) -> bool:
    """Write the key file atomically, readable by its owner only (0600). With replace=False, an
    existing file wins (two processes starting at once agree on one key): returns False then."""
    return write_secret_file(path, material.dumps(), replace=replace)


def read_key_file(path: Path) -> KeyMaterial:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataKeyError(f"cannot read the data key file {path}: {exc.strerror}") from None
    return KeyMaterial.parse(text, source=str(path))


def load_data_keys(*, content: str | None, path: Path, create: bool) -> DataKeys:
    """The keys from `content` (the key file's JSON, e.g. an environment variable) when given, else
    from the file at `path` (generated first if `create` and missing)."""
    if content is not None:
        return DataKeys(KeyMaterial.parse(content, source="DATA_KEYS"))
    return DataKeys.from_file(path, create=create)


class DataKeys:
    """Encrypts and decrypts personal values and hashes customer ids, with the keys of one key file.

    A value that none of the loaded keys decrypts makes it re-read the file once (another process
    may have rotated the keys since this one started), as a JWKS client does on an unknown `kid`.
    """

    def __init__(self, material: KeyMaterial, *, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._load(material)

    @classmethod
    def from_file(cls, path: Path, *, create: bool = False) -> DataKeys:
        """Load the key file; with create=True, generate it first if it does not exist (first start)."""
        if create and not path.exists():
            write_key_file(path, KeyMaterial.generate(), replace=False)
        return cls(read_key_file(path), path=path)

    def _load(self, material: KeyMaterial) -> None:
        self.material = material
        self._fernet = MultiFernet([Fernet(k) for k in material.encryption_keys])
        self._primary = Fernet(material.encryption_keys[0])
        self._hash_key = base64.urlsafe_b64decode(material.hash_key)

    def reload(self) -> bool:
        """Re-read the key file; True if its keys changed."""
        if self._path is None:
            return False
        material = read_key_file(self._path)
        with self._lock:
            if material == self.material:
                return False
            self._load(material)
        return True

    def encrypt(self, text: str) -> str:
        return self._primary.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            if self.reload():
                return self.decrypt(token)
            raise DataKeyError("a stored value cannot be decrypted with the configured data keys") from None

    def encrypt_json(self, value: Any) -> str:
        return self.encrypt(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def decrypt_json(self, token: str) -> Any:
        return json.loads(self.decrypt(token))

    def reencrypt(self, token: str) -> str:
        """The same value under the primary key (MultiFernet.rotate); unchanged if it already is."""
        try:
            if self._primary_decrypts(token):
                return token
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise DataKeyError("a stored value cannot be decrypted with the configured data keys") from None

    def _primary_decrypts(self, token: str) -> bool:
        try:
            self._primary.decrypt(token.encode("ascii"))
        except InvalidToken:
            return False
        return True

    def customer_hash(self, customer_id: str) -> str:
        """The keyed hash that record look-ups by customer id use (HMAC-SHA256, hex)."""
        return hmac.new(self._hash_key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def protect_customer(self, *, name: str, customer_id: str | None) -> dict[str, str | None]:
        """The evaluation record's columns for a customer: encrypted name and id, hashed id."""
        return {
            "customer_name": self.encrypt(name),
            "customer_id": self.encrypt(customer_id) if customer_id is not None else None,
            "customer_id_hash": self.customer_hash(customer_id) if customer_id is not None else None,
        }
