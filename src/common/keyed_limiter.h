// Rate limits per key (the server keys them by source address): one token bucket per key, in
// bounded memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/mutex.h"
#include "common/time_util.h"

namespace ds {

// A token bucket per key: each key may spend `burst` tokens at once and earns `per_minute`
// tokens a minute back, up to `burst`. A key without a bucket has a full one, so buckets are
// made only when a token is taken; at most `max_keys` are kept, and making one more forgets the
// least recently used (whose bucket has most likely refilled anyway). Thread-safe.
class KeyedLimiter {
 public:
  struct Policy {
    double per_minute = 0;   // tokens earned a minute; 0 = no limit (every call is allowed)
    double burst = 1;        // bucket size (tokens); at least 1
    size_t max_keys = 10'000;
  };
  struct Decision {
    bool allowed = true;
    int64_t retry_after_ms = 0;  // when refused: until the next token (milliseconds, >= 1)
  };

  // REQUIRES: `clock` outlives the limiter.
  KeyedLimiter(Policy policy, const Clock* clock);

  // Takes one token of `key`'s bucket when it has one.
  Decision Acquire(std::string_view key);
  // Whether `key` has a token, taking none (for throttles that charge only failures: Check
  // before the work, Acquire when it failed).
  Decision Check(std::string_view key);

  bool enabled() const { return policy_.per_minute > 0; }
  size_t size() const;  // keys with a bucket

 private:
  struct Bucket {
    double tokens = 0;
    int64_t at_ms = 0;  // when `tokens` was computed (clock milliseconds)
    std::list<std::string>::iterator lru;  // the key's place in lru_
  };
  // Brings `b` (one of buckets_) up to now.
  void Refill(Bucket* b, int64_t now_ms) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Decision Refusal(const Bucket& b) const;

  // Constant after construction.
  const Policy policy_;
  const Clock* const clock_;

  mutable Mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);  // most recently used first
};

}  // namespace ds
