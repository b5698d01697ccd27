// Out-of-line parts of courier::stream and stream_reader: the read loop over partitions (with
// the trimmed-position rule), making readers, envelope appends, bus captures and metrics.
#pragma once

#include <courier/stream/stream.hpp>

COURIER_BEGIN_NAMESPACE

namespace detail {

/// The headers of a record that holds an envelope.
inline std::shared_ptr<const record_headers> envelope_headers(std::string_view event_type) {
    return std::make_shared<const record_headers>(record_headers{
        {std::string(stream_headers::content_type), std::string(stream_headers::envelope_content_type)},
        {std::string(stream_headers::event_type), std::string(event_type)}});
}

inline result<stream_batch> reader_read(reader_state& r, std::size_t max) {
    if (max == 0) max = 1;
    const auto n = r.parts.size();
    for (std::size_t k = 0; k < n; ++k) {
        const auto i = (r.rr + k) % n;
        auto& log = r.stream->part(r.parts[i]);
        read_span span;
        auto status = log.read(r.cursors[i], r.pos[i], max, span);
        if (status == read_status::trimmed) {
            const auto first = log.start_offset();
            if (!r.options.skip_trimmed) {
                return unexpected(errc::trimmed, "[courier.stream.trimmed] stream '" + r.stream->name() + "' partition " +
                                                     std::to_string(r.parts[i]) + ": offset " + std::to_string(r.pos[i]) +
                                                     " was removed by retention; the first available offset is " +
                                                     std::to_string(first));
            }
            if (first > r.pos[i]) r.skipped += first - r.pos[i];
            r.pos[i] = first;
            r.cursors[i].reset();
            status = log.read(r.cursors[i], r.pos[i], max, span);
        }
        if (status == read_status::ok) {
            r.rr = i + 1;
            return reader_access::make(r.parts[i], span);
        }
    }
    return stream_batch{};
}

}  // namespace detail

inline result<stream_position> stream::append(const envelope& e, std::string_view key) {
    stream_record r;
    if (key.empty()) {
        if (auto it = e.headers.find("courier-key"); it != e.headers.end()) key = it->second;
    }
    r.key.assign(key);
    encode_to(r.payload, e);
    r.headers = detail::envelope_headers(e.event_type);
    return state_->append(std::nullopt, std::move(r));
}

inline stream_reader stream::reader(const start_position& from, reader_options options) const {
    auto r = std::make_shared<detail::reader_state>();
    r->stream = state_;
    const auto n = state_->partition_count();
    if (options.partitions.empty()) {
        for (std::uint32_t p = 0; p < n; ++p) r->parts.push_back(p);
    } else {
        for (auto p : options.partitions) {
            if (p >= n) {
                throw courier_error(error(errc::invalid_argument, "[courier.stream.bad_partition] stream '" + name() + "' has " +
                                                                      std::to_string(n) + " partitions; there is no partition " +
                                                                      std::to_string(p)));
            }
            r->parts.push_back(p);
        }
    }
    for (auto p : r->parts) r->pos.push_back(detail::resolve_start(state_->part(p), from));
    r->cursors.resize(r->parts.size());
    r->options = std::move(options);
    return stream_reader(std::move(r));
}

inline result<std::string> stream::capture(std::string_view pattern, capture_options options) {
    if (!bus_) {
        return unexpected(errc::invalid_state, "[courier.stream.no_bus] stream '" + name() +
                                                   "' was made without a bus; it cannot capture events");
    }
    subscription_options so;
    so.name = std::move(options.name);
    so.mode = options.mode;
    // A record the stream refuses (too large) is dead-lettered by the bus with the reason, once:
    // retrying would refuse it again.
    so.guarantee = delivery_guarantee::at_most_once;
    auto sub = bus_->try_subscribe(
        pattern,
        [st = state_](const message_context& ctx) {
            stream_record r;
            r.key.assign(ctx.key());
            encode_to(r.payload, ctx.to_envelope());
            r.headers = detail::envelope_headers(ctx.event_type());
            auto res = st->append(std::nullopt, std::move(r));
            if (!res) throw courier_error(std::move(res).error());
            st->counters().captured.fetch_add(1, std::memory_order_relaxed);
        },
        std::move(so));
    if (!sub) return unexpected(std::move(sub).error());
    std::string capture_name(sub->name());
    std::lock_guard lock(mutex_);
    captures_.emplace(capture_name, std::move(*sub));
    return capture_name;
}

inline stream_metrics stream::metrics() const {
    auto& c = state_->counters();
    stream_metrics m;
    m.rejected = c.rejected.load(std::memory_order_relaxed);
    m.captured = c.captured.load(std::memory_order_relaxed);
    for (std::uint32_t p = 0; p < state_->partition_count(); ++p) {
        const auto& log = state_->part(p);
        auto i = log.info();
        m.records += i.records;
        m.bytes += i.bytes;
        auto t = log.totals();
        m.appended += t.appended;
        m.trimmed += t.trimmed;
        m.compacted += t.compacted;
    }
    return m;
}

COURIER_END_NAMESPACE
