#include "common/keyed_limiter.h"

#include <algorithm>
#include <cmath>

namespace ds {
namespace {

KeyedLimiter::Policy Sanitised(KeyedLimiter::Policy p) {
  p.burst = std::max(1.0, p.burst);
  p.max_keys = std::max<size_t>(1, p.max_keys);
  if (!(p.per_minute > 0)) p.per_minute = 0;
  return p;
}

}  // namespace

KeyedLimiter::KeyedLimiter(Policy policy, const Clock* clock)
    : policy_(Sanitised(policy)), clock_(clock) {}

void KeyedLimiter::Refill(Bucket* b, int64_t now_ms) const {
  // A clock that steps back earns nothing, and takes nothing away.
  const int64_t elapsed = std::max<int64_t>(0, now_ms - b->at_ms);
  b->tokens = std::min(policy_.burst, b->tokens + elapsed * policy_.per_minute / 60'000.0);
  b->at_ms = std::max(b->at_ms, now_ms);
}

KeyedLimiter::Decision KeyedLimiter::Refusal(const Bucket& b) const {
  const double ms = std::ceil((1.0 - b.tokens) * 60'000.0 / policy_.per_minute);
  return Decision{false, std::max<int64_t>(1, static_cast<int64_t>(ms))};
}

KeyedLimiter::Decision KeyedLimiter::Acquire(std::string_view key) {
  if (!enabled()) return {};
  const int64_t now = clock_->NowUnixMs();
  MutexLock lock(&mu_);
  auto it = buckets_.find(std::string(key));
  if (it == buckets_.end()) {
    if (buckets_.size() >= policy_.max_keys) {
      buckets_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.emplace_front(key);
    it = buckets_.emplace(lru_.front(), Bucket{policy_.burst, now, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    Refill(&it->second, now);
  }
  Bucket& b = it->second;
  if (b.tokens < 1.0) return Refusal(b);
  b.tokens -= 1.0;
  return {};
}

KeyedLimiter::Decision KeyedLimiter::Check(std::string_view key) {
  if (!enabled()) return {};
  const int64_t now = clock_->NowUnixMs();
  MutexLock lock(&mu_);
  auto it = buckets_.find(std::string(key));
  if (it == buckets_.end()) return {};
  Refill(&it->second, now);
  if (it->second.tokens < 1.0) return Refusal(it->second);
  return {};
}

size_t KeyedLimiter::size() const {
  MutexLock lock(&mu_);
  return buckets_.size();
}

}  // namespace ds
