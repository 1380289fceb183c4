#!/usr/bin/env bash
# npm run package: builds oxyctl_<version>_<arch>.deb (dpkg-deb) and
# oxyctl-<version>.<arch>.rpm (rpmbuild) from the built project (npm run build and the
# native addon must have run) into dist-packages/ (or $OXY_PACKAGE_OUT).
#
#   /usr/lib/oxyctl            bin/ dist/ migrations/ oclif.manifest.json package.json,
#                              node_modules/ with production dependencies only (a copy of
#                              node_modules pruned offline with npm prune --omit=dev),
#                              build/Release/oxy_native.node; native addons stripped
#   /usr/bin/oxyctl            wrapper: /usr/bin/node /usr/lib/oxyctl/bin/run.js
#   /usr/share/man/man1        man/*.1, gzipped
#   /lib/systemd/system (deb), /usr/lib/systemd/system (rpm)
#                              oxyctl.service (connector), oxyctl-edge.service (edge)
#   /usr/share/doc/oxyctl      copyright, changelog (.deb); %license and %doc (.rpm)
#
# Environment:
#   OXY_PACKAGE_OUT         output directory [dist-packages]
#   OXY_PACKAGE_MAINTAINER  "Name <email>" for Maintainer/Packager [from packaging/debian/control]
#   OXY_PACKAGE_FORMATS     "deb rpm" (default), or one of them
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG=$ROOT/packaging
OUT=${OXY_PACKAGE_OUT:-$ROOT/dist-packages}
FORMATS=${OXY_PACKAGE_FORMATS:-deb rpm}
cd "$ROOT"

die() { echo "package: $*" >&2; exit 1; }
for tool in node npm dpkg-deb dpkg-gencontrol dpkg-shlibdeps dpkg-parsechangelog gzip strip; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian packages: dpkg-dev binutils; run npm run setup)"
done
[[ $FORMATS != *rpm* ]] || command -v rpmbuild >/dev/null || die "rpmbuild is missing (Debian package: rpm)"
for f in lib/run.js dist/commands dist/cli/service.js oclif.manifest.json build/Release/oxy_native.node man/oxyctl.1 node_modules; do
  [ -e "$f" ] || die "$f is missing: build the project first (npm ci && npm run build)"
done

VERSION=$(node -p "require('./package.json').version")
CHANGELOG_VERSION=$(dpkg-parsechangelog -l "$PKG/debian/changelog" -SVersion)
[ "$VERSION" = "$CHANGELOG_VERSION" ] ||
  die "package.json has version $VERSION but packaging/debian/changelog starts at $CHANGELOG_VERSION: add a changelog entry (dch -v $VERSION)"
# Reproducible: every timestamp in the packages is the changelog's.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$PKG/debian/changelog" -STimestamp)
export SOURCE_DATE_EPOCH
MAINTAINER=${OXY_PACKAGE_MAINTAINER:-$(sed -n 's/^Maintainer: //p' "$PKG/debian/control")}
DEB_ARCH=$(dpkg --print-architecture)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/oxyctl-package.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# --- The application tree, shared by both packages ---------------------------------------
APP=$WORK/app
mkdir -p "$APP/build/Release"
cp -a bin dist lib migrations oclif.manifest.json package.json package-lock.json "$APP/"
cp build/Release/oxy_native.node "$APP/build/Release/"
find "$APP/dist" -name '*.map' -delete
# Only what src/ compiles to: a dist/ that outlived its sources (or a bench build) stays out.
while IFS= read -r -d '' js; do
  [ -f "src/${js%.js}.ts" ] || rm -f "$APP/dist/$js"
