// Webhook delivery that is effectively once: the bus delivers at least once (a failed call is
// retried by policy), and an idempotency store keyed by the event's idempotency key skips what
// was already delivered. Two kinds of duplicates are shown: an upstream that redelivers the
// same envelope (same event_id, as a broker does after a lost ack), and a producer that
// publishes the same business event twice with the same `idempotency-key` header. The
// partner's endpoint fails once with 503, so the retry path runs too (a failed attempt
// releases its key, so the retry is not mistaken for a duplicate).
// Exits 0 only if every distinct event reached the endpoint exactly once.
#include <courier/courier.hpp>

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

using namespace std::chrono_literals;

struct payment_succeeded {
    static constexpr courier::event_name event_type{"payment.succeeded.v1"};
    std::string payment_id;
    long amount_cents = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(payment_succeeded, payment_id, amount_cents)
};

// The partner's HTTP endpoint, simulated: records what it received, fails once with a 503.
class partner_endpoint {
public:
    void post(const std::string& idempotency_key, const std::string& body) {
        std::lock_guard lock(mutex_);
        ++calls_;
        if (calls_ == 2) throw std::runtime_error("HTTP 503 Service Unavailable");
        ++received_[idempotency_key];
        last_body_ = body;
    }
    std::map<std::string, int> received() const { std::lock_guard lock(mutex_); return received_; }
    int calls() const { std::lock_guard lock(mutex_); return calls_; }

private:
    mutable std::mutex mutex_;
    int calls_ = 0;
    std::map<std::string, int> received_;
    std::string last_body_;
};

int main() {
    courier::runtime rt(courier::runtime_options{.threads = 2, .producer = "payments"});
    partner_endpoint partner;
    auto store = std::make_shared<courier::in_memory_idempotency_store>(100'000);

    courier::subscription_options opts;
    opts.name = "webhook.acme";
    opts.mode = courier::delivery_mode::serial;
    opts.guarantee = courier::delivery_guarantee::at_least_once;
    opts.retry = courier::retry_policy::fixed(20ms, 5);
    // The idempotency key: the producer's `idempotency-key` header when it set one, else the
    // event id (the default key is subscription name + event id).
    opts.middleware.push_back(courier::idempotency(store, rt.clock(), {
        .scope = courier::idempotency_scope::until_completion_plus_ttl,
        .ttl = std::chrono::hours(24),
        .key = [](const courier::message_context& ctx) {
            auto k = ctx.header("idempotency-key");
            return "acme/" + (k.empty() ? ctx.event_id().to_string() : std::string(k));
        },
    }));
    std::atomic<int> handled{0};
    auto webhook = rt.bus().subscribe<payment_succeeded>(
        [&](const payment_succeeded& p, const courier::message_context& ctx) {
            auto k = ctx.header("idempotency-key");
            partner.post(k.empty() ? ctx.event_id().to_string() : std::string(k), ctx.to_envelope().data.dump());
            handled.fetch_add(1);
            (void)p;
        },
        opts);

    // 1. Three distinct payments, each with its business idempotency key.
    for (int i = 1; i <= 3; ++i) {
        courier::publish_options po;
        po.headers["idempotency-key"] = "pay-" + std::to_string(i);
        (void)rt.bus().publish(payment_succeeded{"pay-" + std::to_string(i), 1000L * i}, po);
    }
    // 2. The producer retried its own publish of pay-2 (it timed out on its side): same key.
    {
        courier::publish_options po;
        po.headers["idempotency-key"] = "pay-2";
        (void)rt.bus().publish(payment_succeeded{"pay-2", 2000}, po);
    }
    // 3. An upstream redelivers an envelope it already sent (same event_id, no key header).
    courier::envelope env = courier::make_envelope(payment_succeeded{"pay-4", 4000}, rt.clock().now(),
                                                   courier::event_metadata{.producer = "upstream"});
    (void)rt.bus().publish(env).value();
    (void)rt.bus().publish(env).value();  // the redelivery

    // Wait (with a deadline) until all six publishes were either handled or skipped.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
        auto m = webhook.metrics();
        if (m.delivered + m.deduplicated >= 6 && m.queue_depth == 0) break;
        if (std::chrono::steady_clock::now() > deadline) break;
        std::this_thread::sleep_for(1ms);
    }
    rt.stop();

    auto m = webhook.metrics();
    auto received = partner.received();
    std::cout << "publishes: 6 (3 payments, 1 producer retry, 1 envelope + its redelivery)\n";
    std::cout << "endpoint calls: " << partner.calls() << " (one answered 503 and was retried)\n";
    std::cout << "received by the partner:\n";
    for (auto& [key, n] : received)
        std::cout << "  " << (key == env.event_id.to_string() ? "pay-4 (keyed by its event_id)" : key) << " x" << n << "\n";
    std::cout << "subscription: delivered " << m.delivered << ", deduplicated "
              << m.deduplicated << ", retried " << m.retried << ", failed " << m.failed << "\n";
    std::cout << "idempotency store: " << store->size() << " keys, " << store->hits() << " duplicate claims refused\n";

    bool once_each = received.size() == 4;
    for (auto& [key, n] : received) once_each = once_each && n == 1;
    const bool ok = once_each && m.deduplicated == 2 && m.retried == 1 && handled == 4 && partner.calls() == 5 &&
                    rt.bus().dead_letters().size() == 0;
    std::cout << (ok ? "webhooks: ok\n" : "webhooks: FAILED\n");
    return ok ? 0 : 1;
}
