#!/usr/bin/env python3
"""Creates a development RSA-2048 signing key pair in DIR (default .dev/) unless one exists.

The private key is written with mode 0600 as signing-key.pem (PKCS#8) and its public half as
signing-key.pub.pem. DIR is git-ignored: no key is ever committed.
"""
import os
import pathlib
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".dev")
private = out / "signing-key.pem"
public = out / "signing-key.pub.pem"
if private.exists() and public.exists():
    sys.exit(0)
out.mkdir(parents=True, exist_ok=True)
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
print(f"created development signing key in {out}/ (git-ignored)")
