// The retry policy shared by bus subscriptions, jobs and saga steps, in Temporal's vocabulary:
// initial_interval, backoff_coefficient, maximum_interval, maximum_attempts, non-retryable
// errors, plus jitter (on by default, so that many failing consumers never retry in lock-step).
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <random>

COURIER_BEGIN_NAMESPACE

/// How a failed attempt is retried. The delay before attempt n+1 (n >= 1 failed attempts) is
/// `min(initial_interval * backoff_coefficient^(n-1), maximum_interval)`, then spread by
/// +/- `jitter` (a fraction) so that consumers that failed together do not retry together.
///
/// Example: Temporal's default activity policy
/// ```
/// courier::retry_policy p{.initial_interval = std::chrono::seconds(1), .backoff_coefficient = 2.0,
///                         .maximum_interval = std::chrono::seconds(100), .maximum_attempts = 0};
/// ```
struct retry_policy {
    /// Delay before the first retry.
    duration initial_interval = std::chrono::milliseconds(100);
    /// Growth factor per attempt; 1.0 gives a fixed interval.
    double backoff_coefficient = 2.0;
    /// Upper bound of the delay (before jitter).
    duration maximum_interval = std::chrono::seconds(30);
    /// Attempts in total, the first included; 0 means unlimited. 1 means no retry.
    std::uint32_t maximum_attempts = 5;
    /// Fraction of the delay added or removed at random (0 disables jitter).
    double jitter = 0.2;
    /// Decides whether an error may be retried; an error it rejects goes straight to the
    /// dead-letter store. Default: everything is retryable. See `non_retryable<E...>()`.
    std::function<bool(const std::exception_ptr&)> is_retryable;

    /// A policy that never retries.
    static retry_policy none() {
        retry_policy p;
        p.maximum_attempts = 1;
        return p;
    }
    /// A fixed interval between attempts.
    static retry_policy fixed(duration interval, std::uint32_t attempts) {
        retry_policy p;
        p.initial_interval = interval;
        p.maximum_interval = interval;
        p.backoff_coefficient = 1.0;
        p.maximum_attempts = attempts;
        return p;
    }
    /// Exponential backoff.
    static retry_policy exponential(duration initial, double coefficient, duration maximum,
                                    std::uint32_t attempts) {
        retry_policy p;
        p.initial_interval = initial;
        p.backoff_coefficient = coefficient;
        p.maximum_interval = maximum;
        p.maximum_attempts = attempts;
        return p;
    }

    /// True when another attempt is allowed after `failed_attempts` failures with `error`.
    bool should_retry(std::uint32_t failed_attempts, const std::exception_ptr& error) const {
        if (maximum_attempts != 0 && failed_attempts >= maximum_attempts) return false;
        return !is_retryable || is_retryable(error);
    }

    /// The delay before the next attempt, after `failed_attempts` (>= 1) failures.
    /// `unit_random` is a uniform number in [0, 1) (from the caller's generator).
    duration delay_after(std::uint32_t failed_attempts, double unit_random) const {
        const double base = static_cast<double>(initial_interval.count()) *
                            std::pow(std::max(backoff_coefficient, 1.0),
                                     static_cast<double>(failed_attempts > 0 ? failed_attempts - 1 : 0));
        double d = std::min(base, static_cast<double>(maximum_interval.count()));
        if (jitter > 0) d *= 1.0 + jitter * (2.0 * unit_random - 1.0);
        return duration(static_cast<duration::rep>(std::max(d, 0.0)));
    }
    /// The delay before the next attempt, with jitter from a thread-local generator.
    duration delay_after(std::uint32_t failed_attempts) const {
        thread_local std::minstd_rand rng{std::random_device{}()};
        return delay_after(failed_attempts, std::uniform_real_distribution<double>(0.0, 1.0)(rng));
    }
};

namespace detail {
template <class E, class... Rest>
bool exception_is_one_of(const std::exception_ptr& ep) {
    try {
        std::rethrow_exception(ep);
    } catch (const E&) {
        return true;
    } catch (...) {
    }
    if constexpr (sizeof...(Rest) > 0) {
        return exception_is_one_of<Rest...>(ep);
    } else {
        return false;
    }
}
}  // namespace detail

/// An `is_retryable` predicate that refuses the exception types E... (and types derived from them).
template <class... E>
std::function<bool(const std::exception_ptr&)> non_retryable() {
    static_assert(sizeof...(E) > 0, "name at least one exception type");
    return [](const std::exception_ptr& ep) { return !ep || !detail::exception_is_one_of<E...>(ep); };
}

COURIER_END_NAMESPACE
