//! The root of trust (DESIGN §8, docs/format.md "Root document"): which
//! vendor keys exist, which role each may play (`root`, `issuer`, `revoker`,
//! `relay`) and how many of them must sign; and the rules by which one root
//! replaces another.
//!
//! A root is a COSE_Sign (RFC 9052 §4.1, CBOR tag 98): one payload, any
//! number of Ed25519 signatures, each naming its key's kid. Root N+1 is
//! trusted only when a threshold of root N's *root* keys and a threshold of
//! its own root keys signed it, and only one version at a time, so a key
//! that leaks can be rotated out without reissuing anything, and a key that
//! is no longer in a role signs nothing that counts.
//!
//! Checking order is part of the security argument: size limit, envelope
//! shape and canonical form, then the trusted root's threshold over the
//! received bytes, and only then the new payload (whose own threshold is
//! checked last).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use coset::{
    iana, CborSerializable, ContentType, CoseSign, CoseSignBuilder, CoseSignature,
    CoseSignatureBuilder, HeaderBuilder, TaggedCborSerializable,
};

use crate::cbor::{Key, Reader, Writer};
use crate::doc_kind::{DocKind, MAX_DOCUMENT_SIZE};
use crate::error::{Error, Result};
use crate::keys::{Kid, PublicKey, SecretKey, TrustedKeys};
use crate::time::{rfc3339, Timestamp};

/// CWT claim keys used by the root payload.
const ISS: i64 = 1;
const IAT: i64 = 6;

/// At most this many signatures are looked at: a root with more is refused
/// before any is checked (endless data costs nothing).
pub const MAX_SIGNATURES: usize = 64;

/// At most this many keys in one root.
pub const MAX_KEYS: usize = 64;

/// What a key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Signs new roots (k of n, offline, held by different people).
    Root,
    /// Signs licenses (offline).
    Issuer,
    /// Signs revocation lists: it can only restrict, so it may live online.
    Revoker,
    /// Signs the relay's time statements.
    Relay,
}

impl Role {
    /// Every role, in the order the payload writes them.
    pub const ALL: [Role; 4] = [Role::Root, Role::Relay, Role::Issuer, Role::Revoker];

    /// The spelling in documents and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Issuer => "issuer",
            Role::Revoker => "revoker",
            Role::Relay => "relay",
        }
    }

    fn from_bytes(b: &[u8]) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str().as_bytes() == b)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Role::from_bytes(s.as_bytes())
            .ok_or_else(|| format!("unknown role {s:?}: use root, issuer, revoker or relay"))
    }
}

/// The keys of one role and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeys {
    /// Kids of the keys in this role, ascending.
    pub kids: Vec<Kid>,
    /// How many distinct keys of the role must sign (1 ≤ threshold ≤ kids).
    pub threshold: u32,
}

/// A root's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// `iss`: the vendor.
    pub issuer: String,
    /// `version`: 1 for the first root, then exactly one more per rotation.
    pub version: u64,
    /// `iat`: when it was made.
    pub issued_at: Timestamp,
    /// `expires`: a root past this is refused as a *new* root (a freeze
    /// shows); the root already trusted keeps verifying (docs/format.md).
    pub expires: Timestamp,
    /// Every key any role names, ascending by kid.
    pub keys: Vec<PublicKey>,
    /// `root`, `issuer` and `revoker` always; `relay` when the vendor runs one.
    pub roles: BTreeMap<Role, RoleKeys>,
    /// Set by a rotation that recovers from a fast-forwarded revocation
    /// list: verifiers reset their revocation-version high-water mark to it
    /// when they move to this root.
    pub revocation_floor: Option<u64>,
}

impl Root {
    /// The public key with `kid`, if this root has it.
    pub fn key(&self, kid: &Kid) -> Option<&PublicKey> {
        self.keys.iter().find(|k| &k.kid() == kid)
    }

