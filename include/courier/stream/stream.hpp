// courier::stream: a named, partitioned, append-only log (Kafka topic / Redis stream in one
// process). Records carry a key that picks the partition; `append` returns partition + offset;
// retention by count, bytes and age; readers replay from an offset, a time, the beginning or
// the end and tail live appends; consumer groups; compaction by key; capture from bus topics.
#pragma once

#include <courier/bus/event_bus.hpp>
#include <courier/bus/message_context.hpp>
#include <courier/bus/subscription.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_traits.hpp>
#include <courier/stream/batch.hpp>
#include <courier/stream/consumer_group.hpp>
#include <courier/stream/detail/stream_state.hpp>
#include <courier/stream/record.hpp>
#include <courier/stream/stream_options.hpp>

#include <boost/asio/async_result.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

namespace detail {
/// A reader's positions: one offset and one segment cursor per partition it reads.
struct reader_state {
    std::shared_ptr<stream_state> stream;
    std::vector<std::uint32_t> parts;
    std::vector<std::uint64_t> pos;
    std::vector<std::shared_ptr<const segment>> cursors;
    std::size_t rr = 0;
    reader_options options;
    std::uint64_t skipped = 0;
};
result<stream_batch> reader_read(reader_state& r, std::size_t max);
}  // namespace detail

/// Reads a stream from a position on: replay, then the live tail, with no gap and no duplicate
/// at the seam (a reader is only a position per partition; catch-up and live reads are the
/// same read). Move-only; it holds the stream's state alive.
///
/// Thread safety: one thread at a time per reader; readers of one stream may be used
/// concurrently, with appends too.
/// Ordering: offset order within a partition; partitions are read round robin, one batch each.
/// Blocking: never; `async_read` waits without a thread.
/// Errors: errc::trimmed ("[courier.stream.trimmed]") when the reader's position in a partition
/// was removed by retention: the message names the first available offset, which
/// `first_available` also returns; the reader stays put until it seeks (or set
/// reader_options::skip_trimmed). A batch already returned stays valid regardless.
class stream_reader {
public:
    stream_reader() = default;

    /// Up to `max` records of one partition (round robin between partitions); an empty batch
    /// when the reader is at the end of every partition.
    result<stream_batch> read(std::size_t max = 256) { return detail::reader_read(*state_, max); }

    /// Waits until a record is there, then reads as `read`. Completion:
    /// `void(result<stream_batch>)`; errc::closed when the stream closes. The reader must not be
    /// used by other calls while the operation is pending (it holds the reader's state alive).
    template <class CompletionToken>
    auto async_read(std::size_t max, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(result<stream_batch>)>(
            [st = state_, max](auto&& handler) {
                auto attempt = [st, max]() -> std::optional<result<stream_batch>> {
                    auto r = detail::reader_read(*st, max);
                    if (!r || !r->empty()) return r;
                    if (st->stream->closed())
                        return result<stream_batch>(unexpected(errc::closed, "[courier.stream.closed] stream closed"));
                    return std::nullopt;
                };
                detail::start_async_read<stream_batch>(st->stream, std::move(attempt),
                                                       std::forward<decltype(handler)>(handler));
            },
            token);
    }

