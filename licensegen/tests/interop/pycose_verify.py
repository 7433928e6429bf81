"""Verify KACHING documents with stock pycose, as a third-party integrator would.

    python pycose_verify.py VENDOR_PUB_PEM DOCUMENT...

Each DOCUMENT (binary COSE_Sign1, or the armored text spelling) must decode
with pycose's Sign1Message.decode and verify against the vendor's SPKI public
key; two tampered copies of it (a payload byte, a signature bit) must not.
Prints one line per document and exits non-zero on the first failure.
Run by licensegen/tests/cli/interop.rs in a venv with pycose==1.1.0.
"""

import base64
import sys

from cryptography.hazmat.primitives import serialization
from pycose.headers import Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message


def raw_public_key(pem_path):
    """The raw 32-byte Ed25519 key from an SPKI PEM file (vendor.pub)."""
    with open(pem_path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    return key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def binary(path):
    """The COSE_Sign1 bytes of a document in either spelling."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.lstrip()
    if not text.startswith(b"-----BEGIN "):
        return data
    lines = [l.strip() for l in text.decode("ascii").splitlines()]
    body = [l for l in lines if l and not l.startswith("-----")]
    return base64.b64decode("".join(body), validate=True)


def verifies(data, x):
    """True when stock pycose decodes the bytes and the signature verifies."""
    try:
        msg = Sign1Message.decode(data)
        msg.key = OKPKey(crv=Ed25519, x=x)
        return msg.verify_signature() is True
    except Exception:  # a refusal of any kind counts as "does not verify"
        return False


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    x = raw_public_key(argv[1])
    for path in argv[2:]:
        data = binary(path)
        try:
            msg = Sign1Message.decode(data)
        except Exception as e:
            print(f"FAIL {path}: stock pycose cannot decode it: {e}")
            return 1
        alg = msg.phdr.get(Algorithm)
        alg = f"{alg.fullname} {alg.identifier}" if alg else "none"
        if not verifies(data, x):
            print(f"FAIL {path}: stock pycose does not verify it (alg {alg})")
            return 1
        # A payload byte changed: the payload's last byte sits just before the
        # 64-byte signature and its 2-byte head.
        payload_at = len(data) - 64 - 2 - 1
        assert data[payload_at] == msg.payload[-1], "unexpected layout"
        tampered_payload = bytearray(data)
        tampered_payload[payload_at] ^= 0x01
        tampered_signature = bytearray(data)
        tampered_signature[-1] ^= 0x01
        for name, bad in [
            ("payload", tampered_payload),
            ("signature", tampered_signature),
        ]:
            if verifies(bytes(bad), x):
                print(f"FAIL {path}: a copy with a tampered {name} verifies")
                return 1
        print(f"ok {path}: verified by pycose (alg {alg}); tampered copies refused")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
