// Analytics over a replayable stream, as with Kafka or Redis Streams: shop events published on
// the bus are captured into a partitioned stream (keyed by user, so one user's events stay in
// order); a consumer group "dashboard" with two members on two threads shares the partitions,
// acks what it processed and ends with nothing pending; then a new consumer that did not exist
// when the events happened — a "funnel" group — replays the stream from the beginning and
// computes its own figures from the same history.
// Exits 0 only if both consumers saw every event exactly once and agree on the totals.
#include <courier/courier.hpp>

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

struct page_viewed {
    static constexpr courier::event_name event_type{"shop.page.viewed.v1"};
    std::string user;
    std::string page;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(page_viewed, user, page)
};
struct item_purchased {
    static constexpr courier::event_name event_type{"shop.item.purchased.v1"};
    std::string user;
    std::string sku;
    long cents = 0;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(item_purchased, user, sku, cents)
};

constexpr int users = 20;
constexpr int views_per_user = 5;

int main() {
    courier::runtime rt(courier::runtime_options{.threads = 2});
    courier::stream events(rt.bus(), "shop-events", {.partitions = 4});
    if (auto c = events.capture("shop.#"); !c) {  // from now on, every shop.* event is a record
        std::cerr << c.error().message << "\n";
        return 1;
    }

    // The shop publishes as usual; it does not know about the stream.
    long revenue_published = 0;
    for (int u = 0; u < users; ++u) {
        courier::publish_options po;
        po.key = "user-" + std::to_string(u);  // the record key: picks the partition
        for (int v = 0; v < views_per_user; ++v)
            (void)rt.bus().publish(page_viewed{po.key, "/p/" + std::to_string(v)}, po);
        if (u % 2 == 0) {
            (void)rt.bus().publish(item_purchased{po.key, "sku-" + std::to_string(u), 100L * (u + 1)}, po);
            revenue_published += 100L * (u + 1);
        }
    }
    const std::size_t total = users * views_per_user + users / 2;
    std::cout << "captured " << total << " events into 4 partitions:";
    for (std::uint32_t p = 0; p < 4; ++p) std::cout << " p" << p << "=" << events.info(p).end_offset;
    std::cout << "\n";

    // A consumer group: two members, each on its own thread, each record to one member.
    struct figures {
        std::mutex mutex;
        std::map<std::string, int> by_type;
        long revenue = 0;
        std::set<std::pair<std::uint32_t, std::uint64_t>> seen;  // (partition, offset): each once?
        int duplicates = 0;
        void add(std::uint32_t partition, const courier::stream_record& rec) {
            auto env = rec.to_envelope().value();
            std::lock_guard lock(mutex);
            if (!seen.emplace(partition, rec.offset).second) ++duplicates;
            ++by_type[env.event_type];
            if (env.event_type == item_purchased::event_type.str()) revenue += env.data.at("cents").get<long>();
        }
    };
    figures dashboard;
    auto group = events.group("dashboard");
    std::atomic<std::size_t> processed{0};
    std::vector<std::thread> workers;
    std::map<std::string, std::size_t> per_member;
    std::mutex per_member_mutex;
    // Both members join before either reads, so the partitions are split between them from the start.
    std::vector<courier::group_member> members;
    members.push_back(group.join("dashboard-1"));
    members.push_back(group.join("dashboard-2"));
    for (auto& member : members) {
        workers.emplace_back([&, &me = member] {
            const auto deadline = std::chrono::steady_clock::now() + 10s;
            std::size_t mine = 0;
            while (processed.load() < total && std::chrono::steady_clock::now() < deadline) {
                auto batch = me.read(32).value();
                if (batch.empty()) {
                    std::this_thread::sleep_for(1ms);
                    continue;
                }
                for (auto& d : batch) dashboard.add(d.partition, d.record());
                me.ack(batch);  // processed: no longer pending
                mine += batch.size();
                processed += batch.size();
            }
            std::lock_guard lock(per_member_mutex);
            per_member[std::string(me.name())] = mine;
        });
    }
    for (auto& t : workers) t.join();
    std::cout << "group 'dashboard': ";
    for (auto& [name, n] : per_member) std::cout << name << " processed " << n << "  ";
    std::cout << "pending " << group.pending().size() << "\n";

    // Later, a new consumer: a group that did not exist replays everything from the beginning.
    figures funnel;
    auto replay = events.group("funnel", {.start = courier::start_position::beginning()});
    auto analyst = replay.join("funnel-1");
    for (;;) {
        auto batch = analyst.read(64).value();
        if (batch.empty()) break;
        for (auto& d : batch) funnel.add(d.partition, d.record());
        analyst.ack(batch);
    }
    std::cout << "group 'funnel' replayed from the start: " << funnel.seen.size() << " records\n";
    for (auto* f : {&dashboard, &funnel}) {
        std::cout << "  " << (f == &dashboard ? "dashboard" : "funnel   ") << ":";
        for (auto& [type, n] : f->by_type) std::cout << " " << type << "=" << n;
        std::cout << ", revenue " << f->revenue << " cents\n";
    }

    const bool ok = dashboard.seen.size() == total && dashboard.duplicates == 0 && funnel.seen.size() == total &&
                    funnel.duplicates == 0 && dashboard.by_type == funnel.by_type && dashboard.revenue == revenue_published &&
                    funnel.revenue == revenue_published && group.pending().empty() && per_member.size() == 2 &&
                    per_member.begin()->second > 0 && per_member.rbegin()->second > 0;
    rt.stop();
    std::cout << (ok ? "analytics_replay: ok\n" : "analytics_replay: FAILED\n");
    return ok ? 0 : 1;
}
