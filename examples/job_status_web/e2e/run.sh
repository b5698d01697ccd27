#!/usr/bin/env bash
# CTest driver of the browser test: copies e2e/ into the build folder (the source tree is never
# written at test time), installs playwright-core there from the committed lockfile (`npm ci`,
# from npm's cache when it has it) when it is missing or stale, starts job_status_web on a free
# port, runs job_status.e2e.mjs against it, and stops the server, also on failure.
# Usage: run.sh path/to/job_status_web SOURCE_E2E_DIR BUILD_E2E_DIR
# Exit 77 (CTest SKIP) only when node, npm or chromium is absent, and not even then when
# COURIER_REQUIRE_WEB_TESTS=1 (scripts/test sets it after installing them): then it fails, so
# that CI cannot pass with the browser test skipped.
set -uo pipefail

skip() {
    echo "SKIP: $1"
    if [[ ${COURIER_REQUIRE_WEB_TESTS:-} == 1 ]]; then
        echo "FAIL - COURIER_REQUIRE_WEB_TESTS=1: this run must drive the browser"
        exit 1
    fi
    exit 77
}

server_bin=${1:?usage: run.sh SERVER SRC_DIR BUILD_DIR}
src=${2:?usage: run.sh SERVER SRC_DIR BUILD_DIR}
dst=${3:?usage: run.sh SERVER SRC_DIR BUILD_DIR}
chromium_bin=${CHROMIUM:-/usr/bin/chromium}

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        skip "$tool is not installed (Debian packages: nodejs npm)"
    fi
done
if [[ ! -x "$chromium_bin" ]]; then
    skip "$chromium_bin is not there (Debian package: chromium)"
fi

mkdir -p "$dst"
cp "$src/package.json" "$src/package-lock.json" "$src/job_status.e2e.mjs" "$dst/"
stamp="$dst/node_modules/.courier-lock.sha256"
want=$(sha256sum "$dst/package-lock.json" | cut -d' ' -f1)
if [[ ! -f "$dst/node_modules/playwright-core/package.json" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "# npm ci in $dst"
    # playwright-core never downloads a browser; the variable makes sure of it anyway.
    if ! (cd "$dst" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefer-offline --no-audit --no-fund); then
        echo "FAIL - npm ci failed (no npm cache and no registry?)"
        exit 1
    fi
    echo "$want" >"$stamp"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/job_status_web_e2e.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Default job shape (10 steps of 100 ms): the browser test's expected texts follow it.
: >"$work/server.out"  # exists before the server writes to it, for the greps below
"$server_bin" --port 0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
deadline=$((SECONDS + 20))
until grep -q '^listening on http://127.0.0.1:[0-9]*/$' "$work/server.out"; do
    if ((SECONDS >= deadline)) || ! kill -0 "$server_pid" 2>/dev/null; then
        echo "FAIL - the server did not start"; cat "$work/server.out" "$work/server.err"; exit 1
    fi
    sleep 0.05
done
url=$(head -1 "$work/server.out" | sed -E 's#^listening on (http://127\.0\.0\.1:[0-9]+/)$#\1#')
echo "# server at $url (pid $server_pid); screenshots in $dst"

(cd "$dst" && node job_status.e2e.mjs --url "$url" --out "$dst" --chromium "$chromium_bin")
rc=$?
if ((rc != 0)); then
    echo "# server stderr:"; cat "$work/server.err"
fi
exit "$rc"