    /// The next offset this reader reads in `partition`.
    std::uint64_t position(std::uint32_t partition) const { return state_->pos.at(index_of(partition)); }
    /// The first offset still available in `partition` (where to seek after errc::trimmed).
    std::uint64_t first_available(std::uint32_t partition) const { return state_->stream->part(partition).start_offset(); }
    /// Moves to `offset` in `partition`.
    void seek(std::uint32_t partition, std::uint64_t offset) {
        const auto i = index_of(partition);
        state_->pos[i] = offset;
        state_->cursors[i].reset();
    }
    /// Moves every partition to `from`.
    void seek(const start_position& from) {
        for (std::size_t i = 0; i < state_->parts.size(); ++i) {
            state_->pos[i] = detail::resolve_start(state_->stream->part(state_->parts[i]), from);
            state_->cursors[i].reset();
        }
    }
    /// Records appended and not read yet, over the reader's partitions.
    std::uint64_t lag() const {
        std::uint64_t n = 0;
        for (std::size_t i = 0; i < state_->parts.size(); ++i) {
            const auto end = state_->stream->part(state_->parts[i]).end_offset();
            n += end > state_->pos[i] ? end - state_->pos[i] : 0;
        }
        return n;
    }
    /// Records skipped because retention trimmed them first (with skip_trimmed).
    std::uint64_t skipped() const noexcept { return state_->skipped; }
    const std::vector<std::uint32_t>& partitions() const noexcept { return state_->parts; }

private:
    friend class stream;
    explicit stream_reader(std::shared_ptr<detail::reader_state> s) : state_(std::move(s)) {}
    std::size_t index_of(std::uint32_t partition) const {
        for (std::size_t i = 0; i < state_->parts.size(); ++i)
            if (state_->parts[i] == partition) return i;
        throw courier_error(error(errc::invalid_argument, "[courier.stream.bad_partition] this reader does not read partition " +
                                                              std::to_string(partition)));
    }
    std::shared_ptr<detail::reader_state> state_;
};

/// A named, partitioned, append-only log.
///
/// Payloads are bytes; typed events and captured bus events are stored as their envelope's
/// JSON (see stream_record). A record's key picks its partition with a stable hash (FNV-1a,
/// `stable_hash(key) % partitions`); records without a key go round robin.
///
/// Thread safety: every member may be called from any thread. Appends to one partition are
/// serialized by its mutex; reads never take it (they hold the segment they read).
/// Ordering: offsets grow by one per append in a partition, in the order appends took its
/// lock; timestamps never decrease within a partition.
/// Blocking: appends lock their partition briefly; automatic compaction (compact +
/// compact_every_segments) runs inside the append that seals a segment.
/// Errors: appends return errc::limit_exceeded for a record over max_record_bytes or the
/// retention's max_bytes, errc::invalid_argument for a partition that does not exist,
/// errc::closed after destruction began. The constructor throws courier_error
/// (errc::invalid_argument) for zero partitions.
///
/// Example:
/// ```
/// courier::stream orders(rt.bus(), "orders", {.partitions = 4, .retention = {.max_age = 24h}});
/// auto pos = orders.append("customer-7", payload).value();         // {partition, offset}
/// orders.append(order_placed{"o-1", 42.0}, "customer-7");           // stored as an envelope
/// orders.capture("order.#");                                        // every order event, replayable
/// auto replay = orders.reader(courier::start_position::at_time(yesterday));
/// while (true) { auto b = replay.read(256).value(); if (b.empty()) break; for (auto& r : b) use(r); }
/// ```
class stream {
public:
    /// A stream on the clock, timers and executor of `bus`'s runtime (age retention by timer,
    /// async reads, captures). `bus` must outlive the stream.
    stream(event_bus& bus, std::string name, stream_options options = {})
        : state_(std::make_shared<detail::stream_state>(std::move(name), std::move(options), bus.clock(), bus.services())),
          bus_(&bus) {}
    /// A stream on a bare clock: no executor (async reads fail with errc::invalid_state, no
    /// captures), age retention applied by appends and `enforce_retention()`.
    stream(std::string name, courier::clock& clk, stream_options options = {})
        : state_(std::make_shared<detail::stream_state>(std::move(name), std::move(options), clk, std::nullopt)) {}
    /// Stops the captures, refuses further appends and completes pending async reads with
    /// errc::closed. Readers, batches and groups still held stay valid (they hold the records).
    ~stream() {
        std::vector<subscription> captures;
        {
            std::lock_guard lock(mutex_);
            for (auto& [n, s] : captures_) captures.push_back(std::move(s));
            captures_.clear();
        }
        captures.clear();
        state_->close();
    }
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;

