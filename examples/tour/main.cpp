// courier's tour: one short walk through every capability that exists so far.
// Run it with ./scripts/run. Each section prints a few lines of what it shows.
#include <courier/courier.hpp>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

using namespace std::chrono_literals;

// Typed events: plain structs with a versioned name and nlohmann_json conversion.
struct order_created {
    static constexpr courier::event_name event_type{"order.created.v1"};
    std::string id;
    double total = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created, id, total)
};
struct order_created_v2 {
    static constexpr courier::event_name event_type{"order.created.v2"};
    std::string id;
    double amount = 0;
    std::string currency;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_created_v2, id, amount, currency)
};
struct invoice_sent {
    static constexpr courier::event_name event_type{"billing.invoice.sent.v1"};
    std::string order;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(invoice_sent, order)
};

static void section(const char* title) { std::cout << "\n== " << title << "\n"; }

int main() {
    std::cout << "courier " << COURIER_VERSION_STRING << " — a message broker's semantics inside one process\n";

    section("1. lock-free queues");
    {
        courier::mpmc_queue<int> q;
        for (int i = 1; i <= 3; ++i) (void)q.try_push(int{i});
        q.close();
        int v = 0;
        std::cout << "popped:";
        while (q.try_pop(v) == courier::queue_status::ok) std::cout << ' ' << v;
        std::cout << "  then " << courier::to_string(q.try_pop(v)) << " (closed and drained)\n";

        int dropped = 0;
        courier::bounded_queue<int> bq(2, courier::overflow_policy::drop_oldest, [&](int&&) { ++dropped; });
        for (int i = 0; i < 5; ++i) (void)bq.try_push(int{i});
        std::cout << "bounded(2, drop_oldest) after 5 pushes: " << bq.size_approx() << " kept, " << dropped
                  << " handed to on_drop\n";
    }

    section("2. event names and envelopes");
    {
        auto bad = courier::event_name::parse("Order.created");
        std::cout << "parse(\"Order.created\") -> " << bad.error().message << "\n";
        courier::envelope env;
        env.event_type = "order.created.v1";
        env.version = 1;
        env.event_id = courier::make_uuid_v7();
        env.timestamp = std::chrono::system_clock::now();
        env.data = {{"id", "o-1"}, {"total", 42.0}};
        env.metadata.producer = "tour";
        std::cout << "envelope: " << courier::encode(env) << "\n";
        auto broken = courier::decode(R"({"event_type":"order.created.v1"})");
        std::cout << "decode(missing fields) -> " << broken.error().message << "\n";
    }

    section("3. the event bus");
    {
        courier::runtime rt(courier::runtime_options{.threads = 2, .producer = "tour"});
        auto& bus = rt.bus();
        std::atomic<int> handled{0};

        auto billing = bus.subscribe<order_created>([&](const order_created& e, const courier::message_context& ctx) {
            std::cout << "billing got " << e.id << " (" << e.total << "), trace " << ctx.trace_id() << "\n";
            (void)bus.publish(invoice_sent{e.id});  // inherits trace + correlation, names its cause
        }, {.name = "billing", .mode = courier::delivery_mode::serial});
        auto audit = bus.subscribe("#", [&](const courier::message_context& ctx) {
            std::cout << "audit saw " << ctx.event_type() << " correlation " << ctx.correlation_id() << "\n";
            handled.fetch_add(1);
        }, {.name = "audit", .mode = courier::delivery_mode::serial});

        (void)bus.publish(order_created{"o-1", 42.0}, {.trace_id = "trace-1", .correlation_id = "checkout-7"});
        for (int i = 0; i < 200 && handled.load() < 2; ++i) std::this_thread::sleep_for(5ms);

        std::cout << "topology:\n" << bus.topology().to_string();
    }

    section("4. retries, dead letters and redrive, on a manual clock");
    {
        courier::manual_clock clock;
        courier::runtime rt(courier::runtime::manual, clock);
        bool downstream_up = false;
        courier::subscription_options opts;
        opts.name = "mailer";
        opts.retry = courier::retry_policy::exponential(1s, 2.0, 30s, 3);
        auto mailer = rt.bus().subscribe<order_created>([&](const order_created& e, const courier::message_context& ctx) {
            std::cout << "  attempt " << ctx.attempt() << " for " << e.id << (downstream_up ? ": sent\n" : ": smtp down\n");
            if (!downstream_up) throw std::runtime_error("smtp down");
        }, opts);
        (void)rt.bus().publish(order_created{"o-2", 10});
        auto waited = rt.run_timers();
        auto dead = rt.bus().dead_letters().list();
        std::cout << "after " << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                  << " ms of manual time: " << dead.size() << " dead letter, " << dead[0].attempts << " attempts, last error '"
                  << dead[0].errors.back().error << "'\n";
        downstream_up = true;
        (void)rt.bus().redrive_all("mailer");
        rt.poll();
        std::cout << "redriven; dead letters now: " << rt.bus().dead_letters().size() << "\n";
    }

    section("5. versions: a v2 subscriber receives v1 events through an upcaster");
    {
        courier::manual_clock clock;
        courier::runtime rt(courier::runtime::manual, clock);
        (void)rt.bus().upcasters().add("order.created.v1", [](nlohmann::json d) {
            return nlohmann::json{{"id", d["id"]}, {"amount", d["total"]}, {"currency", "EUR"}};
        });
        auto sub = rt.bus().subscribe<order_created_v2>([](const order_created_v2& e) {
            std::cout << "v2 handler: " << e.id << " " << e.amount << " " << e.currency << "\n";
        }, {.mode = courier::delivery_mode::inline_call});
        (void)rt.bus().publish(order_created{"o-3", 99});
    }

    section("6. metrics (Prometheus text, excerpt)");
    {
        courier::manual_clock clock;
        courier::runtime rt(courier::runtime::manual, clock);
        auto sub = rt.bus().subscribe<order_created>([](const order_created&) {}, {.name = "counter"});
        for (int i = 0; i < 3; ++i) (void)rt.bus().publish(order_created{"o", 1});
        rt.poll();
        auto text = rt.bus().prometheus();
        std::cout << text.substr(0, text.find("# HELP courier_subscription_failed_total"));
    }
    std::cout << "\ntour finished\n";
    return 0;
}