    /// The keys of `role` (empty when the root has no such role).
    pub fn keys_for(&self, role: Role) -> TrustedKeys {
        let mut t = TrustedKeys::new();
        if let Some(r) = self.roles.get(&role) {
            for kid in &r.kids {
                if let Some(k) = self.key(kid) {
                    t.insert(k.clone());
                }
            }
        }
        t
    }

    /// The roles `kid` plays in this root.
    pub fn roles_of(&self, kid: &Kid) -> Vec<Role> {
        self.roles
            .iter()
            .filter(|(_, r)| r.kids.contains(kid))
            .map(|(role, _)| *role)
            .collect()
    }

    /// Checks the rules a payload must follow whatever signed it: at least
    /// one key, no key twice, `root`, `issuer` and `revoker` present, every
    /// role naming only keys of this root, each once, with a threshold it
    /// can meet.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Payload(format!("root: {m}")));
        if self.version == 0 {
            return bad("version starts at 1".into());
        }
        if self.keys.is_empty() || self.keys.len() > MAX_KEYS {
            return bad(format!(
                "1 to {MAX_KEYS} keys are allowed, not {}",
                self.keys.len()
            ));
        }
        let kids: Vec<Kid> = self.keys.iter().map(PublicKey::kid).collect();
        if !kids.windows(2).all(|w| w[0] < w[1]) {
            return bad("keys must be distinct and ascending by kid".into());
        }
        for needed in [Role::Root, Role::Issuer, Role::Revoker] {
            if !self.roles.contains_key(&needed) {
                return bad(format!("the {needed} role is missing"));
            }
        }
        for (role, r) in &self.roles {
            if !r.kids.windows(2).all(|w| w[0] < w[1]) {
                return bad(format!(
                    "the {role} role's kids must be distinct and ascending"
                ));
            }
            if let Some(k) = r.kids.iter().find(|k| kids.binary_search(k).is_err()) {
                return bad(format!(
                    "the {role} role names key {k}, which the root does not list"
                ));
            }
            if r.threshold == 0 || r.threshold as usize > r.kids.len() {
                return bad(format!(
                    "the {role} role needs 1 to {} signatures, not {}",
                    r.kids.len(),
                    r.threshold
                ));
            }
        }
        Ok(())
    }

    /// The payload as deterministic CBOR. Keys in canonical order: `iss`,
    /// `iat`, then `keys`, `roles`, `expires`, `version`, `revocation_floor`.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128 + 48 * self.keys.len());
        self.encode(&mut w);
        w.into_vec()
    }

    fn encode(&self, w: &mut Writer) {
        w.map(6 + usize::from(self.revocation_floor.is_some()));
        w.int(ISS).text(&self.issuer);
        w.int(IAT).uint(self.issued_at);
        w.text("keys").array(self.keys.len());
        for k in &self.keys {
            w.bytes(k.as_bytes());
        }
        let present: Vec<(&Role, &RoleKeys)> = Role::ALL
            .iter()
            .filter_map(|r| self.roles.get(r).map(|k| (r, k)))
            .collect();
        w.text("roles").map(present.len());
        for (role, r) in present {
            w.text(role.as_str()).map(2);
            w.text("kids").array(r.kids.len());
            for kid in &r.kids {
                w.bytes(&kid.0);
            }
            w.text("threshold").uint(u64::from(r.threshold));
        }
        w.text("expires").uint(self.expires);
        w.text("version").uint(self.version);
        if let Some(f) = self.revocation_floor {
            w.text("revocation_floor").uint(f);
        }
    }

    /// Decodes a payload, refusing unknown claims, non-canonical encodings
    /// and anything [`Root::check`] refuses.
    pub fn from_cbor(bytes: &[u8]) -> Result<Root> {
        let mut r = Reader::new(bytes);
        let mut m = r.map("root")?;
        let (mut issuer, mut issued_at, mut keys, mut roles, mut expires, mut version, mut floor) =
            (None, None, None, None, None, None, None);
        while let Some(key) = r.key(&mut m)? {
            match key {
                Key::Int(ISS) => issuer = Some(r.text("iss")?.to_owned()),
                Key::Int(IAT) => issued_at = Some(r.uint("iat")?),
                Key::Text(b"keys") => {
                    let n = r.array_len("keys")?;
                    if n > MAX_KEYS {
                        return Err(Error::Payload(format!(
                            "root: at most {MAX_KEYS} keys are allowed, not {n}"
                        )));
                    }
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        v.push(PublicKey::from_bytes(&r.bytes_n::<32>("key")?)?);
                    }
                    keys = Some(v);
                }
                Key::Text(b"roles") => roles = Some(read_roles(&mut r)?),
                Key::Text(b"expires") => expires = Some(r.uint("expires")?),
                Key::Text(b"version") => version = Some(r.uint("version")?),
                Key::Text(b"revocation_floor") => floor = Some(r.uint("revocation_floor")?),
                other => return Err(m.unknown(other)),
            }
        }
        r.end()?;
        let root = Root {
            issuer: issuer.ok_or_else(|| m.missing("iss"))?,
            version: version.ok_or_else(|| m.missing("version"))?,
            issued_at: issued_at.ok_or_else(|| m.missing("iat"))?,
            expires: expires.ok_or_else(|| m.missing("expires"))?,
            keys: keys.ok_or_else(|| m.missing("keys"))?,
            roles: roles.ok_or_else(|| m.missing("roles"))?,
            revocation_floor: floor,
        };
        root.check()?;
        let mut w = Writer::with_capacity(bytes.len());
        root.encode(&mut w);
        if w.into_vec() != bytes {
            return Err(Error::Payload("root is not in canonical encoding".into()));
        }
        Ok(root)
    }

    /// A root document signed by each of `keys` (in the order given; more
    /// can be added later with [`add_signature`]).
    pub fn sign(&self, keys: &[&SecretKey]) -> Vec<u8> {
        let protected = HeaderBuilder::new()
            .content_type(DocKind::Root.content_type().to_string())
            .build();
        let mut b = CoseSignBuilder::new()
            .protected(protected)
            .payload(self.to_cbor());
        for key in keys {
            b = b.add_created_signature(signature_header(key), b"", |tbs| key.sign(tbs).to_vec());
        }
        // Encoding a structure we just built cannot fail.
        b.build().to_tagged_vec().unwrap_or_default()
    }
}

