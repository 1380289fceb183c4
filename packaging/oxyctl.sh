#!/bin/sh
# /usr/bin/oxyctl: runs the CLI installed in ../lib/oxyctl with the system Node.js
# (the package depends on nodejs >= 20), whichever node comes first on PATH.
set -e
here=$(dirname "$(readlink -f "$0")")
exec /usr/bin/node "$here/../lib/oxyctl/bin/run.js" "$@"
