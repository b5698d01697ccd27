// Options of a stream (partitions, retention, compaction, segment size), of its consumer
// groups (where a new group starts, session timeout), of its readers, and of a capture from
// the bus; plus the plain structs its inspection calls return.
#pragma once

#include <courier/bus/subscription_options.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/stream/record.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// How much each partition keeps. Zero means "no limit" for every field. Every limit trims the
/// oldest records first, record by record; memory is given back a whole segment at a time, once
/// no reader holds the segment.
struct retention_policy {
    /// Records kept per partition (Redis XTRIM MAXLEN, exact).
    std::size_t max_records = 0;
    /// Bytes kept per partition, as `stream_record::size_bytes` counts them (Kafka
    /// retention.bytes). A record larger than this is refused (errc::limit_exceeded).
    std::size_t max_bytes = 0;
    /// Age after which a record is trimmed, on the stream's clock (Kafka retention.ms). With a
    /// runtime, a timer trims exactly when the oldest record expires; without one, appends and
    /// `enforce_retention()` do.
    duration max_age = duration::zero();
};

/// Options of a stream.
struct stream_options {
    /// Partitions; a record's key picks one by `stable_hash(key) % partitions`. At least 1.
    std::uint32_t partitions = 1;
    retention_policy retention{};
    /// Compaction by key (Kafka's compacted topics): in sealed segments only the latest record
    /// of each key is kept; records without a key are always kept; a record with an empty
    /// payload is a tombstone (it stays, as the key's latest record, until retention trims it).
    bool compact = false;
    /// With `compact`: compaction runs by itself each time this many segments were sealed since
    /// the last run (in the appending thread). 0: only when `compact()` is called.
    std::uint32_t compact_every_segments = 4;
    /// Records per segment (the unit in which memory is allocated and freed). At least 16.
    std::uint32_t segment_records = 1024;
    /// Largest record accepted (`size_bytes`); larger appends fail with errc::limit_exceeded.
    std::size_t max_record_bytes = std::size_t{1} << 20;
    /// With the system clock, stamp records from the kernel's coarse real-time clock
    /// (CLOCK_REALTIME_COARSE on Linux: a few ns to read instead of tens, resolution 1-4 ms,
    /// like the millisecond timestamps of Kafka and Redis streams). False: read the clock
    /// exactly. Any other clock (a manual_clock, your own) is always read exactly.
    bool coarse_timestamps = true;
};

/// How long `group_member::read(out, max, wait)` may wait for a fuller batch: Kafka's
/// fetch.min.bytes and fetch.max.wait.ms, counted in records.
struct fetch_wait {
    /// Read as soon as this many new records wait in the member's partitions (at most `max`).
    std::size_t min_records = 1;
    /// Read what there is once this much real time has passed (the wait spins, then yields the
    /// thread between looks; it never sleeps, and it does not follow a manual clock).
    std::chrono::nanoseconds max_wait{};
};

/// Options of a stream reader.
struct reader_options {
    /// Partitions to read; empty means all.
    std::vector<std::uint32_t> partitions;
    /// When the reader's position was trimmed: false (default) makes `read` fail with
    /// errc::trimmed until the reader seeks; true jumps to the first available offset and
    /// counts the records skipped (`stream_reader::skipped`).
    bool skip_trimmed = false;
};

/// Options of a consumer group, fixed when the group is made.
struct group_options {
    /// Where the group starts in each partition (default: the first record still available, so
    /// a new group replays what the stream holds; `start_position::end()` for new records only).
    start_position start = start_position::beginning();
    /// A member that has not read, acked, claimed or sent a heartbeat for this long (on the
    /// stream's clock) is evicted at the next read of any member, and its partitions go to the
    /// others; its pending records stay pending, to be claimed. 0 disables eviction.
    duration session_timeout = duration::zero();
};

/// Options of `stream::capture`.
struct capture_options {
    /// Name of the capture's bus subscription (default: made up by the bus).
    std::string name;
    /// inline_call (default): the event is appended in the publisher's thread before publish
    /// returns, so the stream holds events in publish order (per partition) and nothing is
    /// queued. Any other mode appends on the executor.
    delivery_mode mode = delivery_mode::inline_call;
};

/// One partition's state.
struct partition_info {
    std::uint32_t partition = 0;
    std::uint64_t start_offset = 0;  ///< first offset still available
    std::uint64_t end_offset = 0;    ///< offset the next append gets
    std::size_t records = 0;         ///< records held (fewer than end - start after compaction)
    std::size_t bytes = 0;
    std::size_t segments = 0;
};

/// A stream's counters.
struct stream_metrics {
    std::uint64_t appended = 0;
    std::uint64_t trimmed = 0;      ///< records removed by retention
    std::uint64_t compacted = 0;    ///< records removed by compaction
    std::uint64_t rejected = 0;     ///< appends refused (too large, bad partition)
    std::uint64_t captured = 0;     ///< bus events appended by captures
    std::size_t records = 0;
    std::size_t bytes = 0;
};

/// What a compaction pass did.
struct compaction_report {
    std::size_t removed = 0;        ///< records dropped (superseded by a later record of their key)
    std::size_t removed_bytes = 0;
    std::size_t kept = 0;           ///< records of the sealed segments that stayed
};

/// A record delivered to a consumer group and not acked yet (Redis XPENDING's detail).
struct pending_entry {
    std::uint32_t partition = 0;
    std::uint64_t offset = 0;
    std::string owner;                ///< the member it was delivered (or claimed) to last
    std::uint32_t delivery_count = 0;  ///< 1 on the first delivery, +1 per claim
    duration idle{};                  ///< time since that delivery, on the stream's clock
};

/// Redis XPENDING's summary form.
struct pending_summary {
    std::size_t count = 0;
    std::vector<std::pair<std::string, std::size_t>> per_owner;  ///< sorted by owner name
};

/// A consumer group's counters.
struct group_metrics {
    std::uint64_t delivered = 0;    ///< first deliveries by read
    std::uint64_t acked = 0;
    std::uint64_t claimed = 0;      ///< redeliveries by claim
    std::uint64_t skipped_by_retention = 0;  ///< records trimmed before the group delivered them
    /// Pending records trimmed before anyone acked them: dropped from the pending list and
    /// counted by the first group call after the trim (metrics() included), so the count is
    /// current whenever it is read; acking such a record afterwards returns 0.
    std::uint64_t lost_to_retention = 0;
    std::uint64_t rebalances = 0;
    std::uint64_t evictions = 0;    ///< members evicted by session_timeout
    std::uint64_t pending = 0;      ///< delivered and not acked now (over all partitions)
    /// Entries the pending lists hold (acked ones not swept yet included): at most about
    /// 2 x pending + 64 per partition, however long a dead member leaves its records unacked.
    std::uint64_t pending_list_entries = 0;
};

COURIER_END_NAMESPACE
