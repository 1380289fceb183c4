#!/usr/bin/env bash
# npm run repo: a static, signed apt + yum repository tree from the packages that
# `npm run package` built, servable by any static file server or object store.
#
#   npm run repo -- --key KEYID [--out DIR] [--codename NAME]... [--url URL]
#
#   OUT/oxyctl-archive-keyring.gpg   the public key, binary (apt: signed-by=)
#   OUT/oxyctl-archive-keyring.asc   the public key, armored (rpm --import, yum gpgkey=)
#   OUT/deb/dists/CODENAME/{Release,InRelease,Release.gpg}, main/binary-ARCH/Packages{,.gz}
#   OUT/deb/pool/main/o/oxyctl/oxyctl_VERSION_ARCH.deb            (reprepro)
#   OUT/rpm/oxyctl-VERSION.ARCH.rpm (signed with rpmsign), OUT/rpm/repodata/repomd.xml
#   and repomd.xml.asc (createrepo_c, then a detached armored signature)
#   OUT/oxyctl.list, OUT/oxyctl.repo  client configuration (with --url / OXY_REPO_URL)
#
# Environment (flags win):
#   OXY_REPO_KEY        the signing key (id, fingerprint or user id) in gpg's keyring
#   GNUPGHOME           gpg's home holding that secret key (gpg's own default otherwise);
#                       the key needs no passphrase, or an agent that has it
#   OXY_REPO_OUT        output directory [dist-packages/repo]; rebuilt from scratch
#   OXY_REPO_CODENAMES  apt distributions, space-separated [stable]
#   OXY_REPO_URL        where OUT will be served, for oxyctl.list and oxyctl.repo
#   OXY_PACKAGE_OUT     where the packages are [dist-packages]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
die() { echo "repo: $*" >&2; exit 1; }

KEY=${OXY_REPO_KEY:-}
OUT=${OXY_REPO_OUT:-$ROOT/dist-packages/repo}
URL=${OXY_REPO_URL:-}
PACKAGES=${OXY_PACKAGE_OUT:-$ROOT/dist-packages}
read -r -a CODENAMES <<<"${OXY_REPO_CODENAMES:-stable}"
codename_flag=()
while (($#)); do
  case $1 in
    --key) KEY=${2:?--key needs a value}; shift 2 ;;
    --out) OUT=${2:?--out needs a value}; shift 2 ;;
    --url) URL=${2:?--url needs a value}; shift 2 ;;
    --packages) PACKAGES=${2:?--packages needs a value}; shift 2 ;;
    --codename) codename_flag+=("${2:?--codename needs a value}"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
((${#codename_flag[@]} == 0)) || CODENAMES=("${codename_flag[@]}")

[ -n "$KEY" ] || die "no signing key: give --key KEYID or OXY_REPO_KEY (and GNUPGHOME for a keyring other than gpg's default)"
for tool in gpg reprepro createrepo_c rpmsign dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian packages: gnupg reprepro createrepo-c rpm dpkg-dev; run npm run setup)"
done
gpg --batch --list-secret-keys "$KEY" >/dev/null 2>&1 || die "gpg has no secret key $KEY${GNUPGHOME:+ in $GNUPGHOME}"
FPR=$(gpg --batch --with-colons --list-secret-keys "$KEY" | awk -F: '$1 == "fpr" { print $10; exit }')

shopt -s nullglob
DEBS=("$PACKAGES"/*.deb)
RPMS=("$PACKAGES"/*.rpm)
shopt -u nullglob
((${#DEBS[@]} + ${#RPMS[@]})) || die "no packages in $PACKAGES: run npm run package first"

# Build next to OUT and swap it in whole: a half-built tree is never served.
mkdir -p "$(dirname "$OUT")"
STAGE=$(mktemp -d "$(dirname "$OUT")/.repo.XXXXXX")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/oxyctl-repo.XXXXXX")
trap 'rm -rf "$STAGE" "$WORK"' EXIT
chmod 0755 "$STAGE"

gpg --batch --export "$FPR" >"$STAGE/oxyctl-archive-keyring.gpg"
gpg --batch --armor --export "$FPR" >"$STAGE/oxyctl-archive-keyring.asc"

# --- apt (reprepro) ----------------------------------------------------------------------
if ((${#DEBS[@]})); then
  ARCHES=$(for d in "${DEBS[@]}"; do dpkg-deb -f "$d" Architecture; done | sort -u | tr '\n' ' ')
  mkdir -p "$WORK/reprepro/conf"
  for codename in "${CODENAMES[@]}"; do
    cat <<EOF
Origin: oxyctl
Label: oxyctl
Codename: $codename
Suite: $codename
Architectures: ${ARCHES% }
Components: main
Description: apt repository for oxyctl - $codename
SignWith: $FPR

EOF
  done >"$WORK/reprepro/conf/distributions"
  for codename in "${CODENAMES[@]}"; do
    reprepro --silent --basedir "$WORK/reprepro" --outdir "$STAGE/deb" includedeb "$codename" "${DEBS[@]}"
  done
  if [ -n "$URL" ]; then
    for codename in "${CODENAMES[@]}"; do
      echo "deb [signed-by=/usr/share/keyrings/oxyctl-archive-keyring.gpg] ${URL%/}/deb $codename main"
    done >"$STAGE/oxyctl.list"
  fi
fi

# --- yum (createrepo_c) ------------------------------------------------------------------
if ((${#RPMS[@]})); then
  mkdir -p "$STAGE/rpm"
  cp "${RPMS[@]}" "$STAGE/rpm/"
  # rpmsign warns that it cannot set GPG_TTY without a terminal: harmless with an agent or no passphrase.
  rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_name $FPR" "$STAGE"/rpm/*.rpm >/dev/null 2> >(grep -v 'GPG_TTY' >&2)
  createrepo_c --quiet --general-compress-type=gz "$STAGE/rpm"
  gpg --batch --yes --local-user "$FPR" --armor --detach-sign --output "$STAGE/rpm/repodata/repomd.xml.asc" "$STAGE/rpm/repodata/repomd.xml"
  if [ -n "$URL" ]; then
    cat >"$STAGE/oxyctl.repo" <<EOF
[oxyctl]
name=oxyctl
baseurl=${URL%/}/rpm
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=${URL%/}/oxyctl-archive-keyring.asc
EOF
  fi
fi

find "$STAGE" -type d -exec chmod 0755 {} + && find "$STAGE" -type f -exec chmod 0644 {} +
rm -rf "$OUT.old"
[ ! -e "$OUT" ] || mv "$OUT" "$OUT.old"
mv "$STAGE" "$OUT"
rm -rf "$OUT.old"
echo "$OUT"