fn signature_header(key: &SecretKey) -> CoseSignature {
    CoseSignatureBuilder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::EdDSA)
                .key_id(key.public().kid().0.to_vec())
                .build(),
        )
        .build()
}

fn read_roles(r: &mut Reader<'_>) -> Result<BTreeMap<Role, RoleKeys>> {
    let mut m = r.map("roles")?;
    let mut roles = BTreeMap::new();
    while let Some(key) = r.key(&mut m)? {
        let role = match key {
            Key::Text(name) => Role::from_bytes(name).ok_or_else(|| m.unknown(key))?,
            other => return Err(m.unknown(other)),
        };
        let mut rm = r.map("role")?;
        let (mut kids, mut threshold) = (None, None);
        while let Some(k) = r.key(&mut rm)? {
            match k {
                Key::Text(b"kids") => {
                    let n = r.array_len("kids")?;
                    if n > MAX_KEYS {
                        return Err(Error::Payload(format!(
                            "root: the {role} role names {n} keys"
                        )));
                    }
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        v.push(Kid(r.bytes_n::<8>("kid")?));
                    }
                    kids = Some(v);
                }
                Key::Text(b"threshold") => threshold = Some(r.uint32("threshold")?),
                other => return Err(rm.unknown(other)),
            }
        }
        roles.insert(
            role,
            RoleKeys {
                kids: kids.ok_or_else(|| rm.missing("kids"))?,
                threshold: threshold.ok_or_else(|| rm.missing("threshold"))?,
            },
        );
    }
    Ok(roles)
}