done < <(cd "$APP/dist" && find . -type f -printf '%P\0')
find "$APP/dist" -type d -empty -delete
cp -a node_modules "$APP/"
# Offline and without lifecycle scripts: the native modules are already built.
(cd "$APP" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
rm -rf "$APP/node_modules/.bin" "$APP/package-lock.json" "$APP/node_modules/.package-lock.json"
# Build leftovers of node-gyp modules: keep build/Release/*.node, drop objects, sources, makefiles.
while IFS= read -r -d '' gyp; do
  build=$(dirname "$gyp")/build
  [ -d "$build/Release" ] || continue
  find "$build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
  find "$build/Release" -mindepth 1 \( ! -name '*.node' -o -name 'test_extension.node' \) -prune -exec rm -rf {} +
done < <(find "$APP/node_modules" -name binding.gyp -print0)
rm -rf "$APP/node_modules/better-sqlite3/deps" "$APP/node_modules/better-sqlite3/src"
# Headers for compiling our addon (binding.gyp): nothing loads them at run time.
rm -rf "$APP/node_modules/node-addon-api"
# What packages publish for their developers: dotfiles (.npmignore, .eslintrc, .github …),
# tests, docs and benchmarks at a package's top level.
find "$APP/node_modules" -name '.*' -prune -exec rm -rf {} +
find "$APP/node_modules" -mindepth 2 -maxdepth 3 -type d \( -name test -o -name tests -o -name __tests__ -o -name docs \
  -o -name benchmarks -o -name benchmark -o -name example -o -name examples \) -prune -exec rm -rf {} +
find "$APP/node_modules" -mindepth 2 -maxdepth 3 -type f -name '*.html' -delete
# Prebuilt addons for other platforms, and for the Bare runtime (*.bare: tar-stream's optional
# bare-fs family; Node never loads them): lintian rightly calls them foreign binaries.
find "$APP/node_modules" -type f -name '*.bare' -delete
find "$APP/node_modules" -type d -regex '.*/prebuilds/[^/]*' ! -name "$(node -p 'process.platform + "-" + process.arch')" -prune -exec rm -rf {} +
find "$APP/node_modules" -type d -empty -delete
# Normal modes: directories and scripts with a shebang 0755, everything else 0644.
find "$APP" -type d -exec chmod 0755 {} +
find "$APP" -type f -exec chmod 0644 {} +
chmod 0755 "$APP/bin/run.js"
find "$APP/node_modules" -type f \( -name '*.js' -o -name '*.cjs' -o -name '*.mjs' -o -name '*.sh' \) -exec sh -c \
  'for f; do [ "$(head -c2 "$f")" != "#!" ] || chmod 0755 "$f"; done' sh {} +
mapfile -d '' NATIVE < <(find "$APP" -type f -name '*.node' -print0)
((${#NATIVE[@]})) || die "no native addons found in the staged tree"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "${NATIVE[@]}"

# Files both packages put outside /usr/lib/oxyctl.
common_tree() { # DEST UNITDIR
  local dest=$1
  mkdir -p "$dest/usr/lib/oxyctl" "$dest/usr/bin" "$dest/usr/share/man/man1"
  cp -a "$APP/." "$dest/usr/lib/oxyctl/"
  install -m 0755 "$PKG/oxyctl.sh" "$dest/usr/bin/oxyctl"
  for page in man/*.1; do gzip -9nc "$page" >"$dest/usr/share/man/man1/$(basename "$page").gz"; done
  chmod 0644 "$dest"/usr/share/man/man1/*.gz
  node "$PKG/render-units.js" "$dest$2"
  find "$dest" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# --- .deb --------------------------------------------------------------------------------
if [[ $FORMATS == *deb* ]]; then
  # dpkg-shlibdeps and dpkg-gencontrol work from a source tree (debian/control, changelog)
  # with the package's files in debian/<package>.
  SRC=$WORK/src
  DEB=$SRC/debian/oxyctl
  mkdir -p "$SRC/debian"
  cp "$PKG/debian/control" "$PKG/debian/changelog" "$SRC/debian/"
  common_tree "$DEB" /lib/systemd/system
  install -D -m 0644 "$PKG/debian/copyright" "$DEB/usr/share/doc/oxyctl/copyright"
  # A native package (no Debian revision): its changelog is changelog.gz.
  gzip -9nc "$PKG/debian/changelog" >"$DEB/usr/share/doc/oxyctl/changelog.gz"
  chmod 0644 "$DEB/usr/share/doc/oxyctl/changelog.gz"

  # Node-API symbols (napi_*) resolve against the node binary at load time, not a library:
  # silence "symbol not found" (warning class 1) and keep the real library dependencies.
  mkdir -p "$DEB/DEBIAN"
  (cd "$SRC" && dpkg-shlibdeps --warnings=6 -Tdebian/oxyctl.substvars "${NATIVE[@]/#$APP/debian/oxyctl/usr/lib/oxyctl}")
  (cd "$DEB" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
  chmod 0644 "$DEB/DEBIAN/md5sums"
  (cd "$SRC" && dpkg-gencontrol -poxyctl -P"$DEB" -Tdebian/oxyctl.substvars -f"$WORK/files" -Vmisc:Depends= -DMaintainer="$MAINTAINER")
  DEB_FILE=$OUT/oxyctl_${VERSION}_${DEB_ARCH}.deb
  dpkg-deb --root-owner-group -Zxz --build "$DEB" "$DEB_FILE" >/dev/null
  echo "$DEB_FILE"
fi

# --- .rpm --------------------------------------------------------------------------------
if [[ $FORMATS == *rpm* ]]; then
  RPMSTAGE=$WORK/rpmstage
  common_tree "$RPMSTAGE" /usr/lib/systemd/system
  mkdir -p "$WORK/rpm/SOURCES"
  cp "$PKG/debian/changelog" "$WORK/rpm/SOURCES/changelog"
  [ -f /usr/share/common-licenses/Apache-2.0 ] && cp /usr/share/common-licenses/Apache-2.0 "$WORK/rpm/SOURCES/LICENSE"
  cp "$PKG/debian/copyright" "$WORK/rpm/SOURCES/copyright"
  # The spec plus a %changelog rendered from the Debian changelog.
  { cat "$PKG/rpm/oxyctl.spec"; echo '%changelog'; node "$PKG/rpm/changelog.js" "$PKG/debian/changelog"; } >"$WORK/rpm/oxyctl.spec"
  rpmbuild -bb --quiet \
    --define "_topdir $WORK/rpm" \
    --define "_rpmdir $OUT" \
    --define "_rpmfilename %{NAME}-%{VERSION}.%{ARCH}.rpm" \
    --define "oxy_version $VERSION" \
    --define "oxy_stage $RPMSTAGE" \
    --define "oxy_packager $MAINTAINER" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" \
    "$WORK/rpm/oxyctl.spec"
  echo "$OUT/oxyctl-$VERSION.$(rpm --eval '%{_arch}').rpm"
fi
