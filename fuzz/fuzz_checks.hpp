// The properties every fuzz harness checks, shared by the libFuzzer entry points
// (fuzz/*.fuzz.cpp) and the Catch2 test that replays the seed corpus and the regression inputs
// (tests/reliability/fuzz_replay.test.cpp), so plain CI checks the same things a fuzzer does.
// A broken property calls `courier_fuzz::fail`, which aborts (libFuzzer keeps the input) unless
// the caller installed another handler (the replay test throws instead).
#pragma once

#include <courier/bridge/detail/wire.hpp>
#include <courier/bridge/detail/wire_kafka.hpp>
#include <courier/bridge/detail/wire_nats.hpp>
// The Redis and AMQP mappings read their client library's structs (only its header is needed:
// nothing of it is called, so nothing is linked); without the header that branch is left out.
#if __has_include(<hiredis/hiredis.h>)
#include <courier/bridge/detail/wire_redis.hpp>
#define COURIER_FUZZ_BRIDGE_REDIS 1
#endif
#if __has_include(<rabbitmq-c/amqp.h>) || __has_include(<amqp.h>)
#include <courier/bridge/detail/wire_amqp.hpp>
#define COURIER_FUZZ_BRIDGE_AMQP 1
#endif
#include <courier/event/cloudevents.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/topic_pattern.hpp>
#include <courier/saga/file_journal.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace courier_fuzz {

/// Called with a description when a property does not hold.
using failure_handler = void (*)(const std::string& what);

inline void abort_on_failure(const std::string& what) {
    std::fprintf(stderr, "courier fuzz: property violated: %s\n", what.c_str());
    std::abort();
}
inline failure_handler& on_failure() {
    static failure_handler h = &abort_on_failure;
    return h;
}
inline void fail(const std::string& what) { on_failure()(what); }

