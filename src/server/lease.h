// One index lease held by this instance for a piece of background work that exactly one instance
// should do at a time (StateIndex::TryAcquireLease): the janitor, the alert pass, the scrub
// scheduler. Internal to src/server.
#pragma once

#include <cstdint>
#include <string>

#include "index/state_index.h"

namespace ds {

// Not thread-safe: used by the one thread that does the work. REQUIRES: index outlives it.
class IndexLease {
 public:
  // `name`: the lease; `holder`: this instance; `work`: what holding it means, for the log
  // ("does the housekeeping").
  IndexLease(StateIndex* index, std::string name, std::string holder, std::string work);
  ~IndexLease();  // releases the lease if held, so another instance takes over at once
  IndexLease(const IndexLease&) = delete;
  IndexLease& operator=(const IndexLease&) = delete;

  // Takes or renews the lease until now_ms + ttl_ms; false when another instance holds it or
  // the index fails (logged). Logs when this instance starts or stops holding it.
  [[nodiscard]] bool Claim(int64_t ttl_ms, int64_t now_ms);
  bool held() const { return held_; }

 private:
  StateIndex* const index_;
  const std::string name_, holder_, work_;
  bool held_ = false;
};

}  // namespace ds
