// The durable saga journal: an append-only file, one JSON line per record, each line carrying a
// CRC-32 of its record. A torn last line (the process died mid-write) is detected, ignored and cut
// off; a damaged record anywhere else is an error naming the file and the line, never a crash.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/saga/detail/crc32.hpp>
#include <courier/saga/journal.hpp>
#include <courier/saga/saga_error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// When the file journal calls fdatasync().
enum class fsync_policy : std::uint8_t {
    never,         ///< leave it to the OS: survives a process crash, not a power loss
    every_record,  ///< after every record: survives a power loss, costs a disk flush per transition
    every_n,       ///< after every `fsync_every` records (a power loss may lose the last few)
};

/// Options of a file_journal.
struct file_journal_options {
    /// Durability against power loss; a process crash never loses a written record.
    fsync_policy fsync = fsync_policy::every_record;
    /// With `fsync_policy::every_n`: records between two flushes.
    std::uint32_t fsync_every = 64;
};

/// An append-only file of saga records. Each line is
/// `{"crc":"<8 hex digits>","rec":<record JSON>}` where the CRC-32 covers the record's bytes.
///
/// Opening repairs a torn tail (a last line without its newline or failing its checksum) by
/// truncating the file to its last whole record, so new records never glue onto garbage.
///
/// Thread safety: every member may be called concurrently (one mutex; one write() per record).
/// Cost: a record is encoded straight into a reused buffer (no JSON tree; the context still goes
/// through its nlohmann conversion).
/// Blocking: `append` does a write() and, by policy, an fdatasync().
/// Errors: the constructor throws courier_error (saga_errc::journal_io) if the file cannot be
/// opened; `load` returns saga_errc::journal_corrupt with "<path> line <n>: <reason>".
class file_journal final : public saga_journal {
public:
    explicit file_journal(std::string path, file_journal_options options = {})
        : path_(std::move(path)), options_(options) {
        fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd_ < 0) throw courier_error(io_error("open"));
        auto scanned = scan();
        if (scanned && scanned->torn) {
            if (::ftruncate(fd_, static_cast<off_t>(scanned->good_size)) != 0) {
                auto e = io_error("ftruncate");
                ::close(fd_);
                throw courier_error(std::move(e));
            }
            torn_ = true;
        }
    }
    ~file_journal() override {
        if (fd_ >= 0) ::close(fd_);
    }
    file_journal(const file_journal&) = delete;
    file_journal& operator=(const file_journal&) = delete;

    result<void> append(const journal_record& r) override {
        std::lock_guard lock(mutex_);
        line_.clear();
        encode_into(line_, r);  // under the lock: one buffer, reused, no allocation once grown
        std::string_view rest = line_;
        while (!rest.empty()) {
            const auto n = ::write(fd_, rest.data(), rest.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return unexpected(io_error("write"));
            }
            rest.remove_prefix(static_cast<std::size_t>(n));
        }
        ++unsynced_;
        const bool sync = options_.fsync == fsync_policy::every_record ||
                          (options_.fsync == fsync_policy::every_n && unsynced_ >= std::max(1u, options_.fsync_every));
        if (sync) {
            if (::fdatasync(fd_) != 0) return unexpected(io_error("fdatasync"));
            unsynced_ = 0;
        }
        return {};
    }

    result<std::vector<journal_record>> load() override {
        std::lock_guard lock(mutex_);
        auto scanned = scan();
        if (!scanned) return unexpected(std::move(scanned).error());
        return std::move(scanned->records);
    }

    /// Flushes to disk now, whatever the policy.
    result<void> sync() {
        std::lock_guard lock(mutex_);
        if (::fdatasync(fd_) != 0) return unexpected(io_error("fdatasync"));
        unsynced_ = 0;
        return {};
    }
    const std::string& path() const noexcept { return path_; }
    /// True when opening found (and cut off) a torn last record.
    bool repaired_torn_tail() const noexcept { return torn_; }

    /// One encoded line (newline included); exposed for tests that forge damaged files.
    static std::string encode(const journal_record& r) {
        std::string line;
        encode_into(line, r);
        return line;
    }

    /// Appends the encoded line of `r` (newline included) to `out`: the record's JSON is written
    /// straight into the line, then its CRC-32 is filled in ahead of it.
    static void encode_into(std::string& out, const journal_record& r) {
        const auto base = out.size();
        out.append("{\"crc\":\"00000000\",\"rec\":");
        const auto rec = out.size();
        detail::append_record_json(out, r);
        const auto crc = detail::crc32(std::string_view(out).substr(rec));
        constexpr char hex[] = "0123456789abcdef";
        for (int i = 0; i < 8; ++i) out[base + 8 + static_cast<std::size_t>(i)] = hex[(crc >> (28 - 4 * i)) & 0xFu];
        out.append("}\n");
    }

