#!/bin/bash
# Captures the real licensegen output pasted into docs/sales-ops.md: runs the
# guide's year of sales ops in a scratch folder and writes each step's
# command, output and exit code to SCRATCH/out/NN.txt.
#
#   cargo build -p licensegen --bins --examples
#   licensegen/scripts/sales-ops-walkthrough.sh [TARGET_DIR] [SCRATCH]
#
# TARGET_DIR: cargo's target dir (default: target); SCRATCH: /tmp/ops.
set -u
TARGET=$(realpath "${1:-target}")
OPS=${2:-/tmp/ops}
rm -rf "$OPS/work" "$OPS/out"; mkdir -p "$OPS/work" "$OPS/out" "$OPS/bin"
ln -sf "$TARGET/debug/licensegen" "$OPS/bin/licensegen"
export PATH=$OPS/bin:$PATH
unset KACHING_TEST_SCRYPT_LOG_N KACHING_DIR KACHING_IDENTITY
export KACHING_PASSPHRASE='plume-orbit-canyon-velvet'
n=0
step() { # step "command" — runs it in the current dir, records "$ command", output, exit code
  n=$((n+1)); f=$(printf "%s/out/%02d.txt" "$OPS" $n)
  { echo "\$ $1"; bash -c "$1" 2>&1; rc=$?; if [ $rc -ne 0 ] || [ "${SHOWRC:-}" = 1 ]; then echo "[exit $rc]"; fi; } > "$f"
  echo "== $n"; cat "$f"; LAST=$f
}
lastid() { grep -o 'issued license [0-9a-f-]*' "$LAST" | cut -d' ' -f3; }
cd "$OPS/work"
step 'licensegen init acme-licensing --issuer "Acme Software GmbH"'
cd acme-licensing
step 'ls -l'
step 'cat kaching.toml'
step 'licensegen key show'
step 'licensegen key export-public --out ../trusted-vendor-keys.pem'
step 'openssl pkey -pubin -in vendor.pub -noout -text'
step 'licensegen issue --customer "Globex Corporation" --tier evaluation'
GLOBEX_ID=$(lastid)
step 'licensegen issue --customer "Initech" --tier standard --nodes 12 --expires 2027-12-31 --armor'
INITECH_ID=$(lastid); INITECH=licenses/$(ls licenses | grep initech)
step "licensegen inspect $INITECH"
SHOWRC=1 step "licensegen verify $INITECH"
# The air-gapped customer's verifier writes an activation request (simulated here by the example program).
"$TARGET/debug/examples/cluster_documents" "$OPS/work/from-umbrella" >/dev/null
step 'licensegen inspect ../from-umbrella/activation.asc'
step 'licensegen issue --customer "Umbrella Health" --tier standard --bind ../from-umbrella/activation.asc'
UMB_ID=$(lastid); UMB_CLUSTER=$(awk '$1 == "cluster" {print $2; exit}' "$LAST")
step 'licensegen issue --customer "Hooli" --tier enterprise --heartbeat 5min --offline-grace 3d --quota search_requests=2000000/day --feature enterprise-support'
HOOLI_ID=$(lastid); HOOLI=licenses/$(ls licenses | grep hooli)
step 'licensegen ledger list'
step "licensegen upgrade ${GLOBEX_ID:0:8} --tier standard --expires 365d"
"$TARGET/debug/examples/cluster_documents" "$OPS/work/from-umbrella" "$UMB_ID" >/dev/null
step 'licensegen usage import ../from-umbrella/usage-report.asc'
step "licensegen ledger show ${UMB_ID:0:8}"
# Clock resets: Umbrella's clock was once years ahead; status shows the cluster id and mark.
step "licensegen clock-reset --cluster $UMB_CLUSTER --mark $(date -u -d '+828 days' +%Y-%m-%dT%H:%M:%SZ)"
step "licensegen clock-reset --cluster $UMB_CLUSTER --mark $(date -u -d '-1 day' +%Y-%m-%dT%H:%M:%SZ)"
step "licensegen upgrade ${UMB_ID:0:8} --tier enterprise"
UMB_ID=$(lastid)
step "licensegen suspend ${INITECH_ID:0:8} --reason \"invoice 2027-031 unpaid since 2027-05-01\""
step "licensegen verify $INITECH"
step 'licensegen revocations show'
step "licensegen reinstate ${INITECH_ID:0:8}"
SHOWRC=1 step "licensegen verify $INITECH"
step "licensegen revoke ${HOOLI_ID:0:8} --reason \"contract terminated 2027-08-31\""
step "licensegen verify $HOOLI --json | head -12"
step 'licensegen revocations refresh'
SHOWRC=1 step "licensegen verify $INITECH --at 2027-12-10"
SHOWRC=1 step "licensegen verify $INITECH --at 2028-01-05"
step "licensegen verify $INITECH --at 2028-02-01"
step 'licensegen ledger list --expiring-within 400d'
step "licensegen renew ${INITECH_ID:0:8}"
RENEWED=licenses/$(ls -t licenses | grep initech | head -1)
step 'licensegen ledger list'
step "licensegen ledger list --customer initech --json"
# Errors
step 'KACHING_PASSPHRASE=wrong licensegen issue --customer "Stark" --tier standard'
step 'licensegen issue --customer "Stark" --tier premium'
step 'licensegen issue --customer "Stark" --tier standard --feature bulk-operation'
step 'licensegen issue --customer "Stark" --tier standard --expires 2025-06-30'
step 'licensegen suspend 00000000-1111-4222-8333-444444444444'
step 'licensegen inspect ../trusted-vendor-keys.pem'
step '(cd /tmp && licensegen ledger list)'
step 'licensegen init .'
# Key rotation
step 'licensegen key rotate'
step 'licensegen key show'
step 'licensegen key export-public --all'
step 'licensegen key export-public --all --out ../trusted-vendor-keys.pem'
SHOWRC=1 step "licensegen verify $RENEWED --pubkey ../trusted-vendor-keys.pem"
step "licensegen renew ${UMB_ID:0:8}"
step 'ls retired-keys'
# A damaged ledger (on a copy).
cp -r . ../damaged && head -c 4096 /dev/urandom > ../damaged/ledger.sqlite
step 'licensegen --dir ../damaged ledger list'
# Issuing from a spec file.
cat > ../batch.toml <<'TOML'
[[license]]
customer = "Initrode"
tier = "evaluation"
expires = "30d"

[[license]]
customer = "Umbrella Research"
tier = "enterprise"
nodes = 250
quotas = ["search_requests=2000000/day"]
armor = true
out = "umbrella-research.license.asc"
TOML
step 'cat ../batch.toml'
step 'licensegen issue --spec ../batch.toml'
