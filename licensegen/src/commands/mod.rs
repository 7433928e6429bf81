//! One function per subcommand: gather inputs, call the module that does
//! the work, print. Each returns the exit code.

mod clock_reset;
mod keys;
mod ledger_cmds;
pub(crate) mod licenses;
mod publish;
pub(crate) mod revoke;
pub(crate) mod root;
mod setup;
mod usage_pull;

use std::path::Path;

use anyhow::Result;
use kaching_core::root::Role;
use kaching_core::SecretKey;

use crate::cli::{Cli, Command};
use crate::keystore::{self, PassphraseSource, Unlock};
use crate::vendor_dir::{VendorDir, KEY_FILE};

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> Result<u8> {
    let ctx = Ctx { cli: &cli };
    match &cli.command {
        Command::Init(a) => setup::init(&ctx, a),
        Command::Key(k) => keys::key(&ctx, k),
        Command::Root(r) => root::root(&ctx, r),
        Command::Role(r) => root::role(&ctx, r),
        Command::Completions { shell } => setup::completions(*shell),
        Command::Man { out } => setup::man(out.as_deref()),
        Command::Issue(a) => licenses::issue(&ctx, a),
        Command::Upgrade(a) => licenses::reissue(&ctx, a, true),
        Command::Renew(a) => licenses::reissue(&ctx, a, false),
        Command::Inspect(a) => ledger_cmds::inspect(&ctx, a),
        Command::Verify(a) => ledger_cmds::verify(&ctx, a),
        Command::Simulate(a) => ledger_cmds::simulate(&ctx, a),
        Command::Suspend(a) => revoke::suspend(&ctx, a),
        Command::Reinstate(a) => revoke::reinstate(&ctx, a),
        Command::Revoke(a) => revoke::revoke(&ctx, a),
        Command::Revocations(r) => revoke::revocations(&ctx, r),
        Command::Publish(a) => publish::publish(&ctx, a),
        Command::Ledger(l) => ledger_cmds::ledger(&ctx, l),
        Command::Usage(u) => ledger_cmds::usage(&ctx, u),
        Command::ClockReset(a) => clock_reset::clock_reset(&ctx, a),
        Command::TrueUp(a) => ledger_cmds::true_up(&ctx, a),
        Command::Ui(a) => {
            let v = ctx.vendor()?;
            crate::desk::serve(&crate::desk::Options {
                vendor: v.root.clone(),
                listen: a.listen.clone(),
                no_open: a.no_open,
                unlock: Unlock {
                    passphrase: ctx.passphrase(),
                    identity: cli.global.identity.clone(),
                },
            })
        }
    }
}

/// Global options shared by the subcommands.
struct Ctx<'a> {
    cli: &'a Cli,
}

impl Ctx<'_> {
    fn vendor(&self) -> Result<VendorDir> {
        VendorDir::discover(self.cli.global.dir.as_deref())
    }

    fn passphrase(&self) -> PassphraseSource {
        PassphraseSource {
            file: self.cli.global.passphrase_file.clone(),
        }
    }

    /// Decrypts the vendor key into memory (asks for the passphrase).
    fn unlock(&self, vendor: &VendorDir) -> Result<SecretKey> {
        let unlock = Unlock {
            passphrase: self.passphrase(),
            identity: self.cli.global.identity.clone(),
        };
        let path = vendor.path(KEY_FILE);
        if !path.exists() {
            return Err(crate::error::usage(format!(
                "{} is not in this vendor directory (a copy without the private key, e.g. on a revoker box): \
                 run this on the machine that keeps the vendor key; suspend, reinstate, revoke and \
                 `revocations refresh` can sign with --revoker-key instead",
                path.display()
            )));
        }
        keystore::unseal(&path, &vendor.public_key()?, &unlock)
    }

    /// The vendor key, refused unless the current root names it an issuer.
    fn issuer(&self, vendor: &VendorDir) -> Result<SecretKey> {
        let key = self.unlock(vendor)?;
        root::check_role(vendor, &key, Role::Issuer)?;
        Ok(key)
    }

    /// The key that signs revocation lists: `--revoker-key` when given, else
    /// the vendor key; refused unless the current root names it a revoker.
    fn revoker(&self, vendor: &VendorDir, revoker_key: Option<&Path>) -> Result<SecretKey> {
        let key = match revoker_key {
            Some(path) => keystore::unseal_file(
                path,
                &Unlock {
                    passphrase: self.passphrase(),
                    identity: self.cli.global.identity.clone(),
                },
            )?,
            None => self.unlock(vendor)?,
        };
        root::check_role(vendor, &key, Role::Revoker)?;
        Ok(key)
    }
}