private:
    struct scan_result {
        std::vector<journal_record> records;
        std::size_t good_size = 0;  // bytes up to the end of the last good record
        bool torn = false;
    };

    courier::error io_error(const char* what) const {
        return courier::error(make_error_code(saga_errc::journal_io),
                              "[courier.saga.journal_io] " + path_ + ": " + what + ": " + std::strerror(errno));
    }

    // Checks one line (without its newline); returns the reason it is bad, or empty.
    static std::string decode(std::string_view line, journal_record& out) {
        constexpr std::string_view head = "{\"crc\":\"";
        constexpr std::string_view mid = "\",\"rec\":";
        if (line.size() < head.size() + 8 + mid.size() + 2 || line.substr(0, head.size()) != head ||
            line.substr(head.size() + 8, mid.size()) != mid || line.back() != '}')
            return "not a journal record";
        std::uint32_t want = 0;
        for (char c : line.substr(head.size(), 8)) {
            int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
            if (v < 0) return "bad checksum field";
            want = (want << 4) | static_cast<std::uint32_t>(v);
        }
        const auto rec = line.substr(head.size() + 8 + mid.size(), line.size() - head.size() - 8 - mid.size() - 1);
        if (detail::crc32(rec) != want) return "checksum mismatch";
        auto j = nlohmann::json::parse(rec, nullptr, false);
        if (j.is_discarded()) return "record is not valid JSON";
        auto r = detail::record_from_json(j);
        if (!r) return r.error().message;
        out = std::move(*r);
        return {};
    }

    // Reads the whole file. Caller holds mutex_ (or is the constructor).
    result<scan_result> scan() {
        std::string data;
        char buf[1 << 16];
        off_t off = 0;
        for (;;) {
            const auto n = ::pread(fd_, buf, sizeof buf, off);
            if (n < 0) {
                if (errno == EINTR) continue;
                return unexpected(io_error("read"));
            }
            if (n == 0) break;
            data.append(buf, static_cast<std::size_t>(n));
            off += n;
        }
        scan_result out;
        std::size_t pos = 0, line_no = 0;
        while (pos < data.size()) {
            ++line_no;
            const auto nl = data.find('\n', pos);
            const bool last = nl == std::string::npos || data.find_first_not_of("\n", nl + 1) == std::string::npos;
            if (nl == std::string::npos) {  // no newline: the write was cut short
                out.torn = true;
                break;
            }
            std::string_view line(data.data() + pos, nl - pos);
            if (!line.empty()) {
                journal_record r;
                auto why = decode(line, r);
                if (!why.empty()) {
                    if (last) {  // a damaged final record: torn, ignored
                        out.torn = true;
                        break;
                    }
                    return unexpected(courier::error(
                        make_error_code(saga_errc::journal_corrupt),
                        "[courier.saga.journal_corrupt] " + path_ + " line " + std::to_string(line_no) + ": " + why));
                }
                out.records.push_back(std::move(r));
            }
            pos = nl + 1;
            out.good_size = pos;
        }
        return out;
    }

    std::string path_;
    file_journal_options options_;
    int fd_ = -1;
    std::mutex mutex_;
    std::uint32_t unsynced_ = 0;
    bool torn_ = false;
    std::string line_;  // the line being written (guarded by mutex_)
};

COURIER_END_NAMESPACE