/// A root whose signatures met the thresholds; `bytes` exactly as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRoot {
    /// The claims.
    pub root: Root,
    /// The document, binary.
    pub bytes: Vec<u8>,
}

/// Parses the envelope: size, tag 98, the body's protected header naming a
/// root and nothing else, every signature EdDSA/Ed25519 with an 8-byte kid,
/// no unprotected parameters, canonical bytes.
fn open(bytes: &[u8]) -> Result<CoseSign> {
    if bytes.len() > MAX_DOCUMENT_SIZE {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    if bytes.first() == Some(&0xd2) {
        // Tag 18: a COSE_Sign1, i.e. one of the single-signer documents.
        return Err(Error::WrongKind {
            found: "single-signer document (COSE_Sign1)".into(),
            expected: DocKind::Root,
        });
    }
    let sign = CoseSign::from_tagged_slice(bytes).map_err(|e| {
        Error::Malformed(format!("a root is a tagged COSE_Sign (CBOR tag 98): {e}"))
    })?;
    let h = &sign.protected.header;
    match &h.content_type {
        Some(ContentType::Text(ct)) if ct == DocKind::Root.content_type() => {}
        Some(ContentType::Text(ct)) => {
            return Err(Error::WrongKind {
                found: DocKind::from_content_type(ct).map_or_else(
                    || format!("document of unknown type {ct:?}"),
                    |k| k.to_string(),
                ),
                expected: DocKind::Root,
            })
        }
        _ => {
            return Err(Error::Malformed(
                "no text content type in the root's protected header".into(),
            ))
        }
    }
    let only_content_type = HeaderBuilder::new()
        .content_type(DocKind::Root.content_type().to_string())
        .build();
    if *h != only_content_type || !sign.unprotected.is_empty() {
        return Err(Error::Malformed(
            "a root's headers carry only its content type".into(),
        ));
    }
    if sign.payload.is_none() {
        return Err(Error::Malformed(
            "detached payloads are not supported".into(),
        ));
    }
    if sign.signatures.len() > MAX_SIGNATURES {
        return Err(Error::Malformed(format!(
            "a root carries at most {MAX_SIGNATURES} signatures, this one {}",
            sign.signatures.len()
        )));
    }
    for s in &sign.signatures {
        let sh = &s.protected.header;
        match &sh.alg {
            Some(coset::Algorithm::Assigned(iana::Algorithm::Ed25519 | iana::Algorithm::EdDSA)) => {
            }
            Some(other) => return Err(Error::Algorithm(format!("{other:?}"))),
            None => {
                return Err(Error::Algorithm(
                    "none (no alg in a signature header)".into(),
                ))
            }
        }
        let canonical = HeaderBuilder::new()
            .algorithm(match &sh.alg {
                Some(coset::Algorithm::Assigned(a)) => *a,
                _ => iana::Algorithm::EdDSA,
            })
            .key_id(sh.key_id.clone())
            .build();
        if *sh != canonical || !s.unprotected.is_empty() || sh.key_id.len() != 8 {
            return Err(Error::Malformed(
                "a root signature's header carries only alg and an 8-byte kid".into(),
            ));
        }
    }
    // Only the canonical spelling: re-encoding gives back the received bytes,
    // and every protected header is the deterministic encoding of its parameters.
    let mut headers = vec![&sign.protected];
    headers.extend(sign.signatures.iter().map(|s| &s.protected));
    for p in headers {
        let canonical = p.header.clone().to_vec().ok();
        if p.original_data.as_deref() != canonical.as_deref() {
            return Err(Error::Malformed("root is not in canonical encoding".into()));
        }
    }
    if sign.clone().to_tagged_vec().ok().as_deref() != Some(bytes) {
        return Err(Error::Malformed("root is not in canonical encoding".into()));
    }
    Ok(sign)
}

/// The distinct keys of `role` in `root` whose signatures over `sign` verify.
/// A key that signs twice counts once; keys of other roles, or of no role,
/// count for nothing.
fn signers(sign: &CoseSign, root: &Root, role: Role) -> BTreeSet<Kid> {
    let Some(r) = root.roles.get(&role) else {
        return BTreeSet::new();
    };
    let mut ok = BTreeSet::new();
    for (i, s) in sign.signatures.iter().enumerate() {
        let Ok(kid) = <[u8; 8]>::try_from(s.protected.header.key_id.as_slice()).map(Kid) else {
            continue;
        };
        if ok.contains(&kid) || !r.kids.contains(&kid) {
            continue;
        }
        let Some(key) = root.key(&kid) else { continue };
        if sign
            .verify_signature(i, b"", |sig, tbs| key.verify_strict(tbs, sig))
            .is_ok()
        {
            ok.insert(kid);
        }
    }
    ok
}

fn threshold_met(sign: &CoseSign, by: &Root, whose: &str) -> Result<()> {
    let need = by.roles.get(&Role::Root).map_or(1, |r| r.threshold);
    let got = signers(sign, by, Role::Root).len();
    if got < need as usize {
        return Err(Error::Root(format!(
            "{got} valid signature(s) from {whose} root keys, {need} needed \
             (only keys in the root role count, each once)"
        )));
    }
    Ok(())
}

/// The payload, decoded after a threshold has been checked over the bytes.
fn payload(sign: &CoseSign) -> Result<Root> {
    Root::from_cbor(sign.payload.as_deref().unwrap_or_default())
}

/// Verifies a root trusted by other means (the one pinned in the build, or
/// a development root from a file): well formed, and signed by a threshold
/// of its own root keys.
pub fn verify_initial_root(bytes: &[u8]) -> Result<VerifiedRoot> {
    let sign = open(bytes)?;
    let root = payload(&sign)?;
    threshold_met(&sign, &root, "its own")?;
    Ok(VerifiedRoot {
        root,
        bytes: bytes.to_vec(),
    })
}

/// Verifies `bytes` as the root that follows `trusted`: exactly the next
/// version, signed by a threshold of `trusted`'s root keys *and* a threshold
/// of its own, same vendor, and not expired at `now`.
pub fn verify_next_root(trusted: &Root, bytes: &[u8], now: Timestamp) -> Result<VerifiedRoot> {
    let sign = open(bytes)?;
    // The trusted keys vouch for the bytes before the new payload is read.
    threshold_met(
        &sign,
        trusted,
        &format!("the trusted root v{}'s", trusted.version),
    )?;
    let root = payload(&sign)?;
    let next = trusted.version.saturating_add(1);
    if root.version != next {
        return Err(Error::Root(if root.version <= trusted.version {
            format!(
                "root v{} is not newer than the trusted root v{} (rollback refused)",
                root.version, trusted.version
            )
        } else {
            format!(
                "root v{} skips ahead of the trusted root v{}: apply v{next} first (roots are taken one version at a time)",
                root.version, trusted.version
            )
        }));
    }
    if root.issuer != trusted.issuer {
        return Err(Error::Root(format!(
            "root v{} is from {:?}, the trusted root from {:?}",
            root.version, root.issuer, trusted.issuer
        )));
    }
    threshold_met(&sign, &root, "its own")?;
    if now >= root.expires {
        return Err(Error::Root(format!(
            "root v{} expired at {}: a new root must be current (ask the vendor for the latest root)",
            root.version,
            rfc3339(root.expires)
        )));
    }
    Ok(VerifiedRoot {
        root,
        bytes: bytes.to_vec(),
    })
}

/// Adds `key`'s signature to a root document (a root rotation collects
/// signatures from several holders, one run each). Refuses a document that
/// does not parse, and a key that already signed it.
pub fn add_signature(bytes: &[u8], key: &SecretKey) -> Result<Vec<u8>> {
    let mut sign = open(bytes)?;
    let kid = key.public().kid();
    if sign
        .signatures
        .iter()
        .any(|s| s.protected.header.key_id.as_slice() == kid.0)
    {
        return Err(Error::Root(format!(
            "key {kid} has already signed this root"
        )));
    }
    if sign.signatures.len() >= MAX_SIGNATURES {
        return Err(Error::Root(format!(
            "a root carries at most {MAX_SIGNATURES} signatures"
        )));
    }
    let mut s = signature_header(key);
    // Sign the protected header as it will be encoded.
    let encoded = s
        .protected
        .clone()
        .header
        .to_vec()
        .map_err(|e| Error::Malformed(e.to_string()))?;
    s.protected.original_data = Some(encoded);
    let tbs = sign.tbs_data(b"", &s);
    s.signature = key.sign(&tbs).to_vec();
    sign.signatures.push(s);
    sign.to_tagged_vec()
        .map_err(|e| Error::Malformed(e.to_string()))
}

/// Which keys may sign a relay's time answers: the relay role of the root
/// in force when it names one (a key configured beside the verifier is then
/// ignored: the customer can edit that file), else the configured key;
/// `None` when neither exists.
pub fn relay_signers(root: Option<&Root>, configured: Option<&PublicKey>) -> Option<TrustedKeys> {
    match root {
        Some(r) if r.roles.contains_key(&Role::Relay) => Some(r.keys_for(Role::Relay)),
        _ => configured.map(|k| TrustedKeys::from(k.clone())),
    }
}

/// The signatures a root under signature carries from the keys of one
/// root role, against that role's threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Root keys of the role whose signatures verify, each once.
    pub signed: Vec<Kid>,
    /// Root keys of the role that have not signed (or whose signature fails).
    pub missing: Vec<Kid>,
    /// How many must sign.
    pub threshold: u32,
}

