// Out-of-line parts of event_bus and subscription: Prometheus export and the topology report.
#pragma once

#include <courier/bus/event_bus.hpp>

COURIER_BEGIN_NAMESPACE

inline void subscription::unsubscribe() {
    // The handle itself is not modified, so other threads may keep calling active(), name()
    // or metrics() on it, and a handler may unsubscribe its own subscription.
    if (!state_ || !state_->active()) return;
    if (bus_alive_ && bus_alive_->load(std::memory_order_acquire)) bus_->remove(state_);
    else state_->unsubscribe();
}

inline std::string event_bus::prometheus() const {
    auto subs = metrics();
    std::string out;
    auto family = [&](const char* name, const char* type, const char* help, auto value_of) {
        out += "# HELP ";
        out += name;
        out += ' ';
        out += help;
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += type;
        out += '\n';
        for (auto& m : subs) {
            out += name;
            out += "{subscription=\"";
            detail::append_prometheus_label_value(out, m.name);
            out += "\",pattern=\"";
            detail::append_prometheus_label_value(out, m.pattern);
            out += "\"} ";
            out += std::to_string(value_of(m));
            out += '\n';
        }
    };
    family("courier_subscription_delivered_total", "counter", "Handler calls that succeeded.",
           [](const subscription_metrics& m) { return m.delivered; });
    family("courier_subscription_failed_total", "counter", "Handler calls that threw.",
           [](const subscription_metrics& m) { return m.failed; });
    family("courier_subscription_retried_total", "counter", "Retries scheduled.",
           [](const subscription_metrics& m) { return m.retried; });
    family("courier_subscription_dead_lettered_total", "counter", "Messages sent to the dead-letter store.",
           [](const subscription_metrics& m) { return m.dead_lettered; });
    family("courier_subscription_dropped_total", "counter", "Messages refused by the overflow policy.",
           [](const subscription_metrics& m) { return m.dropped; });
    family("courier_subscription_deduplicated_total", "counter", "Duplicates skipped by idempotency.",
           [](const subscription_metrics& m) { return m.deduplicated; });
    family("courier_subscription_queue_depth", "gauge", "Messages waiting in the subscription's queue.",
           [](const subscription_metrics& m) { return m.queue_depth; });
    family("courier_subscription_latency_p50_ns", "gauge", "Median handler latency (sampled), nanoseconds.",
           [](const subscription_metrics& m) { return m.latency_p50_ns; });
    family("courier_subscription_latency_p99_ns", "gauge", "99th percentile handler latency (sampled), nanoseconds.",
           [](const subscription_metrics& m) { return m.latency_p99_ns; });
    auto s = stats();
    out += "# HELP courier_bus_published_total Events published.\n# TYPE courier_bus_published_total counter\n";
    out += "courier_bus_published_total " + std::to_string(s.published) + "\n";
    out += "# HELP courier_bus_unrouted_total Events that matched no subscription.\n# TYPE courier_bus_unrouted_total counter\n";
    out += "courier_bus_unrouted_total " + std::to_string(s.unrouted) + "\n";
    out += "# HELP courier_dead_letters Records in the dead-letter store.\n# TYPE courier_dead_letters gauge\n";
    out += "courier_dead_letters " + std::to_string(s.dead_letters) + "\n";
    return out;
}

inline topology_report event_bus::topology() const {
    std::lock_guard lock(mutex_);
    topology_report r;
    r.known_events.assign(known_.begin(), known_.end());
    for (auto& s : subs_) {
        const auto& o = s->options();
        r.subscriptions.push_back({s->name(), s->pattern_text(), std::string(to_string(o.mode)),
                                   std::string(to_string(o.guarantee)), o.group});
    }
    for (auto& e : known_) {
        auto parsed = event_name::parse(e);
        bool reached = false;
        for (auto& s : subs_) reached = reached || matches(*s, e, parsed ? &*parsed : nullptr);
        if (!reached) r.events_without_subscribers.push_back(e);
    }
    for (auto& s : subs_) {
        bool any = false;
        for (auto& e : known_) {
            auto parsed = event_name::parse(e);
            any = any || matches(*s, e, parsed ? &*parsed : nullptr);
        }
        if (!any) r.subscriptions_matching_nothing.push_back(s->name());
    }
    for (std::size_t i = 0; i < subs_.size(); ++i) {
        if (!subs_[i]->pattern() || subs_[i]->pattern()->is_exact()) continue;
        auto a = detail::pattern_segments(subs_[i]->pattern_text());
        for (std::size_t j = i + 1; j < subs_.size(); ++j) {
            if (!subs_[j]->pattern() || subs_[j]->pattern()->is_exact()) continue;
            if (detail::patterns_overlap(a, detail::pattern_segments(subs_[j]->pattern_text())))
                r.overlapping_wildcards.emplace_back(subs_[i]->name(), subs_[j]->name());
        }
    }
    return r;
}

COURIER_END_NAMESPACE
