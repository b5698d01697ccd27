// The vocabulary of courier's streams: a record (offset, timestamp, key, headers, payload
// bytes), a position (partition + offset), where a reader starts (beginning, end, an offset, a
// time), and the stable key hash that picks a record's partition.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_traits.hpp>

#include <cstdint>
#include <optional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

COURIER_BEGIN_NAMESPACE

/// Free string headers of a record.
using record_headers = std::map<std::string, std::string>;

/// Header names courier sets on records it writes from events (typed appends and captures).
namespace stream_headers {
/// "application/courier-envelope+json" when the payload is an envelope's wire form.
inline constexpr std::string_view content_type = "content-type";
/// The event name of an envelope payload ("order.created.v1"), to filter without decoding.
inline constexpr std::string_view event_type = "event-type";
inline constexpr std::string_view envelope_content_type = "application/courier-envelope+json";
}  // namespace stream_headers

/// One record of a stream partition: immutable once appended.
///
/// The payload is bytes (a std::string). Typed events and captured bus events are stored as
/// their envelope's JSON wire form (see envelope_codec.hpp) with the headers above, so a reader
/// gets them back with `to_envelope()` or `as<T>()`; anything else is the caller's bytes.
///
/// Thread safety: a value; records handed out by readers are shared read-only.
struct stream_record {
    // Field order: offset, timestamp and a small payload share the first cache line, which is
    // all a consumer of small records touches of a record written on another core.
    std::uint64_t offset = 0;  ///< position in its partition; grows by one per append
    time_point timestamp{};    ///< append time on the stream's clock; never decreases in a partition
    std::string payload;       ///< bytes (an envelope's JSON for event records)
    std::string key;           ///< picks the partition; the unit of compaction
    /// The headers, or null when there are none (most records): a pointer keeps a record at
    /// 96 bytes instead of 128, and records are what crosses from the appending core to readers.
    std::shared_ptr<const record_headers> headers;

    /// Every header (an empty map when there are none).
    const record_headers& all_headers() const noexcept {
        static const record_headers none;
        return headers ? *headers : none;
    }
    /// What retention by bytes counts: key, payload, and header names and values.
    std::size_t size_bytes() const noexcept {
        std::size_t n = key.size() + payload.size();
        if (headers)
            for (const auto& [k, v] : *headers) n += k.size() + v.size();
        return n;
    }
    /// A header's value, or empty.
    std::string_view header(std::string_view name) const noexcept {
        if (!headers) return {};
        auto it = headers->find(std::string(name));
        return it == headers->end() ? std::string_view{} : std::string_view(it->second);
    }
    /// True for records whose payload is an envelope (typed appends, captures).
    bool is_envelope() const noexcept { return header(stream_headers::content_type) == stream_headers::envelope_content_type; }

    /// The envelope in the payload.
    ///
    /// Errors: those of `courier::decode` ("[courier.envelope.*]") when the payload is not one.
    result<envelope> to_envelope() const { return decode(payload); }

    /// The typed event in the payload.
    ///
    /// Errors: as `to_envelope`, then as `data_as<T>` ("[courier.event.type_mismatch]", ...).
    template <typed_event T>
    result<T> as() const {
        auto e = to_envelope();
        if (!e) return unexpected(std::move(e).error());
        return data_as<T>(*e);
    }
};

/// Where a record is: its partition and its offset there.
struct stream_position {
    std::uint32_t partition = 0;
    std::uint64_t offset = 0;
    friend bool operator==(const stream_position&, const stream_position&) = default;
};

/// Where a reader or a new consumer group starts, in every partition it covers.
///
/// Thread safety: a value.
class start_position {
public:
    enum class kind : std::uint8_t { beginning, end, offsets, time };

    /// The first record still available (after retention).
    static start_position beginning() { return start_position(kind::beginning); }
    /// After the last record: only records appended from now on.
    static start_position end() { return start_position(kind::end); }
    /// Offset `offset` in every partition (natural for a one-partition stream). An offset
    /// already trimmed makes the first read fail with errc::trimmed.
    static start_position at(std::uint64_t offset) {
        start_position s(kind::offsets);
        s.default_offset_ = offset;
        return s;
    }
    /// Per-partition offsets; partitions not named start at the beginning.
    static start_position at(std::map<std::uint32_t, std::uint64_t> offsets) {
        start_position s(kind::offsets);
        s.offsets_ = std::move(offsets);
        return s;
    }
    /// The first record whose timestamp is at or after `t`, in each partition.
    static start_position at_time(time_point t) {
        start_position s(kind::time);
        s.time_ = t;
        return s;
    }

    kind which() const noexcept { return kind_; }
    time_point time() const noexcept { return time_; }
    /// The offset asked for in `partition` (kind::offsets), if any.
    std::optional<std::uint64_t> offset_for(std::uint32_t partition) const {
        if (auto it = offsets_.find(partition); it != offsets_.end()) return it->second;
        return default_offset_;
    }

private:
    explicit start_position(kind k) : kind_(k) {}
    kind kind_;
    time_point time_{};
    std::optional<std::uint64_t> default_offset_;
    std::map<std::uint32_t, std::uint64_t> offsets_;
};

/// FNV-1a, 64 bits: the key -> partition hash. Stable across runs, compilers and platforms
/// (std::hash is not), so a key lands in the same partition in every process that shares a
/// partition count.
constexpr std::uint64_t stable_hash(std::string_view s) noexcept {
    std::uint64_t h = 14695981039346656037ull;
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h;
}

COURIER_END_NAMESPACE