impl Tally {
    /// Whether the threshold is met.
    pub fn met(&self) -> bool {
        self.signed.len() >= self.threshold as usize
    }
}

/// Where a root under signature stands: the claims it makes (not to be
/// trusted until both tallies are met) and the valid signatures so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// The payload, unverified.
    pub root: Root,
    /// By the previous root's root keys (`None`: no previous root given,
    /// i.e. a first root).
    pub by_previous: Option<Tally>,
    /// By its own root keys.
    pub by_own: Tally,
    /// Signatures from keys that count toward neither tally.
    pub stray: Vec<Kid>,
}

impl Signing {
    /// Whether both thresholds are met (the time and version rules of
    /// [`verify_next_root`] still apply).
    pub fn complete(&self) -> bool {
        self.by_own.met() && self.by_previous.as_ref().is_none_or(Tally::met)
    }
}

/// Counts the valid signatures of a root that is being signed by several
/// holders, one run each: for showing the next holder what is still needed.
/// Each signature is verified; a key that signed twice counts once.
pub fn tally_root(bytes: &[u8], previous: Option<&Root>) -> Result<Signing> {
    let sign = open(bytes)?;
    let root = payload(&sign)?;
    root.check()?;
    let tally = |by: &Root| {
        let signed = signers(&sign, by, Role::Root);
        let role = by.roles.get(&Role::Root);
        Tally {
            missing: role
                .map(|r| {
                    r.kids
                        .iter()
                        .filter(|k| !signed.contains(k))
                        .copied()
                        .collect()
                })
                .unwrap_or_default(),
            threshold: role.map_or(1, |r| r.threshold),
            signed: signed.into_iter().collect(),
        }
    };
    let by_own = tally(&root);
    let by_previous = previous.map(tally);
    let counted: BTreeSet<Kid> = by_own
        .signed
        .iter()
        .chain(by_previous.iter().flat_map(|t| t.signed.iter()))
        .copied()
        .collect();
    let stray = sign
        .signatures
        .iter()
        .filter_map(|s| <[u8; 8]>::try_from(s.protected.header.key_id.as_slice()).ok())
        .map(Kid)
        .filter(|k| !counted.contains(k))
        .collect();
    Ok(Signing {
        root,
        by_previous,
        by_own,
        stray,
    })
}