#define COURIER_FUZZ_CHECK(cond, what)                                                   \
    do {                                                                                 \
        if (!(cond)) ::courier_fuzz::fail(std::string(#cond " -- ") + std::string(what)); \
    } while (0)

/// True when every byte of `s` is printable ASCII: what an error message must be, so that
/// hostile input echoed in it cannot forge log lines.
inline bool printable(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c >= 0x7F) return false;
    return true;
}

/// Error messages start with a stable "[courier.<area>.<what>] " id and are printable.
inline void check_error_message(const courier::error& e, std::string_view id_prefix) {
    COURIER_FUZZ_CHECK(e.message.rfind(id_prefix, 0) == 0, "error id: " + e.message);
    COURIER_FUZZ_CHECK(e.message.find("] ") != std::string::npos, "error id is closed: " + e.message);
    COURIER_FUZZ_CHECK(printable(e.message), "error message is printable ASCII: " + courier::detail::quote_for_message(e.message, 400));
}

/// Limits large enough that a re-encoded value is never rejected for its size.
inline courier::decode_limits generous_limits() {
    courier::decode_limits l;
    l.max_bytes = std::size_t{1} << 30;
    l.max_depth = 1 << 20;
    l.max_headers = 1 << 20;
    return l;
}

/// Small limits, so the limit paths are reached by ordinary inputs too.
inline courier::decode_limits tight_limits() {
    courier::decode_limits l;
    l.max_bytes = 512;
    l.max_depth = 3;
    l.max_headers = 2;
    return l;
}

inline bool is_limit_error(const courier::error& e) { return e == courier::errc::limit_exceeded; }

// ---------------------------------------------------------------------------------- envelope

/// decode never crashes; errors carry an id; what decodes re-encodes to text that decodes to
/// the same envelope (after the first round trip, which rounds the timestamp to microseconds
/// and normalizes the JSON), and the CloudEvents mapping of it decodes back.
inline void check_envelope(std::string_view bytes) {
    for (const auto& limits : {courier::decode_limits{}, tight_limits()}) {
        auto e = courier::decode(bytes, limits);
        if (!e) {
            check_error_message(e.error(), "[courier.envelope.");
            COURIER_FUZZ_CHECK(e.error() == courier::errc::malformed_envelope || is_limit_error(e.error()),
                               "error code of " + e.error().message);
            continue;
        }
        COURIER_FUZZ_CHECK(bytes.size() <= limits.max_bytes, "accepted more than max_bytes");
        COURIER_FUZZ_CHECK(e->headers.size() <= limits.max_headers, "accepted more than max_headers");
        COURIER_FUZZ_CHECK(courier::event_name::is_valid(e->event_type), "decoded an invalid event_type");
        const std::string once = courier::encode(*e);
        auto again = courier::decode(once, generous_limits());
        COURIER_FUZZ_CHECK(again.has_value(), "encode(decode(x)) does not decode: " +
                                                  (again ? std::string() : again.error().message) + "\n" + once);
        const std::string twice = courier::encode(*again);
        COURIER_FUZZ_CHECK(twice == once, "encode/decode is not a fixpoint:\n" + once + "\n" + twice);
        // value form agrees with the text form
        auto from_value = courier::from_json_value(courier::to_json_value(*again), generous_limits());
        COURIER_FUZZ_CHECK(from_value.has_value(), "from_json_value(to_json_value(e)) fails");
        COURIER_FUZZ_CHECK(courier::encode(*from_value) == once, "json value round trip differs");
        // and the CloudEvents mapping carries everything but an empty producer
        auto ce = courier::from_cloudevent(courier::to_cloudevent(*again), generous_limits());
        COURIER_FUZZ_CHECK(ce.has_value(), "from_cloudevent(to_cloudevent(e)) fails: " +
                                               (ce ? std::string() : ce.error().message) + "\n" +
                                               courier::to_cloudevent(*again));
        if (!again->metadata.producer.empty()) {
            COURIER_FUZZ_CHECK(courier::encode(*ce) == once, "CloudEvents round trip differs:\n" + once + "\n" +
                                                                courier::encode(*ce));
        }
    }
}

// ------------------------------------------------------------------------------- CloudEvents

/// from_cloudevent never crashes; errors carry an id; what decodes maps to a CloudEvent that
/// decodes to the same envelope.
inline void check_cloudevent(std::string_view bytes) {
    for (const auto& limits : {courier::decode_limits{}, tight_limits()}) {
        auto e = courier::from_cloudevent(bytes, limits);
        if (!e) {
            check_error_message(e.error(), "[courier.cloudevent.");
            COURIER_FUZZ_CHECK(e.error() == courier::errc::malformed_envelope || is_limit_error(e.error()),
                               "error code of " + e.error().message);
            continue;
        }
        COURIER_FUZZ_CHECK(bytes.size() <= limits.max_bytes, "accepted more than max_bytes");
        COURIER_FUZZ_CHECK(e->headers.size() <= limits.max_headers, "accepted more than max_headers");
        COURIER_FUZZ_CHECK(!e->metadata.producer.empty(), "decoded an empty source");
        const std::string once = courier::to_cloudevent(*e);
        auto again = courier::from_cloudevent(once, generous_limits());
        COURIER_FUZZ_CHECK(again.has_value(), "from_cloudevent(to_cloudevent(e)) fails: " +
                                                  (again ? std::string() : again.error().message) + "\n" + once);
        COURIER_FUZZ_CHECK(courier::to_cloudevent(*again) == once, "CloudEvents round trip is not a fixpoint");
        // the envelope wire form carries the same event
        auto env = courier::decode(courier::encode(*again), generous_limits());
        COURIER_FUZZ_CHECK(env.has_value(), "decode(encode(e)) fails for a decoded CloudEvent");
        COURIER_FUZZ_CHECK(courier::to_cloudevent(*env) == once, "envelope round trip of a CloudEvent differs");
    }
}

// ------------------------------------------------------------------------------- event names

/// The grammar, written the obvious way: segments split at '.', at least two lowercase
/// segments then `v<N>`, N in 1..999999999 without leading zeros, at most 255 characters.
inline bool reference_event_name_valid(std::string_view s, int* version = nullptr) {
    if (s.empty() || s.size() > 255) return false;
    std::vector<std::string_view> segs;
    std::size_t b = 0;
    for (;;) {
        const auto dot = s.find('.', b);
        segs.push_back(s.substr(b, dot == std::string_view::npos ? std::string_view::npos : dot - b));
        if (dot == std::string_view::npos) break;
        b = dot + 1;
    }
    if (segs.size() < 3) return false;
    for (std::size_t i = 0; i + 1 < segs.size(); ++i) {
        const auto seg = segs[i];
        if (seg.empty() || !(seg[0] >= 'a' && seg[0] <= 'z')) return false;
        for (char c : seg)
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    const auto v = segs.back();
    if (v.size() < 2 || v.size() > 10 || v[0] != 'v' || v[1] == '0') return false;
    long long n = 0;
    for (std::size_t i = 1; i < v.size(); ++i) {
        if (v[i] < '0' || v[i] > '9') return false;
        n = n * 10 + (v[i] - '0');
    }
    if (version) *version = static_cast<int>(n);
    return true;
}

inline void check_event_name(std::string_view s) {
    int want_version = 0;
    const bool valid = reference_event_name_valid(s, &want_version);
    COURIER_FUZZ_CHECK(courier::event_name::is_valid(s) == valid, "is_valid disagrees with the grammar");
    auto n = courier::event_name::parse(s);
    COURIER_FUZZ_CHECK(n.has_value() == valid, "parse disagrees with the grammar");
    if (!n) {
        check_error_message(n.error(), "[courier.event.invalid_name] ");
        COURIER_FUZZ_CHECK(n.error() == courier::errc::invalid_name, "error code");
        COURIER_FUZZ_CHECK(!courier::owned_event_name::parse(s).has_value(), "owned parse accepts");
        return;
    }
    COURIER_FUZZ_CHECK(n->str() == s, "str()");
    COURIER_FUZZ_CHECK(n->version() == want_version, "version()");
    COURIER_FUZZ_CHECK(std::string(n->base()) + ".v" + std::to_string(n->version()) == s, "base() + version");
    std::string joined;
    for (std::size_t i = 0; i < n->segment_count(); ++i) {
        if (i) joined += '.';
        joined += n->segment(i);
    }
    COURIER_FUZZ_CHECK(joined == s, "segments join to the name");
    COURIER_FUZZ_CHECK(n->segment(n->segment_count()).empty(), "segment past the end is empty");
    // with_version gives a valid name, or refuses one past the length limit with a typed error
    const int next_version = n->version() == 999'999'999 ? 1 : n->version() + 1;
    const std::size_t next_size = n->base().size() + 2 + std::to_string(next_version).size();
    std::string next;
    try {
        next = n->with_version(next_version);
        COURIER_FUZZ_CHECK(next.size() == next_size && courier::event_name::is_valid(next), "with_version gives a valid name");
    } catch (const courier::courier_error& e) {
        COURIER_FUZZ_CHECK(next_size > 255, "with_version refused a name within the limit: " + e.err().message);
        check_error_message(e.err(), "[courier.event.name_too_long] ");
    }
    auto owned = courier::owned_event_name::parse(s);
    COURIER_FUZZ_CHECK(owned && owned->view() == *n && owned->base() == n->base(), "owned_event_name agrees");
    // every valid name is a valid exact pattern that matches itself and nothing else of its base
    auto p = courier::topic_pattern::parse(s);
    COURIER_FUZZ_CHECK(p && p->is_exact() && p->matches(s), "a name is an exact pattern matching itself");
    COURIER_FUZZ_CHECK(next.empty() || !p->matches(next), "an exact pattern matches only its name");
}

// ---------------------------------------------------------------------------- topic patterns

inline std::vector<std::string_view> split_segments(std::string_view s) {
    std::vector<std::string_view> out;
    if (s.empty()) return out;  // the empty subject has no segments
    std::size_t b = 0;
    for (;;) {
        const auto dot = s.find('.', b);
        out.push_back(s.substr(b, dot == std::string_view::npos ? std::string_view::npos : dot - b));
        if (dot == std::string_view::npos) return out;
        b = dot + 1;
    }
}

inline bool reference_pattern_valid(std::string_view s) {
    if (s.empty() || s.size() > 255) return false;
    const auto segs = split_segments(s);
    for (std::size_t i = 0; i < segs.size(); ++i) {
        const auto seg = segs[i];
        if (seg == "*" || seg == "#") continue;
        if (seg == ">") {
            if (i + 1 != segs.size()) return false;
            continue;
        }
        if (seg.empty() || !(seg[0] >= 'a' && seg[0] <= 'z')) return false;
        for (char c : seg)
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

/// The matcher written the slow, obviously correct way: a memoized recursion over
/// (pattern segment, subject segment) straight from the definitions: `*` one segment, `#`
/// zero or more, `>` one or more, a literal equal to the segment.
inline bool reference_match(std::string_view pattern, std::string_view subject) {
    const auto p = split_segments(pattern);
    const auto s = split_segments(subject);
    const std::size_t P = p.size(), S = s.size();
    std::vector<signed char> memo((P + 1) * (S + 1), -1);
    auto rec = [&](auto& self, std::size_t i, std::size_t j) -> bool {
        auto& m = memo[i * (S + 1) + j];
        if (m >= 0) return m != 0;
        bool r;
        if (i == P) {
            r = j == S;
        } else if (p[i] == "#") {
            r = self(self, i + 1, j) || (j < S && self(self, i, j + 1));
        } else if (p[i] == "*") {
            r = j < S && self(self, i + 1, j + 1);
        } else if (p[i] == ">") {
            r = j < S && (self(self, i + 1, j + 1) || self(self, i, j + 1));
        } else {
            r = j < S && p[i] == s[j] && self(self, i + 1, j + 1);
        }
        m = r ? 1 : 0;
        return r;
    };
    return rec(rec, 0, 0);
}

inline void check_topic_pattern(std::string_view s) {
    const bool valid = reference_pattern_valid(s);
    COURIER_FUZZ_CHECK(courier::topic_pattern::is_valid(s) == valid, "is_valid disagrees with the grammar");
    auto p = courier::topic_pattern::parse(s);
    COURIER_FUZZ_CHECK(p.has_value() == valid, "parse disagrees with the grammar");
    if (!p) {
        check_error_message(p.error(), "[courier.event.invalid_pattern] ");
        COURIER_FUZZ_CHECK(p.error() == courier::errc::invalid_pattern, "error code");
        return;
    }
    COURIER_FUZZ_CHECK(p->str() == s, "str()");
    const bool exact = s.find_first_of("*#>") == std::string_view::npos;
    COURIER_FUZZ_CHECK(p->is_exact() == exact, "is_exact()");
    std::string joined;
    for (std::size_t i = 0; i < p->segment_count(); ++i) {
        if (i) joined += '.';
        joined += p->segment(i);
    }
    COURIER_FUZZ_CHECK(joined == s, "segments join to the pattern");
    auto owned = courier::owned_topic_pattern::parse(s);
    COURIER_FUZZ_CHECK(owned && owned->view() == *p && owned->is_exact() == exact, "owned_topic_pattern agrees");
    // A pattern matches the subject made by replacing its wildcards with one literal segment.
    std::string subject;
    for (std::size_t i = 0; i < p->segment_count(); ++i) {
        if (i) subject += '.';
        const auto seg = p->segment(i);
        subject += (seg == "*" || seg == "#" || seg == ">") ? std::string_view("x") : seg;
    }
    COURIER_FUZZ_CHECK(p->matches(subject), "a pattern matches its own instance '" + subject + "'");
    COURIER_FUZZ_CHECK(reference_match(s, subject), "reference matches the instance");
}

/// Input: a pattern and a subject separated by the first newline (a NUL works as well).
/// Valid patterns are matched by `topic_pattern::matches`, `owned_topic_pattern::matches` and
/// the reference; all three must agree on every subject, however malformed.
inline void check_pattern_match(std::string_view input) {
    const auto cut = input.find_first_of(std::string_view("\n\0", 2));
    const std::string_view pattern = input.substr(0, cut);
    const std::string_view subject = cut == std::string_view::npos ? std::string_view() : input.substr(cut + 1);
    auto p = courier::topic_pattern::parse(pattern);
    if (!p) return;  // check_topic_pattern covers invalid patterns
    const bool want = reference_match(pattern, subject);
    COURIER_FUZZ_CHECK(p->matches(subject) == want, "matcher disagrees with the reference: pattern '" +
                                                         std::string(pattern) + "' subject '" + std::string(subject) +
                                                         "' reference says " + (want ? "match" : "no match"));
    COURIER_FUZZ_CHECK(courier::owned_topic_pattern(*p).matches(subject) == want, "owned matcher disagrees");
    if (auto name = courier::event_name::parse(subject)) {
        COURIER_FUZZ_CHECK(p->matches(*name) == want, "event_name overload disagrees");
    }
}

// ----------------------------------------------------------------------------- saga journal

/// A journal file to load from: one per process, rewritten for each input.
inline const std::string& journal_scratch_path() {
    static const std::string path = [] {
        const char* dir = std::getenv("TMPDIR");
        return std::string(dir && *dir ? dir : "/tmp") + "/courier-fuzz-journal-" + std::to_string(::getpid()) + ".log";
    }();
    return path;
}

/// Turns fuzz bytes into a journal file. The first byte chooses the form: odd -> every line is
/// taken as a record's JSON and wrapped with its correct checksum (so the record parser is
/// reached, not just the checksum test); even -> the bytes are the file as they are.
inline std::string journal_file_from_input(std::string_view input) {
    if (input.empty() || (static_cast<unsigned char>(input[0]) & 1u) == 0) return std::string(input.substr(input.empty() ? 0 : 1));
    input.remove_prefix(1);
    std::string file;
    std::size_t b = 0;
    while (b <= input.size()) {
        auto nl = input.find('\n', b);
        const bool last = nl == std::string_view::npos;
        const auto rec = input.substr(b, last ? std::string_view::npos : nl - b);
        char crc[9];
        std::snprintf(crc, sizeof crc, "%08x", courier::detail::crc32(rec));
        file.append("{\"crc\":\"").append(crc, 8).append("\",\"rec\":").append(rec).append("}");
        if (last) break;  // the last line has no newline: a torn tail
        file += '\n';
        b = nl + 1;
    }
    return file;
}

/// file_journal reads any file without crashing: either the records (a torn tail cut off,
/// after which the file re-reads to the same records and accepts an append), or an error
/// naming the file and line.
inline void check_saga_journal(std::string_view input) {
    const std::string file = journal_file_from_input(input);
    const std::string& path = journal_scratch_path();
    {
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        COURIER_FUZZ_CHECK(fd >= 0, "scratch journal opens");
        std::size_t off = 0;
        while (off < file.size()) {
            const auto n = ::write(fd, file.data() + off, file.size() - off);
            COURIER_FUZZ_CHECK(n > 0, "scratch journal written");
            off += static_cast<std::size_t>(n);
        }
        ::close(fd);
    }
    std::vector<courier::journal_record> first;
    {
        courier::file_journal j(path, {.fsync = courier::fsync_policy::never});
        auto loaded = j.load();
        if (!loaded) {
            check_error_message(loaded.error(), "[courier.saga.journal_corrupt] ");
            COURIER_FUZZ_CHECK(loaded.error().message.find(path) != std::string::npos, "the error names the file");
            ::unlink(path.c_str());
            return;
        }
        first = std::move(*loaded);
        for (const auto& r : first) {
            // what was read writes back to a line that reads the same
            const auto line = courier::file_journal::encode(r);
            auto j2 = nlohmann::json::parse(line.substr(line.find("\"rec\":") + 6, line.size() - line.find("\"rec\":") - 8),
                                            nullptr, false);
            COURIER_FUZZ_CHECK(!j2.is_discarded(), "an encoded record is JSON");
            auto back = courier::detail::record_from_json(j2);
            COURIER_FUZZ_CHECK(back.has_value(), "an encoded record decodes");
            COURIER_FUZZ_CHECK(courier::file_journal::encode(*back) == line, "record round trip");
        }
        // the repaired file accepts a record and reads it back after the others
        courier::journal_record extra;
        extra.saga_id = courier::uuid::parse("01890a5d-ac96-774b-bcce-b302099a8057").value();
        extra.seq = 1;
        extra.op = courier::journal_op::completed;
        COURIER_FUZZ_CHECK(j.append(extra).has_value(), "append after load");
    }
    {
        courier::file_journal j(path, {.fsync = courier::fsync_policy::never});
        COURIER_FUZZ_CHECK(!j.repaired_torn_tail(), "a repaired file has no torn tail");
        auto loaded = j.load();
        COURIER_FUZZ_CHECK(loaded.has_value(), "a repaired file loads");
        COURIER_FUZZ_CHECK(loaded->size() == first.size() + 1, "reloading keeps every record and the new one");
        COURIER_FUZZ_CHECK(loaded->back().op == courier::journal_op::completed, "the appended record comes last");
    }
    ::unlink(path.c_str());
}

// ---------------------------------------------------------------- bridge inbound decoding
// What a broker delivers reaches the bridge through its adapter's mapping (broker data ->
// wire_message: bridge/detail/wire_<adapter>.hpp), then from_wire decodes it, and what does not
// decode is dead-lettered by undecodable_record with the raw bytes. Input layout: byte 0 picks
// the adapter (mod 5: shared, redis, nats, kafka, amqp; an adapter left out of this build reads
// the rest as `shared`), the rest is that adapter's input, made of bytes, pieces (a length byte,
// 255 = two more bytes little-endian, then that many bytes) and the rest:
//   shared: key, event_id, event_type, header count (mod 8) x (name, value), payload = rest
//   redis:  shape (mod 8: 7 the entry is no array, 6 it has one element, 5 its fields are nil;
//           bit 3 = delivered before), entry id, element count (mod 17) x (kind: 0-4 string,
//           5 status, 6 integer, 7 nil; text); the elements are field, value, field, value...
//   nats:   subject, header count (mod 9) x (name, value count (mod 3) + 1 x value), data = rest
//   kafka:  topic, key, header count (mod 9) x (name, value), value = rest
//   amqp:   routing key, flags (bit 0 headers, 1 message-id, 2 type, 3 redelivered), message-id,
//           type, entry count (mod 9) x (key, kind (mod 19, see amqp_kinds), value), body = rest
inline std::string base64_decode(std::string_view in) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        const int v = val(c);
        if (v < 0) break;  // '=' padding ends the data
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    return out;
}

/// Reads a fuzz input as the pieces of one broker delivery (past the end: zeros and empty pieces).
class bridge_input {
public:
    explicit bridge_input(std::string_view in) noexcept : in_(in) {}
    unsigned byte() noexcept {
        if (in_.empty()) return 0;
        const auto b = static_cast<unsigned char>(in_.front());
        in_.remove_prefix(1);
        return b;
    }
    std::uint64_t u64() noexcept {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= std::uint64_t{byte()} << (8 * i);
        return v;
    }
    std::string_view piece() noexcept {
        std::size_t n = byte();
        if (n == 255) {
            n = byte();
            n |= std::size_t{byte()} << 8;
        }
        n = std::min(n, in_.size());
        const auto p = in_.substr(0, n);
        in_.remove_prefix(n);
        return p;
    }
    std::string_view rest() noexcept { return std::exchange(in_, std::string_view()); }

private:
    std::string_view in_;
};

using header_list = std::vector<std::pair<std::string, std::string>>;

/// Decoding what an adapter made of a delivery: never crashes; errors carry an id and are
/// printable; what does not decode makes a dead letter that keeps the exact bytes; what does
/// goes back to the wire and decodes to the same envelope.
inline void check_wire_inbound(const courier::bridge::inbound_message& m) {
    for (const auto& limits : {courier::decode_limits{}, tight_limits()}) {
        auto e = courier::bridge::detail::from_wire(m.message, limits);
        // As the bridge ingests it (data kept as checked text): the same verdict, and the text
        // parses to the same data.
        std::string_view data_text;
        auto kept = courier::bridge::detail::from_wire(m.message, limits, &data_text);
        COURIER_FUZZ_CHECK(kept.has_value() == e.has_value(), "keeping the data as text changed the verdict");
        if (kept && !data_text.empty()) {
            COURIER_FUZZ_CHECK(kept->data.is_null(), "data kept as text has a document too");
            kept->data = courier::bridge::detail::parse_data_text(data_text);
        }
        COURIER_FUZZ_CHECK(!kept || courier::encode(*kept) == courier::encode(*e), "data kept as text parses to other data");
        if (!e) {
            check_error_message(e.error(), "[courier.envelope.");
            COURIER_FUZZ_CHECK(e.error() == courier::errc::malformed_envelope || is_limit_error(e.error()),
                               "error code of " + e.error().message);
            // Undecodable: the dead letter keeps the exact bytes and is itself valid JSON.
            const auto d = courier::bridge::detail::undecodable_record(m, "fuzz", "bridge:fuzz", e.error().message,
                                                                       courier::time_point{});
            const std::string text = courier::encode(d.message);  // throws on invalid UTF-8
            auto back = courier::decode(text, generous_limits());
            COURIER_FUZZ_CHECK(back.has_value(), "the undecodable record does not decode: " + text);
            COURIER_FUZZ_CHECK(base64_decode(back->data.at("raw_base64").get<std::string>()) == m.message.payload,
                               "raw_base64 does not give back the payload");
            COURIER_FUZZ_CHECK(!back->data.contains("raw") || back->data.at("raw").get<std::string>() == m.message.payload,
                               "raw differs from the payload");
            COURIER_FUZZ_CHECK(back->data.at("delivery_count").get<std::uint32_t>() == m.delivery_count,
                               "the delivery count was lost");
            continue;
        }
        COURIER_FUZZ_CHECK(m.message.payload.size() <= limits.max_bytes, "accepted more than max_bytes");
        COURIER_FUZZ_CHECK(e->headers.size() <= limits.max_headers + 1, "accepted more than max_headers");  // + the wire key
        COURIER_FUZZ_CHECK(courier::event_name::is_valid(e->event_type), "decoded an invalid event_type");
        if (!m.message.key.empty()) {
            COURIER_FUZZ_CHECK(e->headers.count(std::string(courier::bridge::detail::header_key)) == 1,
                               "the wire key was lost");
        }
        // What the bridge would forward again decodes to the same envelope.
        const auto w = courier::bridge::detail::to_wire(*e, "orders");
        auto again = courier::bridge::detail::from_wire(w, generous_limits());
        COURIER_FUZZ_CHECK(again.has_value() && courier::encode(*again) == courier::encode(*e),
                           "to_wire(from_wire(x)) does not round trip");
    }
}

/// The fields and headers an adapter must have taken, in order, for the documented rules.
inline void check_headers_taken(const courier::bridge::wire_message& m, const header_list& expected) {
    COURIER_FUZZ_CHECK(m.headers == expected, "headers differ from those delivered (" + std::to_string(m.headers.size()) +
                                                  " vs " + std::to_string(expected.size()) + ")");
}

inline void check_shared_inbound(bridge_input in) {
    courier::bridge::inbound_message m;
    m.message.topic = "orders";
    m.message.key = std::string(in.piece());
    m.message.event_id = std::string(in.piece());  // brokers hand us arbitrary header bytes too
    m.message.event_type = std::string(in.piece());
    for (unsigned n = in.byte() % 8; n > 0; --n) {
        std::string name(in.piece());
        m.message.headers.emplace_back(std::move(name), std::string(in.piece()));
    }
    m.message.payload = std::string(in.rest());
    m.tag.id = m.message.payload.substr(0, 8);
    check_wire_inbound(m);
}

#ifdef COURIER_FUZZ_BRIDGE_REDIS
inline void check_redis_inbound(bridge_input in) {
    namespace d = courier::bridge::detail;
    const unsigned shape = in.byte();
    const std::uint32_t deliveries = (shape & 8) != 0 ? 2 : 1;
    const std::string id(in.piece());
    const std::size_t count = in.byte() % 17;
    // The reply hiredis would hand over, built by hand (texts first: the replies point into them).
    std::vector<std::string> texts;
    std::vector<int> kinds;
    for (std::size_t i = 0; i < count; ++i) {
        const unsigned k = in.byte() % 8;
        kinds.push_back(k <= 4 ? REDIS_REPLY_STRING : k == 5 ? REDIS_REPLY_STATUS : k == 6 ? REDIS_REPLY_INTEGER : REDIS_REPLY_NIL);
        texts.emplace_back(in.piece());
    }
    std::vector<redisReply> elements(count);
    std::vector<redisReply*> element_ptrs(count);
    for (std::size_t i = 0; i < count; ++i) {
        redisReply& r = elements[i];
        r = redisReply{};
        r.type = kinds[i];
        if (kinds[i] == REDIS_REPLY_STRING || kinds[i] == REDIS_REPLY_STATUS) {
            r.str = texts[i].data();
            r.len = texts[i].size();
        } else if (kinds[i] == REDIS_REPLY_INTEGER) {
            r.integer = static_cast<long long>(texts[i].size());
        }
        element_ptrs[i] = &r;
    }
    std::string id_text = id;
    redisReply id_reply{}, fields{}, entry{};
    id_reply.type = REDIS_REPLY_STRING;
    id_reply.str = id_text.data();
    id_reply.len = id_text.size();
    fields.type = shape % 8 == 5 ? REDIS_REPLY_NIL : REDIS_REPLY_ARRAY;
    if (fields.type == REDIS_REPLY_ARRAY) {
        fields.elements = count;
        fields.element = element_ptrs.data();
    }
    redisReply* entry_elements[2] = {&id_reply, &fields};
    entry.type = shape % 8 == 7 ? REDIS_REPLY_STRING : REDIS_REPLY_ARRAY;
    if (entry.type == REDIS_REPLY_ARRAY) {
        entry.elements = shape % 8 == 6 ? 1 : 2;
        entry.element = entry_elements;
    } else {
        entry.str = id_text.data();
        entry.len = id_text.size();
    }

    courier::bridge::inbound_message m;
    const auto kind = d::redis_read_entry(&entry, "orders", deliveries, m);
    if (shape % 8 == 7 || shape % 8 == 6) {
        COURIER_FUZZ_CHECK(kind == d::redis_entry::malformed, "a malformed entry was read");
        return;
    }
    COURIER_FUZZ_CHECK(m.tag.id == id, "the entry id was lost");
    if (shape % 8 == 5) {
        COURIER_FUZZ_CHECK(kind == d::redis_entry::deleted, "a deleted entry (nil fields) was not reported for XACK");
        return;
    }
    COURIER_FUZZ_CHECK(kind == d::redis_entry::message, "an entry was not read as a message");
    COURIER_FUZZ_CHECK(m.message.topic == "orders" && m.delivery_count == deliveries, "topic or delivery count lost");
    // The fields courier writes fill the message (the last one wins); any other is a header.
    std::string envelope, event_type, event_id, key;
    bool has_envelope = false, all_utf8 = true;
    header_list others;
    nlohmann::json as_object = nlohmann::json::object();
    for (std::size_t f = 0; f + 1 < count; f += 2) {
        const std::string name = elements[f].str ? texts[f] : std::string();
        const std::string value = elements[f + 1].str ? texts[f + 1] : std::string();
        if (name == "envelope") {
            envelope = value;
            has_envelope = true;
        } else if (name == "event_type") {
            event_type = value;
        } else if (name == "event_id") {
            event_id = value;
        } else if (name == "key") {
            key = value;
        } else {
            others.emplace_back(name, value);
        }
        all_utf8 = all_utf8 && d::valid_utf8(name) && d::valid_utf8(value);
        if (all_utf8) as_object[name] = value;
    }
    COURIER_FUZZ_CHECK(m.message.event_type == event_type && m.message.event_id == event_id && m.message.key == key,
                       "event_type, event_id or key differ from the entry's fields");
    check_headers_taken(m.message, others);
    if (has_envelope) {
        COURIER_FUZZ_CHECK(m.message.payload == envelope, "the envelope field was not taken as the payload");
    } else {
        // Another tool's entry: all of its fields as a JSON object (when they are text), which
        // is never an envelope.
        if (all_utf8) {
            auto parsed = nlohmann::json::parse(m.message.payload, nullptr, false);
            COURIER_FUZZ_CHECK(!parsed.is_discarded() && parsed == as_object,
                               "the fields of a foreign entry are not a JSON object of them: " + m.message.payload);
        }
        COURIER_FUZZ_CHECK(!d::from_wire(m.message, generous_limits()).has_value(), "a foreign entry decoded as an envelope");
    }
    check_wire_inbound(m);
}
#endif

inline void check_nats_inbound(bridge_input in) {
    const std::string subject(in.piece());
    header_list delivered;
    for (unsigned n = in.byte() % 9; n > 0; --n) {
        const std::string name(in.piece());
        for (unsigned v = in.byte() % 3 + 1; v > 0; --v) delivered.emplace_back(name, std::string(in.piece()));
    }
    const std::string data(in.rest());
    auto m = courier::bridge::detail::nats_read_message(subject, data, [&](auto&& visit) {
        for (const auto& [k, v] : delivered) visit(std::string_view(k), std::string_view(v));
    });
    COURIER_FUZZ_CHECK(m.message.topic == subject && m.message.payload == data, "subject or data lost");
    std::string event_id, event_type, key;
    header_list kept;
    for (const auto& [k, v] : delivered) {
        if (k == "Nats-Msg-Id") {
            if (event_id.empty()) event_id = v;
            continue;
        }
        if (k == "courier-event-id") event_id = v;
        else if (k == "courier-event-type") event_type = v;
        else if (k == "courier-key") key = v;
        kept.emplace_back(k, v);
    }
    COURIER_FUZZ_CHECK(m.message.event_id == event_id && m.message.event_type == event_type && m.message.key == key,
                       "event_id, event_type or key differ from the headers");
    check_headers_taken(m.message, kept);
    check_wire_inbound(m);
}

inline void check_kafka_inbound(bridge_input in) {
    const std::string topic(in.piece());
    const std::string record_key(in.piece());
    header_list delivered;
    for (unsigned n = in.byte() % 9; n > 0; --n) {
        std::string name(in.piece());
        delivered.emplace_back(std::move(name), std::string(in.piece()));
    }
    const std::string value(in.rest());
    auto m = courier::bridge::detail::kafka_read_record(topic, record_key, value, [&](auto&& visit) {
        for (const auto& [k, v] : delivered) visit(std::string_view(k), std::string_view(v));
    });
    COURIER_FUZZ_CHECK(m.message.topic == topic && m.message.payload == value, "topic or value lost");
    std::string_view value_type, value_id;
    if (courier::bridge::detail::kafka_envelope_ids(value, value_type, value_id)) {
        // Courier's own envelope: its headers are not read, the value names the event.
        COURIER_FUZZ_CHECK(value.rfind("{\"event_type\":\"", 0) == 0, "ids taken from a value courier did not write");
        COURIER_FUZZ_CHECK(m.message.event_id == value_id && m.message.event_type == value_type &&
                               m.message.key == record_key && m.message.headers.empty(),
                           "an envelope record's ids, key or headers are not those of its value");
    } else {
        std::string event_id, event_type, key = record_key;
        for (const auto& [k, v] : delivered) {
            if (k == "courier-event-id") event_id = v;
            else if (k == "courier-event-type") event_type = v;
            else if (k == "courier-key" && key.empty()) key = v;
        }
        COURIER_FUZZ_CHECK(m.message.event_id == event_id && m.message.event_type == event_type && m.message.key == key,
                           "event_id, event_type or key differ from the record");
        check_headers_taken(m.message, delivered);  // every header is kept
    }
    check_wire_inbound(m);
}

#ifdef COURIER_FUZZ_BRIDGE_AMQP
/// The field kinds an AMQP header value can have, and one that is none of them (0).
inline constexpr std::uint8_t amqp_kinds[] = {
    AMQP_FIELD_KIND_BOOLEAN, AMQP_FIELD_KIND_I8,   AMQP_FIELD_KIND_U8,      AMQP_FIELD_KIND_I16,   AMQP_FIELD_KIND_U16,
    AMQP_FIELD_KIND_I32,     AMQP_FIELD_KIND_U32,  AMQP_FIELD_KIND_I64,     AMQP_FIELD_KIND_U64,   AMQP_FIELD_KIND_F32,
    AMQP_FIELD_KIND_F64,     AMQP_FIELD_KIND_DECIMAL, AMQP_FIELD_KIND_UTF8, AMQP_FIELD_KIND_ARRAY, AMQP_FIELD_KIND_TIMESTAMP,
    AMQP_FIELD_KIND_TABLE,   AMQP_FIELD_KIND_VOID, AMQP_FIELD_KIND_BYTES,   0,
};

inline void check_amqp_inbound(bridge_input in) {
    namespace d = courier::bridge::detail;
    const auto bytes_of = [](std::string& s) {
        amqp_bytes_t b;
        b.len = s.size();
        b.bytes = s.data();
        return b;
    };
    std::string routing_key(in.piece());
    const unsigned flags = in.byte();
    std::string message_id(in.piece()), type(in.piece());
    const std::size_t count = in.byte() % 9;
    // The properties rabbitmq-c would decode, built by hand (texts first: the entries point into them).
    std::vector<std::string> keys, texts;
    keys.reserve(count);
    texts.reserve(count);
    std::vector<amqp_table_entry_t> entries(count);
    for (std::size_t i = 0; i < count; ++i) {
        keys.emplace_back(in.piece());
        amqp_table_entry_t& e = entries[i];
        std::memset(&e, 0, sizeof e);
        e.key = bytes_of(keys.back());
        e.value.kind = amqp_kinds[in.byte() % std::size(amqp_kinds)];
        switch (e.value.kind) {
        case AMQP_FIELD_KIND_UTF8:
        case AMQP_FIELD_KIND_BYTES:
            texts.emplace_back(in.piece());
            e.value.value.bytes = bytes_of(texts.back());
            break;
        case AMQP_FIELD_KIND_BOOLEAN: e.value.value.boolean = static_cast<amqp_boolean_t>(in.byte() & 1); break;
        case AMQP_FIELD_KIND_DECIMAL:
            e.value.value.decimal.decimals = static_cast<std::uint8_t>(in.byte());
            e.value.value.decimal.value = static_cast<std::uint32_t>(in.u64());
            break;
        case AMQP_FIELD_KIND_ARRAY:
        case AMQP_FIELD_KIND_TABLE:
        case AMQP_FIELD_KIND_VOID:
        case 0: break;  // empty: nested tables are not read
        default: {
            // Numbers: the union's bytes (each integer and float member reads its own prefix).
            const std::uint64_t v = in.u64();
            std::memcpy(&e.value.value, &v, sizeof v);
        }
        }
    }
    amqp_basic_properties_t p;
    std::memset(&p, 0, sizeof p);
    if ((flags & 1) != 0) {
        p._flags |= AMQP_BASIC_HEADERS_FLAG;
        p.headers.num_entries = static_cast<int>(count);
        p.headers.entries = entries.empty() ? nullptr : entries.data();
    }
    if ((flags & 2) != 0) {
        p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p.message_id = bytes_of(message_id);
    }
    if ((flags & 4) != 0) {
        p._flags |= AMQP_BASIC_TYPE_FLAG;
        p.type = bytes_of(type);
    }
    std::string body(in.rest());
    courier::bridge::inbound_message m;
    m.message.topic = routing_key;
    const std::uint32_t flagged = (flags & 8) != 0 ? 2 : 1;
    m.delivery_count = flagged;
    d::amqp_read_delivery(p, bytes_of(body), m);

    COURIER_FUZZ_CHECK(m.message.payload == body, "the body was lost");
    std::uint64_t count_expected = flagged;
    std::string event_id, event_type, key;
    header_list kept;
    if ((flags & 1) != 0) {
        for (std::size_t i = 0; i < count; ++i) {
            const auto& e = entries[i];
            if (keys[i] == "x-delivery-count") {
                const auto n = d::amqp_field_int(e.value);
                if (n >= 0) {
                    // n + 1 in 64 bits is safe here: n < 2^63 - 1 or it is saturated below
                    const std::uint64_t next = std::min<std::uint64_t>(static_cast<std::uint64_t>(n) + 1, 0xFFFFFFFFu);
                    count_expected = std::max(count_expected, next);
                }
                continue;
            }
            if (keys[i] == "x-death") continue;
            const std::string value = d::amqp_field_text(e.value);
            if (keys[i] == "courier-event-id") event_id = value;
            else if (keys[i] == "courier-event-type") event_type = value;
            else if (keys[i] == "courier-key") key = value;
            kept.emplace_back(keys[i], value);
        }
    }
    if (event_id.empty() && (flags & 2) != 0) event_id = message_id;
    if (event_type.empty() && (flags & 4) != 0) event_type = type;
    COURIER_FUZZ_CHECK(m.delivery_count >= 1 && m.delivery_count >= flagged, "a delivery count below the redelivered flag");
    COURIER_FUZZ_CHECK(m.delivery_count == count_expected,
                       "delivery count " + std::to_string(m.delivery_count) + ", expected " + std::to_string(count_expected));
    COURIER_FUZZ_CHECK(m.message.event_id == event_id && m.message.event_type == event_type && m.message.key == key,
                       "event_id, event_type or key differ from the properties");
    check_headers_taken(m.message, kept);
    check_wire_inbound(m);
}
#endif

inline void check_bridge_inbound(std::string_view input) {
    bridge_input in(input);
    switch (in.byte() % 5) {
#ifdef COURIER_FUZZ_BRIDGE_REDIS
    case 1: return check_redis_inbound(in);
#endif
    case 2: return check_nats_inbound(in);
    case 3: return check_kafka_inbound(in);
#ifdef COURIER_FUZZ_BRIDGE_AMQP
    case 4: return check_amqp_inbound(in);
#endif
    default: return check_shared_inbound(in);
    }
}

}  // namespace courier_fuzz
