#!/usr/bin/env bash
# Builds the NocoBase application tree from the npm registry; run by tools/nocobase-image.sh
# (its sha256 is part of the key of the cached app tarball, so editing it rebuilds the app).
#
# usage: build-app.sh VERSION BUILD_DIR YARN_JS
#   VERSION    NocoBase version (create-nocobase-app@VERSION, @nocobase/app VERSION)
#   BUILD_DIR  empty directory; the app is created in BUILD_DIR/app
#   YARN_JS    path of yarn 1's bin/yarn.js (run with this machine's node)
# Environment: NOCOBASE_IMAGE_NPM_TIMEOUT (seconds per npm/yarn step, default 2400)
set -euo pipefail

VERSION="$1"
BUILD_DIR="$2"
YARN_JS="$3"
STEP_TIMEOUT="${NOCOBASE_IMAGE_NPM_TIMEOUT:-2400}"

log() { printf 'nocobase-image: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cd "$BUILD_DIR"
# the same as the official image's builder: a production app with the PostgreSQL driver
timeout "$STEP_TIMEOUT" npx -y "create-nocobase-app@$VERSION" app \
    --skip-dev-dependencies -d postgres -e APP_ENV=production </dev/null \
  || die "create-nocobase-app@$VERSION failed (or timed out after ${STEP_TIMEOUT}s)"
cd app
[ -f package.json ] || die "create-nocobase-app left no package.json"

# xlsx: versions after 0.18.5 are published outside the npm registry (unreachable here);
# pin the last one the npm registry has
node -e '
  const fs = require("fs");
  const p = JSON.parse(fs.readFileSync("package.json", "utf8"));
  p.resolutions = Object.assign({}, p.resolutions, { xlsx: "0.18.5" });
  fs.writeFileSync("package.json", JSON.stringify(p, null, 2) + "\n");
'

timeout "$STEP_TIMEOUT" node "$YARN_JS" install --production --ignore-engines \
    --non-interactive --network-timeout 600000 </dev/null \
  || die "yarn install failed (or timed out after ${STEP_TIMEOUT}s)"

# no secret in the image: APP_KEY comes from the container's environment (the .env that
# create-nocobase-app writes holds a random APP_KEY; every container would share it).
# .env.e2e and .env.test (fixed test keys) stay: the CLI reads .env.e2e when it loads.
sed -i -E '/^APP_KEY=/d' .env
rm -rf storage/.pm2 storage/logs storage/tmp storage/.cache
# a leaner tree (about 300 MB less): source maps, type declarations and the READMEs and
# change logs of third-party packages are not used at run time (the @nocobase packages
# keep their README, shown by the plugin manager)
find node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete
find node_modules -type f \( -iname README -o -iname README.md -o -iname README.markdown \
    -o -iname README.txt -o -iname CHANGELOG -o -iname CHANGELOG.md -o -iname HISTORY.md \) \
  ! -path 'node_modules/@nocobase/*' -delete
