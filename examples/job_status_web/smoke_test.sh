#!/usr/bin/env bash
# HTTP smoke test of job_status_web with curl: starts the server on a free port, then checks
# POST + SSE to `done` (with the right result), a late client getting the final state at once,
# unknown ids (404), bad input (400), wrong routes and methods, a failing job (`error` event),
# a client that leaves mid-stream (its watcher is cleaned up, the server goes on), 50
# concurrent SSE clients all reaching `done`, and a clean exit on SIGTERM.
# Usage: smoke_test.sh path/to/job_status_web      Exit 77 (CTest SKIP) when curl is missing,
# unless COURIER_REQUIRE_WEB_TESTS=1 (scripts/test sets it after installing curl): then it fails.
set -uo pipefail

server_bin=${1:?usage: smoke_test.sh path/to/job_status_web}
if ! command -v curl >/dev/null 2>&1; then
    echo "SKIP: curl is not installed (Debian package: curl)"
    [[ ${COURIER_REQUIRE_WEB_TESTS:-} == 1 ]] && { echo "FAIL - COURIER_REQUIRE_WEB_TESTS=1"; exit 1; }
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/job_status_web_smoke.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null
    fi
    jobs -p | xargs -r kill 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

failures=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
check() {  # check "description" command...
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
json_field() {  # json_field NAME < flat JSON: the string or number value of a top-level field
    sed -nE "s/.*\"$1\":\"?([^\",}]*)\"?.*/\1/p"
}
# wait_for SECONDS command...: polls until the command succeeds or the deadline passes.
wait_for() {
    local limit=$1; shift
    local deadline=$((SECONDS + limit))
    until "$@"; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.05
    done
}

# --- start the server on a free port ------------------------------------------------------
: >"$work/server.out"  # exists before the server writes to it, for the greps below
"$server_bin" --port 0 --workers 4 --http-threads 2 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
if ! wait_for 20 grep -q '^listening on http://127.0.0.1:[0-9]*/$' "$work/server.out"; then
    echo "FAIL - the server did not print its address"; cat "$work/server.out" "$work/server.err"; exit 1
fi
base=$(head -1 "$work/server.out" | sed -E 's#^listening on (http://127\.0\.0\.1:[0-9]+)/$#\1#')
echo "# server at $base (pid $server_pid)"

# The sum of r % 97 for every row r of a report of $1 steps (100 rows a step), as the job computes it.
expected_total() { awk -v n="$1" 'BEGIN { t = 0; for (r = 0; r < n * 100; r++) t += r % 97; print t }'; }
post() { curl -s -X POST "$base/reports$1"; }

# --- 1. POST answers at once, SSE streams progress to done --------------------------------
t0=$(date +%s%N)
resp=$(post "?steps=10&step_ms=200")
t1=$(date +%s%N)
id=$(json_field id <<<"$resp")
check "POST /reports answers with a job id ($resp)" test -n "$id"
# The job takes 2 s; the answer must come well before it could have finished.
check "POST /reports does not wait for the job (took $(((t1 - t0) / 1000000)) ms < 1500 ms)" test $(((t1 - t0) / 1000000)) -lt 1500
curl -sN --max-time 30 -D "$work/sse1.head" "$base/status/$id" >"$work/sse1.txt"
check "the SSE response is text/event-stream" grep -qi '^content-type: text/event-stream' "$work/sse1.head"
percents=$(grep -A1 '^event: progress' "$work/sse1.txt" | json_field percent | tr '\n' ' ')
check "progress events arrive in order up to 100 ($percents)" \
    bash -c '[[ "$1" == *"90 100 " ]] && sort -n -c <(tr " " "\n" <<<"$1" | grep .)' _ "$percents"
check "the stream ends with one done event" test "$(grep -c '^event: ' "$work/sse1.txt")" -eq "$(( $(grep -c '^event: progress' "$work/sse1.txt") + 1 ))"
check "the last event is done" bash -c "grep '^event: ' '$work/sse1.txt' | tail -1 | grep -q '^event: done$'"
done_data=$(grep -A1 '^event: done' "$work/sse1.txt" | tail -1)
check "done carries the job's result (total $(expected_total 10))" \
    grep -q "\"total\":$(expected_total 10)" <<<"$done_data"
check "done carries 1000 rows" grep -q '"rows":1000' <<<"$done_data"

# --- 2. a client arriving after the end gets the final state at once ----------------------
t0=$(date +%s%N)
late=$(curl -sN --max-time 10 "$base/status/$id")
t1=$(date +%s%N)
check "a late client gets done immediately ($(((t1 - t0) / 1000000)) ms)" \
    bash -c '[[ $(grep -c "^event: " <<<"$1") == 1 ]] && grep -q "^event: done" <<<"$1" && (( $2 < 2000 ))' _ "$late" $(((t1 - t0) / 1000000))

# --- 3. unknown ids, bad input, wrong routes and methods ----------------------------------
code=$(curl -s -o "$work/404.json" -w '%{http_code}' "$base/status/01a22000-0000-7000-8000-000000000000")
check "an unknown job id gives 404 ($code)" test "$code" = 404
check "the 404 says why in JSON" grep -q '"error":"\[courier.example.unknown_job\] no job with id' "$work/404.json"
code=$(curl -s -o "$work/404b.json" -w '%{http_code}' "$base/status/not-a-uuid")
check "a malformed id gives 404 too ($code)" bash -c "[[ $code == 404 ]] && grep -q unknown_job '$work/404b.json'"
code=$(curl -s -o "$work/400.json" -w '%{http_code}' -X POST "$base/reports?steps=0")
check "steps=0 is refused with 400 ($code: $(cat "$work/400.json"))" bash -c "[[ $code == 400 ]] && grep -q 'steps must be in 1..1000' '$work/400.json'"
code=$(curl -s -o "$work/400b.json" -w '%{http_code}' -X POST -d '{"fail": tru' "$base/reports")
check "a broken JSON body is refused with 400 ($code)" test "$code" = 400
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/reports")
check "GET /reports is 405 ($code)" test "$code" = 405
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/nowhere")
check "an unknown route is 404 ($code)" test "$code" = 404
page=$(curl -s -w '\n%{content_type}' "$base/")
check "GET / serves the HTML page with an EventSource" bash -c 'grep -q "new EventSource" <<<"$1" && grep -q "^text/html" <<<"$(tail -1 <<<"$1")"' _ "$page"

# --- 4. a failing job ends with an error event and its reason ------------------------------
fid=$(post "?steps=4&step_ms=50&fail=1" | json_field id)
curl -sN --max-time 30 "$base/status/$fid" >"$work/fail.txt"
check "a failing job ends with an error event" bash -c "grep '^event: ' '$work/fail.txt' | tail -1 | grep -q '^event: error$'"
check "the error event gives the reason" grep -q '"error":"\[courier.example.report_failed\] step 2 of 4 failed' "$work/fail.txt"
check "the error event says the job is dead (in the dead-letter store)" grep -q '"state":"dead"' "$work/fail.txt"
fid2=$(curl -s -X POST -d '{"fail": true, "steps": 2, "step_ms": 10}' "$base/reports" | json_field id)
check "a JSON body can ask for a failure too" bash -c "curl -sN --max-time 30 '$base/status/$fid2' | grep -q '^event: error'"

# --- 5. a client leaving mid-stream is cleaned up; the server goes on ----------------------
did=$(post "?steps=20&step_ms=100" | json_field id)
curl -sN --max-time 30 "$base/status/$did" >"$work/leave.txt" &
leaver=$!
wait_for 10 grep -q '"percent":10' "$work/leave.txt"
check "the leaving client saw progress before it left" grep -q '"percent":10' "$work/leave.txt"
kill "$leaver" 2>/dev/null; wait "$leaver" 2>/dev/null
watchers_zero() { curl -s "$base/stats" | grep -q '"sse_streams":0,.*"watchers":0'; }
check "its SSE stream and watcher are gone within 5 s" wait_for 5 watchers_zero
check "its job still completes" bash -c "curl -sN --max-time 30 '$base/status/$did' | grep -q '^event: done'"

# --- 6. 50 concurrent SSE clients on 10 jobs all reach done ---------------------------------
# 3 s jobs, 4 at a time: every client is connected long before the first job ends.
ids=()
for _ in $(seq 10); do ids+=("$(post "?steps=10&step_ms=300" | json_field id)"); done
pids=()
for i in $(seq 0 49); do
    curl -sN --max-time 60 "$base/status/${ids[$((i % 10))]}" >"$work/many.$i.txt" &
    pids+=($!)
done
streams_open() { curl -s "$base/stats" | grep -q '"sse_streams":50,'; }
check "the server holds 50 SSE streams at once" wait_for 10 streams_open
for p in "${pids[@]}"; do wait "$p"; done
reached=0
for i in $(seq 0 49); do
    grep -q '^event: done' "$work/many.$i.txt" && grep -q "\"total\":$(expected_total 10)" "$work/many.$i.txt" && reached=$((reached + 1))
done
check "all 50 clients reached done with the right result ($reached/50)" test "$reached" -eq 50
check "every stream and watcher is cleaned up afterwards" wait_for 5 watchers_zero
stats=$(curl -s "$base/stats")
echo "# stats: $stats"
check "no job is left running, none untracked" bash -c 'grep -q "\"jobs_live\":0" <<<"$1" && grep -q "\"untracked_events\":0" <<<"$1"' _ "$stats"
# The connections of earlier curls close asynchronously: give the server a moment to see them go.
only_one_connection() { curl -s "$base/stats" | grep -q '"connections":1,'; }
check "only the asking connection is left open" wait_for 5 only_one_connection

# --- 7. SIGTERM stops it cleanly, also with a client streaming -----------------------------
sid=$(post "?steps=50&step_ms=100" | json_field id)
curl -sN --max-time 30 "$base/status/$sid" >"$work/term.txt" &
streamer=$!
wait_for 10 grep -q '"percent":2' "$work/term.txt"
kill -TERM "$server_pid"
rc=0
wait_for 15 bash -c "! kill -0 $server_pid 2>/dev/null" || rc=1
check "the server exits within 15 s of SIGTERM" test "$rc" -eq 0
wait "$server_pid"; server_rc=$?
server_pid=""
check "its exit status is 0 ($server_rc)" test "$server_rc" -eq 0
check "it reports what it did on the way out" grep -q '^stopped: .* requests, .* jobs tracked' "$work/server.out"
check "the streaming client saw the connection end" wait_for 5 bash -c "! kill -0 $streamer 2>/dev/null"

if ((failures > 0)); then
    echo "# $failures check(s) failed; server stderr:"; cat "$work/server.err"
    exit 1
fi
echo "# all checks passed"