    const std::string& name() const noexcept { return state_->name(); }
    std::uint32_t partitions() const noexcept { return state_->partition_count(); }
    /// The partition a key goes to.
    std::uint32_t partition_for(std::string_view key) const noexcept {
        return static_cast<std::uint32_t>(stable_hash(key) % state_->partition_count());
    }

    // ---------------------------------------------------------------- append

    /// Appends a record to the key's partition.
    result<stream_position> append(std::string_view key, std::string_view payload, record_headers headers = {}) {
        return state_->append(std::nullopt, key, payload, headers.empty() ? nullptr : &headers);
    }
    /// Appends a record to a given partition (the key is kept, but does not choose).
    result<stream_position> append_to(std::uint32_t partition, std::string_view key, std::string_view payload,
                                      record_headers headers = {}) {
        return state_->append(partition, key, payload, headers.empty() ? nullptr : &headers);
    }
    /// Appends a typed event as its envelope (inheriting trace and correlation from the handler
    /// running in this thread, like a publish).
    template <typed_event T>
    result<stream_position> append(const T& event, std::string_view key = {}) {
        return append(make_envelope(event, state_->clock().now(), inherited_metadata()), key);
    }
    /// Appends an envelope (its wire form); the key defaults to its "courier-key" header.
    result<stream_position> append(const envelope& e, std::string_view key = {});

    // ---------------------------------------------------------------- read

    /// A reader from `from` over every partition (or those in `options.partitions`).
    ///
    /// Errors: throws courier_error (errc::invalid_argument) for a partition that does not exist.
    stream_reader reader(const start_position& from = start_position::beginning(), reader_options options = {}) const;

    /// The consumer group `name`, made with `options` on first use (later calls return the same
    /// group and ignore `options`).
    consumer_group group(const std::string& name, group_options options = {}) {
        std::lock_guard lock(mutex_);
        auto& g = groups_[name];
        if (!g) g = std::make_shared<detail::group_state>(state_, name, std::move(options));
        return consumer_group(g);
    }

    /// Appends every bus event whose name matches `pattern` (`*`, `#` as on the bus) as its
    /// envelope, keyed by the publish key: replay of events without touching their publishers.
    /// Returns the capture's name (its subscription's), for `stop_capture`.
    ///
    /// Errors: errc::invalid_pattern for a malformed pattern; errc::invalid_state for a stream
    /// made without a bus.
    result<std::string> capture(std::string_view pattern, capture_options options = {});
    /// Stops a capture; false if there is none of that name.
    bool stop_capture(std::string_view name) {
        subscription s;
        {
            std::lock_guard lock(mutex_);
            auto it = captures_.find(name);
            if (it == captures_.end()) return false;
            s = std::move(it->second);
            captures_.erase(it);
        }
        return true;  // `s` unsubscribes here, outside the lock
    }

    // ---------------------------------------------------------------- maintenance

    /// Compacts every partition now (see stream_options::compact); a no-op without compact.
    compaction_report compact() { return state_->compact(); }
    /// Trims what max_age allows now (a runtime's timer does it by itself).
    std::size_t enforce_retention() { return state_->enforce_retention(); }
    partition_info info(std::uint32_t partition) const { return state_->part(partition).info(); }
    stream_metrics metrics() const;

private:
    event_metadata inherited_metadata() const {
        event_metadata m;
        m.producer = state_->services() ? state_->services()->producer : std::string("courier");
        if (const auto* cause = message_context::current()) {
            m.trace_id = std::string(cause->trace_id());
            m.correlation_id =
                cause->correlation_id().empty() ? cause->event_id().to_string() : std::string(cause->correlation_id());
            m.causation_id = cause->event_id().to_string();
        }
        return m;
    }

    std::shared_ptr<detail::stream_state> state_;
    event_bus* bus_ = nullptr;
    mutable std::mutex mutex_;
    std::map<std::string, std::shared_ptr<detail::group_state>, std::less<>> groups_;
    std::map<std::string, subscription, std::less<>> captures_;
};

COURIER_END_NAMESPACE

#include <courier/stream/impl/stream.hpp>