/// The payload of a root document without checking any signature: for
/// showing a partially signed root to the next key holder. Never trust it.
pub fn inspect_root(bytes: &[u8]) -> Result<(Root, Vec<Kid>)> {
    let sign = open(bytes)?;
    let kids = sign
        .signatures
        .iter()
        .filter_map(|s| <[u8; 8]>::try_from(s.protected.header.key_id.as_slice()).ok())
        .map(Kid)
        .collect();
    Ok((payload(&sign)?, kids))
}

/// The chain of roots a verifier trusts: it starts at a root trusted by
/// other means and moves one version at a time.
#[derive(Debug, Clone)]
pub struct TrustChain {
    /// Every root taken, oldest first; the last is in force. Never empty.
    walked: Vec<VerifiedRoot>,
}

/// What [`TrustChain::update`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advanced {
    /// Versions taken, in order.
    pub versions: Vec<u64>,
    /// The last `revocation_floor` among them, if any: the caller resets its
    /// revocation high-water mark to it.
    pub revocation_floor: Option<u64>,
    /// Candidates refused, with why (older ones already trusted are not listed).
    pub refused: Vec<String>,
}

impl TrustChain {
    /// A chain starting at `root`.
    pub fn new(root: VerifiedRoot) -> TrustChain {
        TrustChain { walked: vec![root] }
    }

