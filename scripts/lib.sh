#!/usr/bin/env bash
# Shared by scripts/*: install missing Debian packages, configure with Ninja (+ ccache), build.
set -euo pipefail

COURIER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COURIER_BASE_PACKAGES=(cmake ninja-build g++ pkg-config ccache python3
                       libconcurrentqueue-dev libboost-dev nlohmann-json3-dev catch2)
# The peers courier-bench compares against (and its micro-benchmarks and charts).
COURIER_BENCH_PACKAGES=(libatomic-queue-dev libtbb-dev libzmq3-dev libcaf-dev libbenchmark-dev gnuplot-nox)
# The bridges' client libraries and the servers their tests and benchmarks start on 127.0.0.1
# (scripts/services/*.sh). Each courier::bridge_<name> target exists only when its library is found.
COURIER_BRIDGE_PACKAGES=(libhiredis-dev libnats-dev librdkafka-dev librabbitmq-dev
                         redis-server nats-server rabbitmq-server)

# examples/job_status_web's tests: curl for the HTTP smoke test, Debian's Chromium for the
# browser test (driven by playwright-core from npm, never a downloaded browser).
COURIER_WEB_TEST_PACKAGES=(curl chromium)

# courier_ensure_packages PKG...: installs those that are missing (apt-get update first).
courier_ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "courier: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# courier_jobs: parallel build jobs (all cores; 2 here).
courier_jobs() { nproc 2>/dev/null || echo 2; }

# courier_configure BUILD_DIR CMAKE_ARGS...: configures with Ninja, ccache when present.
courier_configure() {
    local dir="$1"; shift
    local launcher=()
    if command -v ccache >/dev/null 2>&1; then
        launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
        # PCH and __DATE__ would otherwise defeat the cache.
        export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
        export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
        # Paths relative to the checkout, so a second clone (CI's) hits the same cache entries.
        export CCACHE_BASEDIR="$COURIER_ROOT" CCACHE_NOHASHDIR=1
    fi
    cmake -S "$COURIER_ROOT" -B "$dir" -G Ninja "${launcher[@]}" "$@" >/dev/null
}
