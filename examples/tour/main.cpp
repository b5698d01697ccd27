// courier's tour: one short walk through every capability, run by ./scripts/run.
// Each section prints a few lines of what it shows: queues, events and envelopes, the bus and
// its delivery modes, retries and dead letters, versions, actors, jobs, request-reply,
// streams with consumer groups, sagas, metrics, and a broker bridge (to the in-memory loopback
// broker, so the tour needs no server; examples/graduate does the same over Redis or NATS). What it prints is the same on every run (ids
// and times are fixed or left out), and it exits 1 if anything it shows did not happen.
#include <courier/courier.hpp>

#include <courier/bridge/broker_bridge.hpp>
#include <courier/bridge/loopback.hpp>

#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

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
struct item_scanned {
    static constexpr courier::event_name event_type{"warehouse.item.scanned.v1"};
    std::string shelf;
    int seq = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(item_scanned, shelf, seq)
};

static int failures = 0;
static void section(const char* title) { std::cout << "\n== " << title << "\n"; }
static void check(bool ok, const char* what) {
    if (!ok) {
        std::cout << "  CHECK FAILED: " << what << "\n";
        ++failures;
    }
}
// Waits for a condition on a threaded runtime, with a deadline instead of a bare sleep.
template <class F>
static bool wait_until(F done, std::chrono::milliseconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

// An actor: state plus the messages that change it, one at a time, no lock.
struct deposit { int amount; };
struct balance {};
struct account {
    int total = 0;
    void handle(const deposit& d) {
        if (d.amount < 0) throw std::invalid_argument("negative deposit");
        total += d.amount;
    }
    int handle(const balance&) { return total; }
};

// A job, a request and its reply, a saga context.
struct resize_image {
    static constexpr std::string_view job_type = "image.resize";
    std::string file;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(resize_image, file)
};
struct quote {
    static constexpr courier::event_name event_type{"pricing.quote.given.v1"};
    std::string sku;
    double price = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(quote, sku, price)
};
struct get_quote {
    static constexpr courier::event_name event_type{"pricing.quote.requested.v1"};
    using reply_type = quote;
    std::string sku;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(get_quote, sku)
};
struct check_stock {
    static constexpr courier::event_name event_type{"inventory.stock.requested.v1"};
    using reply_type = quote;
    std::string sku;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(check_stock, sku)
};
struct order_ctx {
    std::string id;
    bool fail_shipping = false;
    std::string approver;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(order_ctx, id, fail_shipping, approver)
};

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
        check(dropped == 3, "bounded queue hands 3 items to on_drop");
    }

    section("2. event names and envelopes");
    {
        auto bad = courier::event_name::parse("Order.created");
        std::cout << "parse(\"Order.created\") -> " << bad.error().message << "\n";
        courier::manual_clock clock;  // 2025-01-01T00:00:00Z: a fixed time for a fixed output
        courier::envelope env = courier::make_envelope(order_created{"o-1", 42.0}, clock.now(),
                                                       courier::event_metadata{.producer = "tour"});
        env.event_id = courier::uuid::parse("0194228e-b57b-7000-8000-000000000001").value();  // fixed for the demo
        std::cout << "envelope: " << courier::encode(env) << "\n";
        auto broken = courier::decode(R"({"event_type":"order.created.v1"})");
        std::cout << "decode(missing fields) -> " << broken.error().message << "\n";
        check(courier::decode(courier::encode(env)).value() == env, "an envelope survives encode + decode");
    }

    section("3. the event bus: fan-out, delivery modes, queue groups, context");
    {
        courier::runtime rt(courier::runtime_options{.threads = 2, .producer = "tour"});
        auto& bus = rt.bus();

        // inline_call runs in the publisher's thread, before publish returns.
        std::thread::id inline_thread;
        auto inl = bus.subscribe<item_scanned>([&](const item_scanned&) { inline_thread = std::this_thread::get_id(); },
                                               {.name = "inline", .mode = courier::delivery_mode::inline_call});
        // serial: one at a time, in publish order.
        std::vector<int> serial_seen;
        std::atomic<int> serial_n{0};
        auto ser = bus.subscribe<item_scanned>([&](const item_scanned& e) { serial_seen.push_back(e.seq); serial_n++; },
                                               {.name = "serial", .mode = courier::delivery_mode::serial});
        // keyed: order kept per key (the shelf), shelves in parallel: Kafka partitions.
        std::mutex keyed_mutex;
        std::map<std::string, std::vector<int>> keyed_seen;
        std::atomic<int> keyed_n{0};
        auto keyed = bus.subscribe<item_scanned>(
            [&](const item_scanned& e) {
                std::lock_guard lock(keyed_mutex);
                keyed_seen[e.shelf].push_back(e.seq);
                keyed_n++;
            },
            {.name = "keyed", .mode = courier::delivery_mode::keyed,
             .key = courier::key_by<item_scanned>([](const item_scanned& e) { return e.shelf; })});
        // pooled (the default): any worker, concurrently, no order.
        std::atomic<int> pooled_n{0};
        auto pooled = bus.subscribe<item_scanned>([&](const item_scanned&) { pooled_n++; }, {.name = "pooled"});
        // A queue group: two members compete, each event goes to one of them.
        std::atomic<int> member_a{0}, member_b{0};
        auto ga = bus.subscribe<item_scanned>([&](const item_scanned&) { member_a++; }, {.name = "counter-a", .group = "counters"});
        auto gb = bus.subscribe<item_scanned>([&](const item_scanned&) { member_b++; }, {.name = "counter-b", .group = "counters"});

        for (int i = 0; i < 40; ++i) (void)bus.publish(item_scanned{i % 2 ? "left" : "right", i});
        const bool all = wait_until([&] { return serial_n == 40 && keyed_n == 40 && pooled_n == 40 && member_a + member_b == 40; });
        const bool serial_ordered = std::is_sorted(serial_seen.begin(), serial_seen.end());
        bool keyed_ordered = true;
        for (auto& [shelf, seqs] : keyed_seen) keyed_ordered = keyed_ordered && std::is_sorted(seqs.begin(), seqs.end());
        std::cout << "40 events: inline ran in the publisher's thread: " << std::boolalpha
                  << (inline_thread == std::this_thread::get_id()) << "\n"
                  << "  serial got " << serial_n << " in publish order: " << serial_ordered << "\n"
                  << "  keyed got " << keyed_n << ", in order per shelf: " << keyed_ordered << "\n"
                  << "  pooled got " << pooled_n << " (concurrently, any order)\n"
                  << "  queue group 'counters': a=" << member_a << " b=" << member_b << " (each event once)\n";
        check(all && serial_ordered && keyed_ordered && inline_thread == std::this_thread::get_id(), "delivery modes");
        check(member_a == 20 && member_b == 20, "a queue group shares round robin");

        // Context: what a handler publishes inherits the trace and correlation and names its cause.
        std::mutex m;
        std::vector<std::string> audit_lines;
        auto billing = bus.subscribe<order_created>([&](const order_created& e) { (void)bus.publish(invoice_sent{e.id}); },
                                                    {.name = "billing"});
        auto audit = bus.subscribe("#", [&](const courier::message_context& ctx) {
            if (ctx.event_type().starts_with("warehouse.")) return;
            std::lock_guard lock(m);
            audit_lines.push_back(std::string(ctx.event_type()) + " trace=" + std::string(ctx.trace_id()) +
                                  " correlation=" + std::string(ctx.correlation_id()));
        }, {.name = "audit"});
        (void)bus.publish(order_created{"o-1", 42.0}, {.trace_id = "trace-1", .correlation_id = "checkout-7"});
        wait_until([&] { std::lock_guard lock(m); return audit_lines.size() == 2; });
        std::sort(audit_lines.begin(), audit_lines.end());
        for (auto& l : audit_lines) std::cout << "audit: " << l << "\n";
        check(audit_lines.size() == 2 && audit_lines[0].find("checkout-7") != std::string::npos &&
                  audit_lines[1].find("checkout-7") != std::string::npos, "context propagates to what a handler publishes");
        rt.stop();  // drain, then stop; the subscriptions are destroyed after
    }

    section("4. retries, dead letters and redrive, on a manual clock");
    {
        courier::manual_clock clock;
        courier::runtime rt(courier::runtime::manual, clock);
        bool downstream_up = false;
        courier::subscription_options opts;
        opts.name = "mailer";
        opts.retry = courier::retry_policy::exponential(1s, 2.0, 30s, 3);
        opts.retry.jitter = 0;  // exactly 1 s, then 2 s
        auto mailer = rt.bus().subscribe<order_created>([&](const order_created& e, const courier::message_context& ctx) {
            std::cout << "  attempt " << ctx.attempt() << " for " << e.id << (downstream_up ? ": sent\n" : ": smtp down\n");
            if (!downstream_up) throw std::runtime_error("smtp down");
        }, opts);
        (void)rt.bus().publish(order_created{"o-2", 10});
        auto waited = rt.run_timers();
        auto dead = rt.bus().dead_letters().list();
        check(dead.size() == 1 && dead[0].attempts == 3, "three attempts, then a dead letter");
        if (dead.empty()) return 1;
        std::cout << "after " << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                  << " ms of manual time: " << dead.size() << " dead letter, " << dead[0].attempts << " attempts, last error '"
                  << dead[0].errors.back().error << "'\n";
        downstream_up = true;
        (void)rt.bus().redrive_all("mailer");
        rt.poll();
        std::cout << "redriven; dead letters now: " << rt.bus().dead_letters().size() << "\n";
        check(rt.bus().dead_letters().size() == 0, "redrive empties the store");
    }

    section("5. versions: a v2 subscriber receives v1 events through an upcaster");
    {
        courier::manual_clock clock;
        courier::runtime rt(courier::runtime::manual, clock);
        (void)rt.bus().upcasters().add("order.created.v1", [](nlohmann::json d) {
            return nlohmann::json{{"id", d["id"]}, {"amount", d["total"]}, {"currency", "EUR"}};
        });
        int got = 0;
        auto sub = rt.bus().subscribe<order_created_v2>([&](const order_created_v2& e) {
            std::cout << "v2 handler: " << e.id << " " << e.amount << " " << e.currency << "\n";
            ++got;
        }, {.mode = courier::delivery_mode::inline_call});
        (void)rt.bus().publish(order_created{"o-3", 99});
        check(got == 1, "the upcast event arrives");
    }

    section("6. actors: state without locks, tell and ask, supervision");
    {
        courier::runtime rt(courier::runtime_options{.threads = 2});
        courier::actor_system actors(rt);
        auto acct = actors.spawn<account>(courier::actor_options{.name = "account"});
        acct.tell(deposit{30});
        acct.tell(deposit{12});
        auto before = acct.ask(balance{}, 1s, boost::asio::use_future).get();
        std::cout << "balance after two tells: " << before.value_or(-1) << "\n";
        acct.tell(deposit{-5});  // throws: the default supervisor restarts the actor with fresh state
        auto after = acct.ask(balance{}, 1s, boost::asio::use_future).get();
        std::cout << "after a failing message: restarted " << acct.stats().restarts << " time(s), balance "
                  << after.value_or(-1) << " (fresh state)\n";
        check(before.value_or(-1) == 42 && after.value_or(-1) == 0 && acct.stats().restarts == 1, "actor tell/ask/restart");
        (void)actors.shutdown(1s);
    }

    section("7. background jobs: retries with backoff, dead letters, redrive (manual clock)");
    {
        courier::manual_clock clock;
        courier::runtime rt(courier::runtime::manual, clock);
        courier::job_system jobs(rt);
        auto images = jobs.queue("images");
        bool codec_installed = false;
        images.handle<resize_image>([&](const resize_image& job, courier::job_context& ctx) -> std::string {
            if (job.file == "flaky.png" && ctx.attempt() < 3) throw std::runtime_error("storage timeout");
            if (job.file == "broken.tiff" && !codec_installed) throw std::runtime_error("no tiff codec");
            return job.file + " -> 320x200";
        });
        courier::job_options opts{.max_attempts = 3, .backoff = courier::retry_policy::exponential(1s, 2.0, 1min, 0)};
        opts.backoff.jitter = 0;
        auto flaky = images.enqueue(resize_image{"flaky.png"}, opts).value();
        auto broken = images.enqueue(resize_image{"broken.tiff"}, opts).value();
        auto waited = rt.run_timers();
        std::cout << "flaky.png: " << to_string(flaky.state()) << " after " << flaky.attempts() << " attempts ("
                  << std::chrono::duration_cast<std::chrono::seconds>(waited).count() << " s of backoff), result '"
                  << *flaky.result<std::string>() << "'\n";
        auto dead = images.dead_letters().list();
        std::cout << "broken.tiff: " << to_string(broken.state()) << ", dead letters: " << dead.size() << ", errors:";
        for (auto& e : dead.empty() ? std::vector<courier::job_attempt_error>{} : dead[0].errors) std::cout << " #" << e.attempt << " " << e.error << ";";
        std::cout << "\n";
        codec_installed = true;
        const auto redriven = images.dead_letters().redrive_all();
        rt.run_timers();
        std::cout << "after installing the codec, redrove " << redriven << ": broken.tiff " << to_string(broken.state()) << "\n";
        check(flaky.state() == courier::job_state::completed && flaky.attempts() == 3 && waited == 3s, "flaky job retried twice, 1 s + 2 s");
        check(dead.size() == 1 && broken.state() == courier::job_state::completed, "dead job redriven to completion");
    }

    section("8. request-reply: a queue group of responders, a timeout, no responders");
    {
        courier::runtime rt(courier::runtime_options{.threads = 2});
        courier::rpc rpc(rt.bus());
        std::atomic<int> served_a{0}, served_b{0};
        auto a = rpc.respond<get_quote>([&](const get_quote& q) { served_a++; return quote{q.sku, 9.5}; });
        auto b = rpc.respond<get_quote>([&](const get_quote& q) { served_b++; return quote{q.sku, 9.5}; });
        double sum = 0;
        for (int i = 0; i < 10; ++i) sum += rpc.request(get_quote{"sku-1"}, 2s, boost::asio::use_future).get().value().price;
        std::cout << "10 requests, answered " << served_a << " + " << served_b << " by the group, total " << sum << "\n";
        auto slow = rpc.respond<check_stock>([](const check_stock& c) {
            std::this_thread::sleep_for(200ms);  // slower than the caller is willing to wait
            return quote{c.sku, 0};
        });
        auto late = rpc.request(check_stock{"sku-1"}, 50ms, boost::asio::use_future).get();
        std::cout << "slow responder: " << late.error().message << "\n";
        slow = {};  // unsubscribe: nobody answers check_stock any more (the slow call still finishes)
        auto none = rpc.request(check_stock{"sku-2"}, 2s, boost::asio::use_future).get();
        std::cout << "no responder: " << none.error().message << "\n";
        check(served_a + served_b == 10 && served_a == 5 && sum == 95, "queue group shares requests");
        check(late.error() == courier::errc::timeout && none.error() == courier::errc::no_responders, "typed rpc errors");
        rt.stop();
    }

    section("9. streams: capture, a consumer group, replay from the start");
    {
        courier::runtime rt(courier::runtime_options{.threads = 2});
        courier::stream orders(rt.bus(), "orders", {.partitions = 2});
        (void)orders.capture("order.#");  // every order.* event becomes a record, keyed by its publish key
        for (int i = 0; i < 6; ++i) {
            courier::publish_options po;
            po.key = "customer-" + std::to_string(i % 3);
            (void)rt.bus().publish(order_created{"o-" + std::to_string(i), 10.0 * i}, po);
        }
        auto billing = orders.group("billing");
        auto w1 = billing.join("worker-1");
        auto w2 = billing.join("worker-2");  // partitions are split between the two members
        double total = 0;
        std::size_t r1 = 0, r2 = 0;
        for (auto* w : {&w1, &w2}) {
            auto batch = w->read(64).value();
            for (auto& d : batch) total += d.record().as<order_created>().value().total;
            (w == &w1 ? r1 : r2) = batch.size();
            w->ack(batch);
        }
        std::cout << "group 'billing': worker-1 read " << r1 << ", worker-2 read " << r2 << ", total " << total
                  << ", pending after ack " << billing.pending().size() << "\n";
        auto replay = orders.reader(courier::start_position::beginning());
        std::size_t replayed = 0;
        for (;;) {
            auto batch = replay.read(64).value();
            if (batch.empty()) break;
            replayed += batch.size();
        }
        std::cout << "a new reader replays from the beginning: " << replayed << " records\n";
        check(r1 + r2 == 6 && r1 > 0 && r2 > 0 && total == 150 && replayed == 6 && billing.pending().empty(), "stream group and replay");
        rt.stop();
    }

    section("10. sagas: steps, a signal, compensation in reverse");
    {
        courier::manual_clock clock;
        courier::runtime rt(courier::runtime::manual, clock);
        std::vector<std::string> log;
        courier::saga_definition<order_ctx> fulfilment{"order.fulfilment.v1"};
        fulfilment
            .step("reserve", [&](order_ctx& o) { log.push_back("reserve " + o.id); },
                  [&](order_ctx& o) { log.push_back("release " + o.id); })
            .step("charge", [&](order_ctx& o) { log.push_back("charge " + o.id); },
                  [&](order_ctx& o) { log.push_back("refund " + o.id); })
            .wait_for_signal("approval", "order.approved", 24h,
                             [](order_ctx& o, const nlohmann::json& p) { o.approver = p.at("by"); })
            .step("ship", [&](order_ctx& o) {
                if (o.fail_shipping) throw std::runtime_error("carrier refused the parcel");
                log.push_back("ship " + o.id + " (approved by " + o.approver + ")");
            }, courier::step_options{.retry = courier::retry_policy::none()});
        courier::saga_runner sagas(rt);

        auto ok = sagas.start(fulfilment, order_ctx{"o-7", false, ""}).value();
        rt.poll();  // a manual runtime: the steps run here
        auto bad = sagas.start(fulfilment, order_ctx{"o-8", true, ""}).value();
        rt.poll();
        std::cout << "both sagas are " << to_string(sagas.query(ok)->state) << " for approval\n";
        (void)sagas.signal(ok, "order.approved", {{"by", "alice"}});
        rt.poll();
        (void)sagas.signal(bad, "order.approved", {{"by", "bob"}});
        rt.poll();
        for (auto& l : log) std::cout << "  " << l << "\n";
        auto bad_info = sagas.query(bad);
        std::cout << "o-7: " << to_string(sagas.query(ok)->state) << "; o-8: " << to_string(bad_info->state) << " ("
                  << bad_info->error << ")\n";
        const std::vector<std::string> expected{"reserve o-7", "charge o-7", "reserve o-8", "charge o-8",
                                                "ship o-7 (approved by alice)", "refund o-8", "release o-8"};
        check(log == expected, "the failing saga compensated in reverse");
        check(sagas.query(ok)->state == courier::saga_state::completed && bad_info->state == courier::saga_state::failed,
              "saga end states");
    }

    section("11. metrics (Prometheus text, excerpt)");
    {
        courier::manual_clock clock;
        courier::runtime rt(courier::runtime::manual, clock);
        auto sub = rt.bus().subscribe<order_created>([](const order_created&) {}, {.name = "counter"});
        for (int i = 0; i < 3; ++i) (void)rt.bus().publish(order_created{"o", 1});
        rt.poll();
        auto text = rt.bus().prometheus();
        std::cout << text.substr(0, text.find("# HELP courier_subscription_failed_total"));
        check(sub.metrics().delivered == 3, "three deliveries counted");
    }

    section("12. broker bridges: the same typed events through a broker, by URL");
    {
        // Two runtimes stand for two processes; the loopback broker stands for Redis, NATS, Kafka
        // or RabbitMQ (the same code takes redis://127.0.0.1:6379?stream=orders and the rest).
        courier::runtime shop, warehouse;
        const std::string url = "loopback://tour";
        auto out = courier::bridge::broker_bridge::connect(shop.bus(), url, {.name = "shop-out"}).value();
        auto in = courier::bridge::broker_bridge::connect(warehouse.bus(), url, {.name = "warehouse-in"}).value();
        std::mutex m;
        std::vector<std::string> received;
        auto sub = warehouse.bus().subscribe<order_created>([&](const order_created& o, const courier::message_context& ctx) {
            std::lock_guard lock(m);
            received.push_back(o.id + (ctx.correlation_id() == "checkout-9" ? " (correlation kept)" : ""));
        }, {.mode = courier::delivery_mode::serial});
        check(out->forward("order.#", {.topic = "orders"}).has_value(), "forward order.# to the broker");
        check(in->ingest({.topic = "orders", .group = "warehouse", .consumer = "w-1"}).has_value(), "ingest from the broker");
        check(out->wait_until_ready(5s) && in->wait_until_ready(5s), "both bridges connected");
        for (int i = 0; i < 3; ++i) {
            courier::publish_options po;
            po.correlation_id = "checkout-9";
            (void)shop.bus().publish(order_created{"o-" + std::to_string(20 + i), 5.0}, po);
        }
        // The bridge counts an ingested event once its publish returned, which can be after the
        // serial handler ran on a worker: wait for the counts too, not just the handler.
        const bool all = wait_until([&] {
            std::lock_guard lock(m);
            return received.size() == 3 && out->stats().forwarded == 3 && in->stats().ingested == 3;
        });
        std::lock_guard lock(m);
        for (auto& r : received) std::cout << "warehouse received " << r << "\n";
        const auto s = out->stats();
        const auto r = in->stats();
        std::cout << "shop-out: forwarded " << s.forwarded << "; warehouse-in: ingested " << r.ingested << ", duplicates "
                  << r.duplicates << "\n";
        check(all && s.forwarded == 3 && r.ingested == 3, "three events crossed the broker once each, in order");
        check(received.size() == 3 && received[0] == "o-20 (correlation kept)" && received[2] == "o-22 (correlation kept)",
              "typed events arrive in order with their metadata");
    }

    if (failures) {
        std::cout << "\ntour FAILED: " << failures << " check(s)\n";
        return 1;
    }
    std::cout << "\ntour finished: every check passed\n";
    return 0;
}
