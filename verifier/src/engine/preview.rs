//! What installing a license file would do, decided before anything is
//! written (the license page's upload: verified first, then the difference
//! from the license in force shown, then installed on a second click).

use std::path::Path;

use kaching_core::policy::{fit, license_change, LicenseChange};
use kaching_core::VerifiedLicense;

use super::Engine;
use crate::loader;

/// An uploaded license that verified under the keys in force.
#[derive(Debug)]
pub struct LicensePreview {
    /// The license, verified.
    pub verified: VerifiedLicense,
    /// What it changes from the license in force (`None`: no license in
    /// force, or the very same file).
    pub change: Option<LicenseChange>,
    /// Why it would not be taken here (another cluster, audience, …).
    pub misfit: Option<String>,
    /// `hold_downgrades` is on and this takes something away: installing
    /// it waits for `kaching-verifier accept-downgrade`.
    pub held: bool,
    /// Its dates do not let it be used now (expired past its grace, or not
    /// valid yet): what that means, in one sentence.
    pub unusable: Option<String>,
    /// True when it would not take effect if installed: it cannot be used
    /// now and the license in force can, so that one stays.
    pub kept_out: bool,
}

impl Engine {
    /// Verifies `bytes` (armored or binary) as the reload would, and says
    /// what installing them would change at `now`. `Err`: why it would be
    /// refused.
    pub fn preview_license(
        &self,
        bytes: &[u8],
        now: kaching_core::time::Timestamp,
    ) -> Result<LicensePreview, String> {
        let Some(trust) = self.trust.as_ref() else {
            return Err(format!(
                "no trusted vendor keys at {}: copy the vendor's public key there first",
                self.cfg.trusted_keys.display()
            ));
        };
        let verified = loader::verify_license_bytes(Path::new("the uploaded file"), bytes, trust)?;
        let misfit = fit(&verified.license, &self.settings)
            .err()
            .map(|m| m.to_string());
        let change = self
            .license
            .as_ref()
            .filter(|old| old.bytes != verified.bytes)
            .map(|old| license_change(&old.license, &verified.license));
        let kept_out = self
            .unusable_replacement(&verified, self.license.as_ref(), now)
            .is_some();
        let unusable = self.usable(&verified, now).err().map(|why| {
            if kept_out {
                format!(
                    "This license {why}. Installing it would not take effect: the license in force stays."
                )
            } else {
                format!(
                    "This license {why}. Installed, it would be in force but every check would be denied until you install a current one."
                )
            }
        });
        let held =
            !kept_out && self.cfg.hold_downgrades && change.as_ref().is_some_and(|c| c.downgrade);
        Ok(LicensePreview {
            verified,
            change,
            misfit,
            held,
            unusable,
            kept_out,
        })
    }

    /// Where an installed license file goes: the configured file, or a file
    /// named after the license inside the configured folder.
    pub fn license_target(&self, v: &VerifiedLicense) -> std::path::PathBuf {
        if self.cfg.license.is_dir() {
            self.cfg.license.join(format!("{}.lic", v.license.id))
        } else {
            self.cfg.license.clone()
        }
    }
}
