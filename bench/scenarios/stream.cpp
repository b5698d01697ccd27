// Stream scenarios.
//   stream.append_read  P producers append 8-byte records (each its own key, so each its own
//                       partition when P <= partitions) to a stream of max(P, C) partitions;
//                       C consumer-group members read batches of up to 256 (waiting up to 50 us
//                       for at least 64: fetch_wait, Kafka's fetch.min.bytes) and ack them. msgs/s is
//                       records appended and read (first append to last ack), every record
//                       checked by count and checksum. Baseline "moodycamel": the same words
//                       through raw moodycamel (tokens), as in queue.mpmc.
// The stream is bounded like the queue it is compared with: retention keeps 64 Ki records per
// partition, and producers hold back while the group's lag passes 32 Ki (flow control a real
// producer would do), so no record is trimmed before it is acked and memory is recycled
// instead of growing (fresh memory's page faults would cost more than the appends).
#include "../baselines/queues.hpp"
#include "../harness/queue_harness.hpp"

#include <courier/stream/stream.hpp>

#include <chrono>
#include <cstring>
#include <string>
#include <string_view>

namespace courier_bench {
namespace {

run_result courier_append_read(const run_params& p) {
    const auto partitions = static_cast<std::uint32_t>(std::max(p.producers, p.consumers));
    constexpr std::uint64_t retained = 64 * 1024, max_lag = 32 * 1024;
    courier::stream s("bench", courier::system_clock::instance(),
                      {.partitions = partitions, .retention = {.max_records = retained}, .segment_records = 4096});
    auto group = s.group("bench");
    run_control ctl(p);
    run_result r = ctl.run(
        [&](int i) {
            sender& tx = ctl.sender_of(i);
            const std::string key = "producer-" + std::to_string(i);
            ctl.arrive_and_wait();
            while (ctl.keep_sending(tx)) {
                if ((tx.sent() & 255) == 0) {
                    backoff wait;
                    while (group.lag() > max_lag && !ctl.aborted()) wait.pause();
                }
                const std::uint64_t w = tx.next_word();
                auto pos = s.append(key, std::string_view(reinterpret_cast<const char*>(&w), sizeof w));
                if (!pos) {
                    ctl.abort(pos.error().message);
                    return;
                }
            }
        },
        [&](int i) {
            receiver& rx = ctl.receiver_of(i);
            auto member = group.join("consumer-" + std::to_string(i));
            courier::group_batch batch;
            // Kafka consumers tuned for throughput set fetch.min.bytes / fetch.max.wait.ms alike.
            const courier::fetch_wait fetch{.min_records = 64, .max_wait = std::chrono::microseconds(50)};
            ctl.arrive_and_wait();
            backoff wait;
            for (;;) {
                auto n = member.read(batch, 256, fetch);
                if (!n) {
                    ctl.abort(n.error().message);
                    return;
                }
                if (*n == 0) {
                    if (ctl.done(rx)) return;
                    wait.pause();
                    continue;
                }
                wait.reset();
                for (const auto& d : batch) {
                    std::uint64_t w;
                    std::memcpy(&w, d.record().payload.data(), sizeof w);
                    rx.on_receive(w);
                }
                member.ack(batch);
                ctl.publish(rx);
            }
        });
    r.payload = 8;
    return r;
}

const registration append_read{{
    .name = "stream.append_read",
    .description = "append 8-byte keyed records (retention 64 Ki/partition, lag <= 32 Ki); a group of C members reads up to 256 at a time (fetch_wait: 64 or 50 us) and acks",
    .impls =
        {
            {"courier", courier_append_read},
            {"moodycamel", queue_bench<moodycamel_queue>},
        },
    .shapes = {{1, 1}, {2, 2}},
    .messages = 1'000'000,
}};

}  // namespace
}  // namespace courier_bench
