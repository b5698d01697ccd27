// Helpers shared by the adapters' transport tests (amqp, kafka, nats): a collector that
// drives a transport's poll loop and keeps what it returned, and a header lookup.
#pragma once
#include <courier/bridge/transport.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace courier_test {

/// Polls a transport until `done()` holds, keeping every confirm, message and error.
struct transport_collector {
    std::vector<courier::bridge::publish_confirm> confirms;
    std::vector<courier::bridge::inbound_message> messages;
    std::vector<courier::error> errors;
    /// Keep polling after a failed poll (librdkafka reports transient broker errors that it
    /// recovers from) instead of returning at once.
    bool poll_through_errors = false;

    template <class Pred>
    bool drive(courier::bridge::transport& t, Pred done, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            auto r = t.poll(std::chrono::milliseconds(20), 512,
                            [&](courier::bridge::publish_confirm c) { confirms.push_back(std::move(c)); },
                            [&](courier::bridge::inbound_message m) { messages.push_back(std::move(m)); });
            if (!r) {
                errors.push_back(r.error());
                if (!poll_through_errors || done()) return done();
            }
        }
        return true;
    }
    std::size_t ok_confirms() const {
        std::size_t n = 0;
        for (auto& c : confirms) n += c.outcome.has_value() ? 1 : 0;
        return n;
    }
};

/// The value of header `k` in `m`, or "<none>".
inline std::string header(const courier::bridge::wire_message& m, std::string_view k) {
    for (auto& [hk, hv] : m.headers) {
        if (hk == k) return hv;
    }
    return "<none>";
}

}  // namespace courier_test
