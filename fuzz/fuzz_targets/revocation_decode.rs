//! Fuzzes the revocation-list decoders: nothing may panic, and whatever is accepted
//! re-encodes to exactly the bytes that were accepted.
#![no_main]

use coset::{CoseSign1, TaggedCborSerializable};
use kaching_core::{
    armor, envelope, verify_revocation_list, DocKind, PublicKey, RevocationList, SecretKey,
    TrustedKeys,
};
use libfuzzer_sys::fuzz_target;

/// The fixture vendor key (public test material, see fixtures/README.md).
const VENDOR_SEED: &[u8; 32] = b"KACHING TEST-ONLY vendor key 001";
const VENDOR_PUB: &str = include_str!("../../fixtures/keys/vendor-test.pub");

fuzz_target!(|data: &[u8]| {
    let Ok(key) = PublicKey::from_pem(VENDOR_PUB) else {
        return;
    };
    let keys = TrustedKeys::from(key);

    // 1. The whole document, either spelling, as the verifier reads it.
    if let Ok(v) = verify_revocation_list(data, &keys) {
        let opened = envelope::open(&v.bytes, DocKind::RevocationList, &keys)
            .expect("accepted bytes open again");
        assert_eq!(
            v.list.to_cbor(),
            opened.payload,
            "payload re-encodes identically"
        );
        if !armor::is_armored(data) {
            assert_eq!(v.bytes, data, "accepted binary is kept byte for byte");
        }
        let armored = armor::armor(DocKind::RevocationList, &v.bytes);
        let again =
            verify_revocation_list(armored.as_bytes(), &keys).expect("armored spelling verifies");
        assert_eq!(again.bytes, v.bytes, "armored -> binary round trip");
    }

    // 2. The claims decoder, reached through any COSE_Sign1-shaped input
    //    (signature not checked here) and on the raw input itself.
    let payload = CoseSign1::from_tagged_slice(data)
        .ok()
        .and_then(|s| s.payload);
    for candidate in [payload.as_deref(), Some(data)].into_iter().flatten() {
        if let Ok(list) = RevocationList::from_cbor(candidate) {
            assert_eq!(list.to_cbor(), candidate, "decode -> encode is identity");
            // A decodable payload, once signed, verifies to the same claims.
            let signed = list.sign(&SecretKey::from_seed(VENDOR_SEED));
            let back = verify_revocation_list(&signed, &keys);
            if signed.len() <= kaching_core::MAX_DOCUMENT_SIZE {
                assert_eq!(back.expect("signed payload verifies").list, list);
            }
        }
    }
});