    /// The root in force.
    pub fn current(&self) -> &VerifiedRoot {
        // `walked` starts with one root and only grows.
        &self.walked[self.walked.len() - 1]
    }

    /// Every root taken, oldest first (the first is the one trusted by
    /// other means); the last is [`TrustChain::current`].
    pub fn walked(&self) -> &[VerifiedRoot] {
        &self.walked
    }

    /// The roles `kid` played in the newest root that had it, and that
    /// root's version: why a key that signs nothing now once did.
    pub fn former_roles(&self, kid: &Kid) -> Option<(u64, Vec<Role>)> {
        self.walked
            .iter()
            .rev()
            .map(|v| (v.root.version, v.root.roles_of(kid)))
            .find(|(_, roles)| !roles.is_empty())
    }

    /// Takes whatever newer roots `candidates` hold (files in a trust
    /// folder, a relay's answer), one version at a time from the current
    /// one: never skipping, never going back. A refused root stops the walk
    /// at the version before it.
    pub fn update<'a>(
        &mut self,
        candidates: impl IntoIterator<Item = &'a [u8]>,
        now: Timestamp,
    ) -> Advanced {
        let mut by_version: BTreeMap<u64, Vec<&[u8]>> = BTreeMap::new();
        let mut out = Advanced::default();
        for c in candidates {
            match inspect_root(c) {
                Ok((r, _)) if r.version > self.current().root.version => {
                    by_version.entry(r.version).or_default().push(c)
                }
                Ok(_) => {}
                Err(e) => out.refused.push(format!("not a root: {e}")),
            }
        }
        loop {
            let next = self.current().root.version.saturating_add(1);
            let Some(found) = by_version.remove(&next) else {
                break;
            };
            let mut took = false;
            for bytes in found {
                match verify_next_root(&self.current().root, bytes, now) {
                    Ok(v) => {
                        if v.root.revocation_floor.is_some() {
                            out.revocation_floor = v.root.revocation_floor;
                        }
                        out.versions.push(v.root.version);
                        self.walked.push(v);
                        took = true;
                        break;
                    }
                    Err(e) => out.refused.push(format!("root v{next}: {e}")),
                }
            }
            if !took {
                break;
            }
        }
        for (v, _) in by_version {
            let at = self.current().root.version;
            if v > at {
                out.refused.push(format!(
                    "root v{v}: not reachable from the trusted root v{at} (a version in between is missing or refused)"
                ));
            }
        }
        out
    }
}
