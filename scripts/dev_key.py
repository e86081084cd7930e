#!/usr/bin/env python3
"""Creates, in DIR (default .dev/), what is missing of a development RSA-2048 signing key pair
and the data key that seals second factors' secrets.

The private key is written with mode 0600 as signing-key.pem (PKCS#8) and its public half as
signing-key.pub.pem; the data key (32 random bytes, AUTH_DATA_KEY) with mode 0600 as data-key.
DIR is git-ignored: no key is ever committed.
"""
import os
import pathlib
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".dev")
private = out / "signing-key.pem"
public = out / "signing-key.pub.pem"
data_key = out / "data-key"
out.mkdir(parents=True, exist_ok=True)
if not data_key.exists():
    fd = os.open(data_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))
    print(f"created development data key in {out}/ (git-ignored)")
if private.exists() and public.exists():
    sys.exit(0)
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
print(f"created development signing key in {out}/ (git-ignored)")
